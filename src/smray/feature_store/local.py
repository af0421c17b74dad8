"""A feature store on a local (or mounted) folder that keeps SageMaker Feature Store's contract.

- Offline store: exactly SageMaker's layout, so the same readers work on both:
  `<root>/<account>/sagemaker/<region>/offline-store/<group>-<creation epoch>/data/year=YYYY/month=MM/
  day=DD/hour=HH/<YYYYMMDDTHHMMSSZ>_<16 alphanumerics>.parquet`, partitioned by event time, with the extra
  columns write_time, api_invocation_time and is_deleted.
- Online store: SQLite, the latest record per id, by SageMaker's rule: a record whose event time is older
  than the stored one goes to the offline store only.
- Versions by content: a record is written when its (record id, event time, values) is new to the store,
  so a re-run writes nothing, and a changed record becomes a new version. `delete_absent` deletes the
  live records an ingest did not bring (the input is the whole table).
- Atomic and immediately visible: a batch's Parquet files are staged, the batch is committed in one SQLite
  transaction (keys, online rows, file list), then the files are moved into place. Readers list committed
  files from the catalog, never by globbing, so they never see a half-written batch, and a crashed batch
  is finished or discarded on the next open.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smray import schema as schema_mod
from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.locks import exclusive
from smray.schema import Schema

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"
_ALNUM = string.ascii_letters + string.digits
_BUSY_TIMEOUT_S = 120.0
_DIGEST = "_digest"  # a record's values digest; never a valid SageMaker feature name, so never a column
_OFFLINE_EXTRAS = ["write_time", "api_invocation_time", "is_deleted"]
# No column name is ever formatted into SQL: the online store keeps each record's values as one JSON object.
_CATALOG = """
CREATE TABLE IF NOT EXISTS record_versions (record_id TEXT, event_time REAL, digest INTEGER,
    deleted INTEGER, PRIMARY KEY (record_id, event_time, digest, deleted)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_records (record_id TEXT PRIMARY KEY, event_time REAL, digest INTEGER,
    record TEXT);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, staged TEXT, rows INTEGER, committed_at REAL);
"""


@dataclass(frozen=True)
class PutResult:
    offered: int  # rows in the batch
    written_offline: int  # rows new to the offline store
    already_present: int  # (id, event time) pairs the offline store had: skipped
    online_updated: int  # rows that became the online record for their id


class LocalFeatureStore:
    def __init__(self, root: Path, account: str = LOCAL_ACCOUNT, region: str = LOCAL_REGION) -> None:
        self.root = Path(root)
        self.account = account
        self.region = region

    # ---- control plane -------------------------------------------------------------------------------

    def _group_file(self, name: str) -> Path:
        return self.root / "feature-groups" / f"{name}.json"

    def describe(self, name: str) -> FeatureGroupDefinition | None:
        path = self._group_file(name)
        if not path.exists():
            return None
        described = FeatureGroupDefinition.from_description(json.loads(path.read_text()))
        # The store folder is mounted at other paths in job containers than on the host: the offline
        # store always lies under this root, whatever path the group was created at.
        group, epoch = Path(described.offline_uri).name.rsplit("-", 1)
        return replace(described, offline_uri=self._offline_uri(group, int(epoch)))

    def ensure_group(self, wanted: FeatureGroupDefinition) -> FeatureGroupDefinition:
        """Create the group if missing; if present, its definition must match (no silent casts)."""
        existing = self.describe(wanted.name)
        if existing is not None:
            existing.check_matches(wanted)
            return existing
        created = wanted.created_now(self._offline_uri(wanted.name, int(time.time())))
        path = self._group_file(wanted.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(created.to_description(), indent=2))
        # Another host may create the same group at the same moment: the first link wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
        winner = self.describe(wanted.name)
        if winner is None:
            raise UserError(f"feature group {wanted.name} vanished from {path} while it was created")
        winner.check_matches(wanted)
        return winner

    def _schema_file(self, group: str) -> Path:
        return self._group_file(group).with_suffix(".schema.json")

    def save_schema(self, group: str, schema: Schema) -> None:
        """The group's schema (target, rules, policies), so later steps read the data as ingest did."""
        path = self._schema_file(group)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(schema.dumps())
        tmp.replace(path)

    def schema(self, group: str) -> Schema | None:
        path = self._schema_file(group)
        return schema_mod.load(path) if path.exists() else None

    def _offline_uri(self, name: str, created_epoch: int) -> str:
        return str(
            self.root / self.account / "sagemaker" / self.region / "offline-store" / f"{name}-{created_epoch}"
        )

    # ---- data plane ----------------------------------------------------------------------------------

    @staticmethod
    def _lock_path(group: FeatureGroupDefinition) -> Path:
        return Path(group.offline_uri) / "catalog.lock"

    @contextlib.contextmanager
    def _catalog(self, group: FeatureGroupDefinition) -> Iterator[sqlite3.Connection]:
        path = Path(group.offline_uri) / "catalog.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            # Switching to WAL and creating the tables do not wait on SQLite's busy timeout: when several
            # hosts open a new store at once, one of them gets "database is locked". A file lock beside
            # the catalog (shared by every container on the host folder) makes them take turns.
            with exclusive(self._lock_path(group)):
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_CATALOG)
                self._recover(conn, group)
                self._upgrade(conn, group)
            yield conn
        finally:
            conn.close()

    def _recover(self, conn: sqlite3.Connection, group: FeatureGroupDefinition) -> None:
        """Finish moving the files of committed batches; drop staged files no batch committed."""
        for path, staged in conn.execute(
            "SELECT path, staged FROM files WHERE staged IS NOT NULL"
        ).fetchall():
            final, stage = Path(group.offline_uri) / path, Path(staged)
            if stage.exists() and not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                stage.replace(final)
            conn.execute("UPDATE files SET staged = NULL WHERE path = ?", (path,))
        staging = Path(group.offline_uri) / "staging"
        if staging.exists():
            committed = {s for (s,) in conn.execute("SELECT staged FROM files WHERE staged IS NOT NULL")}
            for leftover in staging.rglob("*.parquet"):
                if str(leftover) not in committed and leftover.stat().st_mtime < time.time() - 3600:
                    leftover.unlink()  # an hour old and never committed: its batch died

    def _upgrade(self, conn: sqlite3.Connection, group: FeatureGroupDefinition) -> None:
        """A catalog of an earlier smray kept keys without contents: rebuild versions and the online
        store from the committed offline files, so that unchanged records stay unchanged."""
        old = conn.execute("SELECT name FROM sqlite_master WHERE name = 'offline_keys'").fetchone()
        if old is None:
            return
        rels = [r for (r,) in conn.execute("SELECT path FROM files")]
        conn.execute("BEGIN IMMEDIATE")
        if rels:
            history = pd.concat(
                [pd.read_parquet(Path(group.offline_uri) / r) for r in rels], ignore_index=True
            )
            for deleted, part in history.groupby("is_deleted"):  # live rows first: none is revived
                self._claim(conn, group, part.drop(columns=_OFFLINE_EXTRAS), bool(deleted), False, 0.0)
            self._set_online(conn, group, latest_versions(history, group.record_id, group.event_time))
        conn.execute("DROP TABLE offline_keys")
        conn.execute("DROP TABLE IF EXISTS online")
        conn.execute("COMMIT")

    def put(
        self,
        group: FeatureGroupDefinition,
        frame: pd.DataFrame,
        deleted: bool = False,
        keep_unchanged_times: bool = False,
    ) -> PutResult:
        """Write a batch of records (record id, event time and every value column). A version already
        stored (same id, event time and values) is not written again. With `keep_unchanged_times` (the
        event times were given by the run, not by the data), a record whose values equal its online
        record's keeps that record's event time: it is unchanged, so nothing is written."""
        if frame.empty:
            return PutResult(0, 0, 0, 0)
        now = datetime.now(UTC)
        # The group's types: ids are strings, event times fractional seconds.
        frame = frame.assign(
            **{
                group.record_id: frame[group.record_id].astype(str),
                group.event_time: frame[group.event_time].astype(float),
            }
        )
        files: list[tuple[str, Path, int]] = []
        with self._catalog(group) as conn:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time across processes and hosts
            try:
                fresh = self._claim(conn, group, frame, deleted, keep_unchanged_times, now.timestamp())
                files = self._stage(group, fresh, now, deleted)
                online = self._update_online(conn, group, fresh, deleted)
                conn.executemany(
                    "INSERT INTO files (path, staged, rows, committed_at) VALUES (?, ?, ?, ?)",
                    [(rel, str(stage), rows, now.timestamp()) for rel, stage, rows in files],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                for _, stage, _ in files:
                    Path(stage).unlink(missing_ok=True)
                raise
            with exclusive(self._lock_path(group)):
                self._recover(conn, group)  # moves this batch's files into place
        return PutResult(len(frame), len(fresh), len(frame) - len(fresh), online)

    def delete_absent(self, group: FeatureGroupDefinition, present: np.ndarray, event_time: float) -> int:
        """Delete (as DeleteRecord does: a deletion row offline, the record gone online) every live record
        whose id is not in `present`: the input was the whole table, and these rows left it."""
        with self._catalog(group) as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS present (record_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM present")
            conn.executemany("INSERT OR IGNORE INTO present VALUES (?)", ((i,) for i in present.tolist()))
            absent = [
                r
                for (r,) in conn.execute(
                    "SELECT record_id FROM online_records o WHERE NOT EXISTS "
                    "(SELECT 1 FROM present p WHERE p.record_id = o.record_id)"
                )
            ]
        if not absent:
            return 0
        gone = pd.DataFrame({group.record_id: absent, group.event_time: event_time})
        for column, kind in group.value_types().items():
            gone[column] = pd.Series(np.nan, index=gone.index, dtype=_PANDAS_TYPES[kind])
        return self.put(group, gone, deleted=True).written_offline

    def _claim(
        self,
        conn: sqlite3.Connection,
        group: FeatureGroupDefinition,
        frame: pd.DataFrame,
        deleted: bool,
        keep_unchanged_times: bool,
        now: float,
    ) -> pd.DataFrame:
        """Record the batch's versions; returns the rows that are new versions (a delete is its own
        version, beside the record it deletes)."""
        digests = record_digests(frame, list(group.value_types())) if not deleted else np.zeros(len(frame))
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS batch (pos INTEGER PRIMARY KEY, record_id TEXT, "
            "event_time REAL, digest INTEGER)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS batch_ids ON batch (record_id, event_time)")
        conn.execute("DELETE FROM batch")
        conn.executemany(
            "INSERT INTO batch VALUES (?, ?, ?, ?)",
            zip(
                range(len(frame)),
                frame[group.record_id].tolist(),
                frame[group.event_time].tolist(),
                digests.astype("int64").tolist(),
                strict=True,
            ),
        )
        if keep_unchanged_times:
            conn.execute(
                "UPDATE batch SET event_time = o.event_time FROM online_records o "
                "WHERE o.record_id = batch.record_id AND o.digest = batch.digest"
            )
        if not deleted:
            # A row no newer than its record's deletion is history the deletion overrules; the input says
            # the record is live (a snapshot is the whole table), so its newest row comes back as of now.
            conn.execute(
                "UPDATE batch SET event_time = MAX(?, last.t + 0.001) FROM (SELECT b.pos, "
                "(SELECT MAX(v.event_time) FROM record_versions v WHERE v.record_id = b.record_id) AS t "
                "FROM batch b) last WHERE last.pos = batch.pos AND last.t >= batch.event_time "
                "AND EXISTS (SELECT 1 FROM record_versions d WHERE d.record_id = batch.record_id "
                "AND d.event_time = last.t AND d.deleted = 1) AND batch.event_time = "
                "(SELECT MAX(n.event_time) FROM batch n WHERE n.record_id = batch.record_id)",
                (now,),
            )
        rows = conn.execute(
            "SELECT b.pos, b.event_time, EXISTS (SELECT 1 FROM record_versions v WHERE "
            "v.record_id = b.record_id AND v.event_time = b.event_time AND v.digest = b.digest "
            "AND v.deleted = ?) FROM batch b ORDER BY b.pos",
            (int(deleted),),
        ).fetchall()
        conn.execute(
            "INSERT OR IGNORE INTO record_versions SELECT record_id, event_time, digest, ? FROM batch",
            (int(deleted),),
        )
        claimed = np.array([known == 0 for _, _, known in rows], dtype=bool)
        out = frame.assign(**{group.event_time: [t for _, t, _ in rows], _DIGEST: digests})
        # Two equal rows of one batch are one version.
        out = out[claimed & ~out.duplicated([group.record_id, group.event_time, _DIGEST]).to_numpy()]
        return out

    def _update_online(
        self, conn: sqlite3.Connection, group: FeatureGroupDefinition, fresh: pd.DataFrame, deleted: bool
    ) -> int:
        if fresh.empty:
            return 0
        # Newest per id within the batch, then SageMaker's rule against what the online store holds.
        latest = fresh.sort_values(group.event_time, kind="stable").drop_duplicates(
            group.record_id, keep="last"
        )
        if deleted:
            before = conn.total_changes
            conn.executemany(
                "DELETE FROM online_records WHERE record_id = ? AND event_time <= ?",
                zip(latest[group.record_id], latest[group.event_time].astype(float), strict=True),
            )
            return conn.total_changes - before
        return self._set_online(conn, group, latest)

    @staticmethod
    def _set_online(conn: sqlite3.Connection, group: FeatureGroupDefinition, latest: pd.DataFrame) -> int:
        """Upsert one row per id (its values as a JSON object): a newer or equal event time wins."""
        if _DIGEST not in latest:
            latest = latest.assign(**{_DIGEST: record_digests(latest, list(group.value_types()))})
        values = latest[list(group.value_types())].to_json(orient="records", lines=True).splitlines()
        before = conn.total_changes
        conn.executemany(
            "INSERT INTO online_records (record_id, event_time, digest, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(record_id) DO UPDATE SET event_time = excluded.event_time, "
            "digest = excluded.digest, record = excluded.record "
            "WHERE excluded.event_time >= online_records.event_time",
            zip(
                latest[group.record_id].astype(str),
                latest[group.event_time].astype(float),
                latest[_DIGEST].astype("int64").tolist(),
                values,
                strict=True,
            ),
        )
        return conn.total_changes - before

    def _stage(
        self, group: FeatureGroupDefinition, fresh: pd.DataFrame, now: datetime, deleted: bool
    ) -> list[tuple[str, Path, int]]:
        """Write the rows as Parquet files, one per event-time hour, into the staging folder."""
        if fresh.empty:
            return []
        table = fresh.drop(columns=[_DIGEST])
        table["write_time"] = pd.Timestamp(now)
        table["api_invocation_time"] = pd.Timestamp(now)
        table["is_deleted"] = deleted
        hours = pd.to_datetime(table[group.event_time].astype(float), unit="s", utc=True).dt.floor("h")
        staging = Path(group.offline_uri) / "staging" / secrets.token_hex(8)
        staging.mkdir(parents=True)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        out: list[tuple[str, Path, int]] = []
        for hour, part in table.groupby(hours, sort=True):
            name = f"{stamp}_{''.join(secrets.choice(_ALNUM) for _ in range(16))}.parquet"
            rel = f"data/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/{name}"
            stage = staging / name
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), stage)
            out.append((rel, stage, len(part)))
        return out

    def committed_files(self, group: FeatureGroupDefinition) -> list[Path]:
        """Every offline Parquet file of committed batches that is in place: what a reader may read,
        nothing more (a batch committed a moment ago may still be moving its files from staging)."""
        with self._catalog(group) as conn:
            rels = [r for (r,) in conn.execute("SELECT path FROM files WHERE staged IS NULL ORDER BY path")]
        return [Path(group.offline_uri) / r for r in rels]

    def online_count(self, group: FeatureGroupDefinition) -> int:
        with self._catalog(group) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM online_records").fetchone()[0])

    def get_record(self, group: FeatureGroupDefinition, record_id: str) -> dict | None:
        """The online record of an id: id, event time and its values (None for a missing value)."""
        with self._catalog(group) as conn:
            row = conn.execute(
                "SELECT event_time, record FROM online_records WHERE record_id = ?", (record_id,)
            ).fetchone()
        if row is None:
            return None
        return {group.record_id: record_id, group.event_time: row[0], **json.loads(row[1])}


def record_digests(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit digest of each row's values (as float64): equal values, equal digest."""
    values = frame[columns].astype("float64")
    return pd.util.hash_pandas_object(values, index=False).to_numpy().view("int64")


def latest_versions(history: pd.DataFrame, record_id: str, event_time: str) -> pd.DataFrame:
    """Each id's latest row of an offline history (the newest event time, then the latest write, then a
    delete over a record), live records only."""
    order = [record_id, event_time, "write_time", "is_deleted"]
    latest = history.sort_values(order, kind="stable").drop_duplicates(record_id, keep="last")
    return latest[~latest["is_deleted"].astype(bool)]


_PANDAS_TYPES = {"Integral": "float64", "Fractional": "float64", "String": "object"}
