"""A feature store on a local (or mounted) folder that keeps SageMaker Feature Store's contract.

- Offline store: exactly SageMaker's layout, so the same readers work on both:
  `<root>/<account>/sagemaker/<region>/offline-store/<group>-<creation epoch>/data/year=YYYY/month=MM/
  day=DD/hour=HH/<YYYYMMDDTHHMMSSZ>_<16 alphanumerics>.parquet`, partitioned by event time, with the extra
  columns write_time, api_invocation_time and is_deleted.
- Online store: SQLite, the latest record per id, by SageMaker's rule: a record whose event time is older
  than the stored one goes to the offline store only.
- Idempotent: a (record id, event time) pair already in the offline store is not written again.
- Atomic and immediately visible: a batch's Parquet files are staged, the batch is committed in one SQLite
  transaction (keys, online rows, file list), then the files are moved into place. Readers list committed
  files from the catalog, never by globbing, so they never see a half-written batch, and a crashed batch
  is finished or discarded on the next open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import sqlite3
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smray.errors import UserError
from smray.feature_store.definition import FeatureGroupDefinition

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"
_ALNUM = string.ascii_letters + string.digits
_BUSY_TIMEOUT_S = 120.0


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
        return FeatureGroupDefinition.from_description(json.loads(path.read_text()))

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
            with _exclusive(self._lock_path(group)):
                conn.execute("PRAGMA journal_mode=WAL")
                columns = ", ".join(f'"{c}" {_sql_type(t)}' for c, t in group.value_types().items())
                conn.executescript(
                    f"""
                    CREATE TABLE IF NOT EXISTS offline_keys (record_id TEXT, event_time REAL,
                        deleted INTEGER, PRIMARY KEY (record_id, event_time, deleted)) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS online (record_id TEXT PRIMARY KEY, event_time REAL,
                        {columns});
                    CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, staged TEXT, rows INTEGER,
                        committed_at REAL);
                    """
                )
                self._recover(conn, group)
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

    def put(self, group: FeatureGroupDefinition, frame: pd.DataFrame, deleted: bool = False) -> PutResult:
        """Write a batch of records (record id, event time and every value column)."""
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
        ids = frame[group.record_id].to_numpy()
        times = frame[group.event_time].to_numpy()
        with self._catalog(group) as conn:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time across processes and hosts
            try:
                new_mask = self._claim_keys(conn, ids, times, deleted)
                fresh = frame.loc[new_mask]
                files = self._stage(group, fresh, now, deleted)
                online = self._update_online(conn, group, fresh, deleted)
                conn.executemany(
                    "INSERT INTO files (path, staged, rows, committed_at) VALUES (?, ?, ?, ?)",
                    [(rel, str(stage), rows, now.timestamp()) for rel, stage, rows in files],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                for _, stage, _ in locals().get("files", []):
                    Path(stage).unlink(missing_ok=True)
                raise
            with _exclusive(self._lock_path(group)):
                self._recover(conn, group)  # moves this batch's files into place
        return PutResult(len(frame), int(new_mask.sum()), int((~new_mask).sum()), online)

    def _claim_keys(
        self, conn: sqlite3.Connection, ids: np.ndarray, times: np.ndarray, deleted: bool
    ) -> np.ndarray:
        """Record the batch's (id, event time) pairs; True where a pair is new to the offline store (a
        delete is its own row there, beside the record it deletes)."""
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS batch (pos INTEGER, record_id TEXT, event_time REAL)")
        conn.execute("DELETE FROM batch")
        conn.executemany(
            "INSERT INTO batch VALUES (?, ?, ?)",
            zip(range(len(ids)), ids.tolist(), times.tolist(), strict=True),
        )
        known = conn.execute(
            "SELECT b.pos FROM batch b JOIN offline_keys k ON k.record_id = b.record_id "
            "AND k.event_time = b.event_time AND k.deleted = ?",
            (int(deleted),),
        ).fetchall()
        mask = np.ones(len(ids), dtype=bool)
        mask[[p for (p,) in known]] = False
        conn.execute(
            "INSERT OR IGNORE INTO offline_keys SELECT record_id, event_time, ? FROM batch", (int(deleted),)
        )
        return mask

    def _update_online(
        self, conn: sqlite3.Connection, group: FeatureGroupDefinition, fresh: pd.DataFrame, deleted: bool
    ) -> int:
        if fresh.empty:
            return 0
        # Newest per id within the batch, then SageMaker's rule against what the online store holds.
        latest = fresh.sort_values(group.event_time).drop_duplicates(group.record_id, keep="last")
        before = conn.total_changes
        if deleted:
            conn.executemany(
                "DELETE FROM online WHERE record_id = ? AND event_time <= ?",
                zip(latest[group.record_id].astype(str), latest[group.event_time].astype(float), strict=True),
            )
        else:
            values = list(group.value_types())
            cols = ", ".join(f'"{c}"' for c in ["record_id", "event_time", *values])
            marks = ", ".join("?" * (len(values) + 2))
            updates = ", ".join(f'"{c}" = excluded."{c}"' for c in ["event_time", *values])
            rows = zip(
                latest[group.record_id].astype(str),
                latest[group.event_time].astype(float),
                *(latest[c].tolist() for c in values),
                strict=True,
            )
            upsert = (
                f"INSERT INTO online ({cols}) VALUES ({marks}) ON CONFLICT(record_id) "
                f"DO UPDATE SET {updates} WHERE excluded.event_time >= online.event_time"
            )
            conn.executemany(upsert, rows)
        return conn.total_changes - before

    def _stage(
        self, group: FeatureGroupDefinition, fresh: pd.DataFrame, now: datetime, deleted: bool
    ) -> list[tuple[str, Path, int]]:
        """Write the rows as Parquet files, one per event-time hour, into the staging folder."""
        if fresh.empty:
            return []
        table = fresh.copy()
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
        """Every offline Parquet file of committed batches: what a reader may read, nothing more."""
        with self._catalog(group) as conn:
            rels = [r for (r,) in conn.execute("SELECT path FROM files ORDER BY path")]
        return [Path(group.offline_uri) / r for r in rels]

    def online_count(self, group: FeatureGroupDefinition) -> int:
        with self._catalog(group) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM online").fetchone()[0])

    def get_record(self, group: FeatureGroupDefinition, record_id: str) -> dict | None:
        with self._catalog(group) as conn:
            cur = conn.execute("SELECT * FROM online WHERE record_id = ?", (record_id,))
            row = cur.fetchone()
            return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sql_type(kind: str) -> str:
    return {"Integral": "INTEGER", "Fractional": "REAL", "String": "TEXT"}[kind]
