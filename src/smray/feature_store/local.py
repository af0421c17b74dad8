"""A feature store on a local (or mounted) folder that keeps SageMaker Feature Store's contract.

- Offline store: exactly SageMaker's layout, so the same readers work on both:
  `<root>/<account>/sagemaker/<region>/offline-store/<group>-<creation epoch>/data/year=YYYY/month=MM/
  day=DD/hour=HH/<YYYYMMDDTHHMMSSZ>_<16 alphanumerics>.parquet`, partitioned by event time, with the extra
  columns write_time, api_invocation_time and is_deleted. Numbers as numbers, a String column (a string
  feature, a classification's labels) as Arrow strings, a missing value as null, as SageMaker writes them.
- Online store: the latest record per id, by SageMaker's rule: a record whose event time is older than
  the stored one goes to the offline store only. It holds each record's key (event time, digest of the
  values); `get_record` reads the values from that version's offline row, so a batch is written once.
- Versions by content: a record is written when its (record id, event time, values) is new to the store,
  so a re-run writes nothing, and a changed record becomes a new version. `delete_absent` deletes the
  live records an ingest did not bring (the input is the whole table).
- Columnar: the record state (every version's key, every online record's key) lives in Parquet files under
  `catalog/`: one per batch for its new versions and one for its online changes, merged into one file
  each when they pile up. SQLite holds only the catalog: which files are committed.
- Atomic and immediately visible: a batch's Parquet files (offline and state) are staged, the batch is
  committed in one SQLite transaction (the file lists), then the offline files are moved into place.
  A batch's files are written side by side, one per core.
  Readers list committed files from the catalog, never by globbing, so they never see a half-written
  batch, and a crashed batch is finished or discarded on the next open.
- Durable: every file (and folder entry) a commit names is on the disk before the commit (`durable`), so a
  power cut loses whole batches, never a committed file. Paths in the catalog are relative to the group's
  folder, which job containers mount elsewhere than the host. A store damaged all the same (by an earlier
  smray, a disk) fails with the file's name, and `repair` rebuilds it from the readable offline files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import string
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from smray import durable
from smray import schema as schema_mod
from smray.errors import PlatformError, UserError
from smray.feature_store.definition import FeatureGroupDefinition
from smray.feature_store.record_state import (
    DIGEST,
    Ids,
    RecordState,
    as_online_changes,
    is_in,
    record_digests,
)
from smray.locks import exclusive
from smray.schema import Schema

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"
_ALNUM = string.ascii_letters + string.digits
_BUSY_TIMEOUT_S = 120.0
_CATALOG = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, staged TEXT, rows INTEGER, committed_at REAL);
CREATE TABLE IF NOT EXISTS state_files (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, path TEXT,
    retired_at REAL);
"""
# The record state's files: new versions, a full online snapshot, a batch's online changes, and a batch's
# new versions that are each an online change too (a first ingest, most re-ingests): one file, not two.
_VERSIONS, _ONLINE, _ONLINE_CHANGES = "versions", "online", "online-changes"
_VERSIONS_ONLINE = "versions-online"
_MAX_STATE_FILES = 16  # more, and a batch compacts them: opening the store reads few files
_RETIRED_KEPT_S = 600.0  # a compacted file stays this long for readers that listed it just before
# A catalog's state version: its folder, its newest state file's number and (random) name.
_StateVersion = tuple[str, int, str]
# The last record state this process read or committed, and its version: steps open the store several
# times, and need not read the state again while no one commits.
_last_state: list[tuple[_StateVersion, RecordState]] = []
# Earlier smray kept the record state in SQLite: a catalog with these tables is upgraded on open.
_LEGACY_TABLES = ("offline_keys", "online", "record_versions", "online_records")
_PARQUET_MIN_BYTES = 12  # its magic number at both ends and the footer's length: a smaller file is damaged
_UNREADABLE = (OSError, pa.ArrowException)  # what reading a missing or damaged Parquet file raises


@dataclass(frozen=True)
class _ParquetFile:
    """A file to write: `table`'s rows at `rows` (in that order), or all of them."""

    path: Path
    table: pa.Table
    rows: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows if self.rows is None else len(self.rows)

    def write(self) -> None:
        # Without dictionaries: they pay for repeated values, which ids, times, digests and most features
        # hardly have, and trying them doubles the time a write takes (files ~7% larger).
        table = self.table if self.rows is None else self.table.take(self.rows)
        pq.write_table(table, self.path, use_dictionary=False)
        durable.sync(self.path)


@dataclass(frozen=True)
class PutResult:
    offered: int  # rows in the batch
    written_offline: int  # rows new to the offline store
    already_present: int  # (id, event time) pairs the offline store had: skipped
    online_updated: int  # rows that became the online record for their id


@dataclass(frozen=True)
class Repaired:
    dropped: dict[str, str]  # offline files dropped from the catalog (path in the group folder: why)
    kept: int  # offline files the record state was rebuilt from
    rows: int  # their rows
    online: int  # online records after the repair


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
        try:
            described = FeatureGroupDefinition.from_description(json.loads(path.read_text()))
            # The store folder is mounted at other paths in job containers than on the host: the offline
            # store always lies under this root, whatever path the group was created at.
            group, epoch = Path(described.offline_uri).name.rsplit("-", 1)
            return replace(described, offline_uri=self._offline_uri(group, int(epoch)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # not JSON (an earlier smray's file that a power cut emptied), or not a group's description
            raise PlatformError(
                f"the feature group file {path} cannot be read ({type(exc).__name__}: {exc}), as after a "
                "crash or power cut: restore it, or remove it to create the group anew"
            ) from exc

    def ensure_group(self, wanted: FeatureGroupDefinition) -> FeatureGroupDefinition:
        """Create the group if missing; if present, its definition must match (no silent casts)."""
        existing = self.describe(wanted.name)
        if existing is not None:
            existing.check_matches(wanted)
            return existing
        created = wanted.created_now(self._offline_uri(wanted.name, int(time.time())))
        path = self._group_file(wanted.name)
        # Another host may create the same group at the same moment: the first one wins.
        durable.write_text(path, json.dumps(created.to_description(), indent=2), keep_existing=True)
        winner = self.describe(wanted.name)
        if winner is None:
            raise UserError(f"feature group {wanted.name} vanished from {path} while it was created")
        winner.check_matches(wanted)
        return winner

    def _schema_file(self, group: str) -> Path:
        return self._group_file(group).with_suffix(".schema.json")

    def save_schema(self, group: str, schema: Schema) -> None:
        """The group's schema (target, rules, policies), so later steps read the data as ingest did."""
        durable.write_text(self._schema_file(group), schema.dumps())

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
    def _catalog(self, group: FeatureGroupDefinition, recover: bool = True) -> Iterator[sqlite3.Connection]:
        """The group's catalog, opened (with `recover`: crashed batches finished or discarded first)."""
        path = Path(group.offline_uri) / "catalog.sqlite"
        durable.make_dirs(path.parent)
        conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            # Switching to WAL and creating the tables do not wait on SQLite's busy timeout: when several
            # hosts open a new store at once, one of them gets "database is locked". A file lock beside
            # the catalog (shared by every container on the host folder) makes them take turns.
            with exclusive(self._lock_path(group)):
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_CATALOG)
                if recover:
                    self._recover(conn, group)
                    self._upgrade(conn, group)
            yield conn
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # its subclasses: a busy database, a bad query
                raise
            raise PlatformError(  # "file is not a database", "database disk image is malformed"
                f"feature group {group.name}: {path} is not a usable catalog ({exc}), as after a disk "
                "failure: restore it from a backup"
            ) from None
        finally:
            conn.close()

    def _recover(self, conn: sqlite3.Connection, group: FeatureGroupDefinition) -> None:
        """Finish moving the files of committed batches; drop staged and state files no batch committed,
        and state files retired long enough ago that no reader still reads them. A committed file that is
        nowhere fails: its rows must not count as stored."""
        root = Path(group.offline_uri)
        lost = self._move_committed(conn, group)
        if lost:
            rel, why = next(iter(lost.items()))
            more = f" (and {len(lost) - 1} more committed files)" if len(lost) > 1 else ""
            raise self._damaged(group, root / rel, why + more)
        staging = root / "staging"
        if staging.exists():
            committed = {s for (s,) in conn.execute("SELECT staged FROM files WHERE staged IS NOT NULL")}
            _remove_dead(staging.rglob("*.parquet"), lambda path: _relative(path, root) in committed)
        state_dir = self._state_dir(group)
        for (name,) in conn.execute(
            "DELETE FROM state_files WHERE retired_at < ? RETURNING path", (time.time() - _RETIRED_KEPT_S,)
        ).fetchall():
            (state_dir / name).unlink(missing_ok=True)
        if state_dir.exists():
            listed = {n for (n,) in conn.execute("SELECT path FROM state_files")}
            _remove_dead(state_dir.glob("*.parquet"), lambda path: path.name in listed)

    @staticmethod
    def _move_committed(conn: sqlite3.Connection, group: FeatureGroupDefinition) -> dict[str, str]:
        """Move the staged files of committed batches into place, on the disk, then mark them moved;
        return the ones neither staged nor in place (path in the group folder: why)."""
        root = Path(group.offline_uri)
        moved, lost, folders = [], {}, set()
        for rel, staged in conn.execute("SELECT path, staged FROM files WHERE staged IS NOT NULL").fetchall():
            final, stage = root / rel, _staged_path(root, staged)
            if stage.exists() and not final.exists():
                durable.make_dirs(final.parent)
                stage.replace(final)
                folders |= {stage.parent, final.parent}
            elif not final.exists():
                lost[rel] = f"is missing, and so is its staged copy {stage}"
                continue
            moved.append(rel)
        durable.sync_all(folders)
        if moved:
            conn.execute(
                "UPDATE files SET staged = NULL WHERE path IN (SELECT value FROM json_each(?))",
                (json.dumps(moved),),
            )
        return lost

    def _damaged(self, group: FeatureGroupDefinition, path: Path, why: str) -> PlatformError:
        return PlatformError(
            f"feature group {group.name}: {path} {why}, as after a crash or power cut; "
            f"`smray store repair --store {self.root} {group.name}` rebuilds the group from its readable "
            "offline files"
        )

    def _upgrade(self, conn: sqlite3.Connection, group: FeatureGroupDefinition) -> None:
        """An earlier smray kept the record state in SQLite tables: rebuild it from the committed offline
        files, so that unchanged records stay unchanged."""
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables & set(_LEGACY_TABLES):
            with _transaction(conn):
                self._rebuild(conn, group, self._history(conn, group))

    def _rebuild(
        self, conn: sqlite3.Connection, group: FeatureGroupDefinition, history: pd.DataFrame | None
    ) -> RecordState:
        """Inside a transaction: the record state `history` (every committed offline row) implies, in place
        of the listed one; an earlier smray's tables dropped."""
        state = (
            RecordState.from_history(history, group.record_id, group.event_time, list(group.value_types()))
            if history is not None
            else RecordState.empty(group.record_id, group.event_time)
        )
        self._compact(conn, group, state)
        for name in _LEGACY_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {name}")  # a name from _LEGACY_TABLES, never from input
        return state

    def _history(
        self,
        conn: sqlite3.Connection,
        group: FeatureGroupDefinition,
        unreadable: dict[str, str] | None = None,
    ) -> pd.DataFrame | None:
        """Every committed offline row, in commit order. A file that cannot be read fails, or with
        `unreadable` is left out and noted there (path in the group folder: why)."""
        root, frames = Path(group.offline_uri), []
        for (rel,) in conn.execute("SELECT path FROM files WHERE staged IS NULL ORDER BY rowid").fetchall():
            try:
                frames.append(pd.read_parquet(root / rel))
            except _UNREADABLE as exc:
                if unreadable is None:
                    raise self._damaged(group, root / rel, _cannot_read(exc)) from exc
                unreadable[rel] = _cannot_read(exc)
        return pd.concat(frames, ignore_index=True) if frames else None

    def repair(self, group: FeatureGroupDefinition) -> Repaired:
        """Rebuild a group that a crash or power cut damaged from its offline files that are there and
        readable: a committed offline file that is neither in place nor staged, or that cannot be read, is
        dropped from the catalog (an unreadable one is moved to `damaged/` in the group's folder), and the
        record state is rebuilt from the rest (a state file that cannot be read is no longer read)."""
        root = Path(group.offline_uri)
        with (
            self._catalog(group, recover=False) as conn,
            exclusive(self._lock_path(group)),
            _transaction(conn),
        ):
            dropped = self._move_committed(conn, group)
            history = self._history(conn, group, unreadable=dropped)
            conn.execute(
                "DELETE FROM files WHERE path IN (SELECT value FROM json_each(?))",
                (json.dumps(list(dropped)),),
            )
            state = self._rebuild(conn, group, history)
            kept = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        _last_state.clear()
        for rel in dropped:
            if (root / rel).exists():  # no longer listed: out of the offline layout, kept for a look
                durable.make_dirs((root / "damaged" / rel).parent)
                (root / rel).replace(root / "damaged" / rel)
        rows = 0 if history is None else len(history)
        return Repaired(dropped, kept, rows, len(state.online))

    # ---- the record state: Parquet files listed in the catalog --------------------------------------

    @staticmethod
    def _state_dir(group: FeatureGroupDefinition) -> Path:
        return Path(group.offline_uri) / "catalog"

    @staticmethod
    def _state_version(conn: sqlite3.Connection, group: FeatureGroupDefinition) -> _StateVersion:
        newest = conn.execute("SELECT seq, path FROM state_files ORDER BY seq DESC LIMIT 1").fetchone()
        return (group.offline_uri, *(newest or (0, "")))

    def _state(self, conn: sqlite3.Connection, group: FeatureGroupDefinition) -> RecordState:
        """The committed record state (the last one read or written is kept while no one commits)."""
        version = self._state_version(conn, group)
        if _last_state and _last_state[0][0] == version:
            return _last_state[0][1]
        active = conn.execute(
            "SELECT seq, kind, path FROM state_files WHERE retired_at IS NULL ORDER BY seq"
        ).fetchall()
        snapshot = max((seq for seq, kind, _ in active if kind == _ONLINE), default=0)
        frames = {p: self._read_state_file(group, p) for _, _, p in active}
        state = RecordState.from_files(
            RecordState.empty(group.record_id, group.event_time),
            versions=[frames[p] for _, kind, p in active if kind in (_VERSIONS, _VERSIONS_ONLINE)],
            online=[
                as_online_changes(frames[p]) if kind == _VERSIONS_ONLINE else frames[p]
                for seq, kind, p in active
                if kind != _VERSIONS and seq >= snapshot
            ],
        )
        _last_state[:] = [(version, state)]
        return state

    def _read_state_file(self, group: FeatureGroupDefinition, name: str) -> pd.DataFrame:
        path = self._state_dir(group) / name
        try:
            return pd.read_parquet(path)
        except _UNREADABLE as exc:
            raise self._damaged(group, path, _cannot_read(exc)) from exc

    def _add_state_files(
        self,
        conn: sqlite3.Connection,
        group: FeatureGroupDefinition,
        frames: list[tuple[str, pd.DataFrame]],
        beside: list[_ParquetFile] | None = None,
    ) -> list[Path]:
        """Write the record state's files (kind, frame), and the `beside` files at the same time, each one
        and its folder on the disk, then list the state files in the catalog (inside the caller's
        transaction). On an error nothing is left."""
        folder = self._state_dir(group)
        durable.make_dirs(folder)
        named = [(kind, folder / f"{kind}-{secrets.token_hex(8)}.parquet", frame) for kind, frame in frames]
        files = [
            _ParquetFile(path, pa.Table.from_pandas(frame, preserve_index=False)) for _, path, frame in named
        ]
        written = files + (beside or [])
        try:
            _write_parquet(written)
            durable.sync_all(file.path.parent for file in written)
            conn.executemany(
                "INSERT INTO state_files (kind, path) VALUES (?, ?)", [(k, p.name) for k, p, _ in named]
            )
        except BaseException:
            for file in files:
                file.path.unlink(missing_ok=True)  # files no catalog row lists
            raise
        return [file.path for file in files]

    def _compact(
        self, conn: sqlite3.Connection, group: FeatureGroupDefinition, state: RecordState
    ) -> list[Path]:
        """Replace the state's files by one of versions and one online snapshot (inside a transaction)."""
        active = conn.execute("SELECT MAX(seq) FROM state_files").fetchone()[0]
        written = self._add_state_files(
            conn, group, [(_VERSIONS, state.versions), (_ONLINE, state.online.reset_index())]
        )
        if active is not None:
            conn.execute(
                "UPDATE state_files SET retired_at = ? WHERE seq <= ? AND retired_at IS NULL",
                (time.time(), active),
            )
        return written

    @staticmethod
    def _active_state_files(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT COUNT(*) FROM state_files WHERE retired_at IS NULL").fetchone()[0]

    def put(
        self,
        group: FeatureGroupDefinition,
        frame: pd.DataFrame,
        deleted: bool = False,
        keep_unchanged_times: bool = False,
        digests: np.ndarray | None = None,
        ids_distinct: bool = False,
    ) -> PutResult:
        """Write a batch of records (record id, event time and every value column). A version already
        stored (same id, event time and values) is not written again. With `keep_unchanged_times` (the
        event times were given by the run, not by the data), a record whose values equal its online
        record's keeps that record's event time: it is unchanged, so nothing is written. `digests`: the
        rows' `record_digests` (of the group's value columns, in its order), when the caller has them;
        `ids_distinct`: the caller checked that no id repeats in the batch."""
        if frame.empty:
            return PutResult(0, 0, 0, 0)
        # The group's types: ids are strings, event times fractional seconds.
        frame = frame.assign(
            **{
                group.record_id: frame[group.record_id].astype(str),
                group.event_time: frame[group.event_time].astype(float),
            }
        )
        values = list(group.value_types())
        files: list[tuple[str, _ParquetFile]] = []
        state_files: list[Path] = []
        root = Path(group.offline_uri)
        with self._catalog(group) as conn:
            try:
                with _transaction(conn):
                    now = self._write_time(conn)
                    applied = self._state(conn, group).apply(
                        frame, values, deleted, keep_unchanged_times, now.timestamp(), digests, ids_distinct
                    )
                    files = self._stage(group, applied.fresh, now, deleted)
                    changes = (
                        [(_VERSIONS_ONLINE, applied.versions)]
                        if len(applied.online_changes) == len(applied.versions)  # the same keys, then
                        else [(_VERSIONS, applied.versions), (_ONLINE_CHANGES, applied.online_changes)]
                    )
                    state_files = self._add_state_files(
                        conn,
                        group,
                        [(kind, rows) for kind, rows in changes if not rows.empty],
                        beside=[file for _, file in files],
                    )
                    if self._active_state_files(conn) > _MAX_STATE_FILES:
                        state_files += self._compact(conn, group, applied.state)
                    conn.executemany(
                        "INSERT INTO files (path, staged, rows, committed_at) VALUES (?, ?, ?, ?)",
                        [
                            (rel, _relative(file.path, root), file.num_rows, now.timestamp())
                            for rel, file in files
                        ],
                    )
                    version = self._state_version(conn, group)
                _last_state[:] = [(version, applied.state)]
            except BaseException:
                _last_state.clear()
                for stage in [file.path for _, file in files] + state_files:
                    Path(stage).unlink(missing_ok=True)
                raise
            with exclusive(self._lock_path(group)):
                self._recover(conn, group)  # moves this batch's files into place
        fresh = len(applied.fresh)
        return PutResult(len(frame), fresh, len(frame) - fresh, len(applied.online_changes))

    @staticmethod
    def _write_time(conn: sqlite3.Connection) -> datetime:
        """The batch's write time: taken inside its transaction, and after the last commit's (the hosts that
        share a store need not share a clock). Write times then follow the commits, as the online store
        does, so that for equal event times the newest write wins offline too."""
        now = datetime.now(UTC)
        last = conn.execute("SELECT MAX(committed_at) FROM files").fetchone()[0]
        if last is not None and now.timestamp() <= last:
            return datetime.fromtimestamp(last, UTC) + timedelta(microseconds=1)
        return now

    def delete_absent(
        self, group: FeatureGroupDefinition, present: Ids, event_time: float, ids_distinct: bool = False
    ) -> int:
        """Delete (as DeleteRecord does: a deletion row offline, the record gone online) every live record
        whose id is not in `present`: the input was the whole table, just written, and these rows left it.
        `ids_distinct`: the caller checked that no id repeats in `present`."""
        with self._catalog(group) as conn:
            online = self._state(conn, group).online
        if ids_distinct and len(online) == len(present):
            return 0  # every present id is online once written: no other id is
        absent = online.index[~is_in(online.index, present)]
        if absent.empty:
            return 0
        gone = pd.DataFrame({group.record_id: absent.array, group.event_time: event_time})
        for column, kind in group.value_types().items():
            gone[column] = pd.Series(np.nan, index=gone.index, dtype=_PANDAS_TYPES[kind])
        return self.put(group, gone, deleted=True).written_offline

    def _stage(
        self, group: FeatureGroupDefinition, fresh: pd.DataFrame, now: datetime, deleted: bool
    ) -> list[tuple[str, _ParquetFile]]:
        """The rows as Parquet files to write into the staging folder, one per event-time hour: each one's
        place in the offline store, and the file."""
        if fresh.empty:
            return []
        rows = fresh.drop(columns=[DIGEST]).assign(
            write_time=pd.Timestamp(now), api_invocation_time=pd.Timestamp(now), is_deleted=deleted
        )
        hours = (rows[group.event_time].to_numpy(dtype="float64") // 3600).astype("int64")
        table = _with_text_columns(pa.Table.from_pandas(rows, preserve_index=False), group)
        order = None
        if (np.diff(hours) < 0).any():  # not in time order already (one hour, or sorted input, is)
            first = hours.min()
            # Hours within 7 years of each other fit 16 bits, which numpy sorts by radix: 8x faster.
            keys = (hours - first).astype("uint16") if hours.max() - first < 2**16 else hours
            order = np.argsort(keys, kind="stable")
            hours = hours[order]
        starts = np.flatnonzero(np.diff(hours, prepend=hours[0] - 1))
        ends = [*starts[1:], len(hours)]
        staging = Path(group.offline_uri) / "staging" / secrets.token_hex(8)
        durable.make_dirs(staging)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        out: list[tuple[str, _ParquetFile]] = []
        for start, end in zip(starts, ends, strict=True):
            hour = datetime.fromtimestamp(int(hours[start]) * 3600, UTC)
            name = f"{stamp}_{''.join(secrets.choice(_ALNUM) for _ in range(16))}.parquet"
            rel = f"data/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/{name}"
            out.append(
                (
                    rel,
                    _ParquetFile(staging / name, table.slice(start, end - start))
                    if order is None  # each file takes its rows as it is written, on its own core
                    else _ParquetFile(staging / name, table, order[start:end]),
                )
            )
        return out

    def committed_files(self, group: FeatureGroupDefinition) -> list[Path]:
        """Every offline Parquet file of committed batches that is in place: what a reader may read,
        nothing more (a batch committed a moment ago may still be moving its files from staging)."""
        with self._catalog(group) as conn:
            return self._committed(conn, group)

    def _committed(self, conn: sqlite3.Connection, group: FeatureGroupDefinition) -> list[Path]:
        """The committed files in place; one that is missing or too small for a Parquet file (what a power
        cut leaves of a file whose bytes never reached the disk) fails here, not in a reader."""
        rels = [r for (r,) in conn.execute("SELECT path FROM files WHERE staged IS NULL ORDER BY path")]
        files = [Path(group.offline_uri) / r for r in rels]
        for path in files:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise self._damaged(group, path, "is missing") from None
            if size < _PARQUET_MIN_BYTES:
                raise self._damaged(group, path, f"has {size} bytes, too few for a Parquet file")
        return files

    def online_count(self, group: FeatureGroupDefinition) -> int:
        with self._catalog(group) as conn:
            return len(self._state(conn, group).online)

    def get_record(self, group: FeatureGroupDefinition, record_id: str) -> dict | None:
        """The online record of an id: id, event time and its values (None for a missing value), from the
        offline row of its online version."""
        with self._catalog(group) as conn:
            online, files = self._state(conn, group).online, self._committed(conn, group)
        if record_id not in online.index:
            return None
        # Column by column: a row of both would pass the int64 digest through float64.
        when, digest = online.at[record_id, group.event_time], online.at[record_id, DIGEST]
        values = list(group.value_types())
        rows = (
            ds.dataset([str(f) for f in files], format="parquet")
            .to_table(
                columns=values,
                filter=(pc.field(group.record_id) == record_id) & (pc.field(group.event_time) == when),
            )
            .to_pandas()
        )
        row = rows[record_digests(rows, values) == digest].iloc[0]
        return {group.record_id: record_id, group.event_time: when} | {
            k: None if pd.isna(v) else v for k, v in row.items()
        }


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One writer at a time across processes and hosts: all of it committed, or nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _staged_path(root: Path, staged: str) -> Path:
    """Where a committed batch's file is staged: `staged` is staging/<batch>/<name> in the group folder (an
    earlier smray kept the absolute path, in the folder where its process saw the group)."""
    return root.joinpath(*Path(staged).parts[-3:])


def _cannot_read(exc: BaseException) -> str:
    return "cannot be read (" + " ".join(str(exc).split()) + ")"


def _remove_dead(files: Iterable[Path], committed: Callable[[Path], bool]) -> None:
    """Remove the files no batch committed that are an hour old: the batch that wrote them died."""
    hour_ago = time.time() - 3600
    for path in files:
        if not committed(path) and path.stat().st_mtime < hour_ago:
            path.unlink(missing_ok=True)


def _write_parquet(files: list[_ParquetFile]) -> None:
    """Write the files side by side: Arrow encodes one file on one core."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for done in [pool.submit(file.write) for file in files]:
            done.result()


def _with_text_columns(table: pa.Table, group: FeatureGroupDefinition) -> pa.Table:
    """The group's String columns as Arrow strings, as SageMaker's offline store has them (pandas' text is
    large_string, and a column missing in every row of a batch would be of no type at all)."""
    for name, kind in group.value_types().items():
        at = table.schema.get_field_index(name)
        if kind == "String" and table.schema.field(at).type != pa.string():
            table = table.set_column(at, name, table[name].cast(pa.string()))
    return table


_PANDAS_TYPES = {"Integral": "float64", "Fractional": "float64", "String": "str"}
