"""A model registry on the local disk with SageMaker Model Registry's shape.

`<root>/registry.db` (SQLite) holds groups and versions; `<root>/packages/<group>/<version>/model.tar.gz`
the artifacts. Safe under concurrent writers (SQLite's locks, `BEGIN IMMEDIATE`) and crashes:

- a version number is reserved in its own committed transaction before anything else happens, so a
  number is never handed out twice, even when the writer that reserved it dies;
- the artifact is copied under a temporary name and renamed into place, and the version's row is
  inserted only after that, so a listed version always has its whole artifact. A writer killed
  mid-way leaves a reserved number with no row (a gap) and perhaps a stray temporary file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smray import durable
from smray.errors import UserError
from smray.registry.records import Approval, ModelVersion, Registry
from smray.schema import TABLE_NAME

DB_FILE = "registry.db"
ARTIFACT = "model.tar.gz"
_BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY, description TEXT NOT NULL, created TEXT NOT NULL,
    last_version INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS versions (
    grp TEXT NOT NULL REFERENCES groups(name), version INTEGER NOT NULL, status TEXT NOT NULL,
    created TEXT NOT NULL, artifact TEXT NOT NULL, image TEXT NOT NULL, metrics TEXT NOT NULL,
    execution TEXT NOT NULL, description TEXT NOT NULL, PRIMARY KEY (grp, version));
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LocalRegistry(Registry):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = f"the registry at {root}"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.root / DB_FILE, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # its subclasses: a busy database, a bad query
                raise
            raise UserError(  # "file is not a database", "database disk image is malformed"
                f"{self.root / DB_FILE} is not a usable registry ({exc}): restore it from a backup, or "
                "move it away to start an empty registry"
            ) from None
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE waits its turn behind other writers."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def register(
        self,
        group: str,
        artifact: Path,
        image: str,
        metrics: dict[str, Any],
        execution: str = "",
        description: str = "",
    ) -> ModelVersion:
        """Adds a version (PendingManualApproval) holding `artifact`: a model.tar.gz, or a model folder
        (packed into one)."""
        if not TABLE_NAME.fullmatch(group):  # SageMaker's rule for model package group names
            raise UserError(f"invalid model package group name {group!r}: letters, digits, '-'; 1-63 chars")
        if not artifact.exists():
            raise UserError(f"model artifact {artifact} does not exist")
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO groups (name, description, created) VALUES (?, ?, ?)",
                (group, f"smray models: {group}", _now()),
            )
            conn.execute("UPDATE groups SET last_version = last_version + 1 WHERE name = ?", (group,))
            (version,) = conn.execute("SELECT last_version FROM groups WHERE name = ?", (group,)).fetchone()
        target = self.root / "packages" / group / str(version) / ARTIFACT
        _place(artifact, target)
        record = ModelVersion(
            group=group,
            version=version,
            status=Approval.PENDING,
            created=_now(),
            artifact=str(target),
            image=image,
            metrics=metrics,
            execution=execution,
            description=description,
        )
        # stored relative to the root: the registry is mounted at different paths (host, job containers)
        row = (group, version, record.status.value, record.created, str(target.relative_to(self.root)), image)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, json.dumps(metrics), execution, description),
            )
        return record

    def set_status(self, group: str, version: int, status: Approval, description: str = "") -> ModelVersion:
        self.describe(group, version)  # no such version: refused before an empty registry is created
        with self._write() as conn:
            found = conn.execute(
                "UPDATE versions SET status = ?, description = CASE WHEN ? = '' THEN description ELSE ? END "
                "WHERE grp = ? AND version = ?",
                (status.value, description, description, group, version),
            ).rowcount
        if not found:
            raise UserError(f"no model version {group}/{version} in the registry at {self.root}")
        return self.describe(group, version)

    def groups(self) -> list[str]:
        if not (self.root / DB_FILE).exists():
            return []
        with self._connect() as conn:
            try:
                return [r[0] for r in conn.execute("SELECT name FROM groups ORDER BY name")]
            except sqlite3.OperationalError:  # a registry whose first writer has not committed yet
                return []

    def versions(self, group: str, status: Approval | None = None) -> list[ModelVersion]:
        """Newest first."""
        if not (self.root / DB_FILE).exists():
            return []
        query = "SELECT * FROM versions WHERE grp = ?" + (" AND status = ?" if status else "")
        params = (group, status.value) if status else (group,)
        with self._connect() as conn:
            try:
                rows = conn.execute(query + " ORDER BY version DESC", params).fetchall()
            except sqlite3.OperationalError:
                return []
        return [_record(row, self.root) for row in rows]


def _record(row: tuple, root: Path) -> ModelVersion:
    group, version, status, created, artifact, image, metrics, execution, description = row
    return ModelVersion(
        group=group,
        version=version,
        status=Approval(status),
        created=created,
        artifact=str(root / artifact),
        image=image,
        metrics=json.loads(metrics),
        execution=execution,
        description=description,
    )


def _place(source: Path, target: Path) -> None:
    """Copies (or packs) the artifact under a temporary name, syncs it, then renames it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    if source.is_dir():
        with tarfile.open(partial, "w:gz") as tar:
            for item in sorted(source.iterdir()):
                tar.add(item, arcname=item.name)
    else:
        shutil.copyfile(source, partial)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
    durable.sync(target.parent)  # the rename itself survives a crash only once its folder is synced too
