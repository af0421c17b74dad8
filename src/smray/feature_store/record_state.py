"""The local store's record state, in memory: every version it holds (so a version is written once) and
each record's online row (by SageMaker's rule: a newer or equal event time wins), and what a batch of
records changes in them. Pure functions of frames, vectorised, with one hash lookup of the batch's ids in
the online rows: a batch costs time in proportion to itself, plus one pass over the state for what
matches no online row. The store (`local.py`) loads the state from its files, applies a batch, and
commits the changes beside the batch's offline files.

Internal columns start with an underscore: never a valid SageMaker feature name, so never a value column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Ids = pd.Index | pd.Series | pd.api.extensions.ExtensionArray | np.ndarray
DIGEST = "_digest"  # a 64-bit digest of the record's values; 0 for a deletion
DELETED = "_deleted"  # the version is a deletion
LIVE = "_live"  # an online change: the record's new online row (True) or its removal (False)
_AFTER = 0.001  # a record revived after a deletion takes at least the deletion's time plus this


def record_digests(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit digest of each row's values: equal values, equal digest. Numbers as float64 (an integer
    read from one file equals the float of another), text as text (string features, labels: a missing
    value is no text, not even "None"); a column's kind is its dtype's."""
    values = frame[columns]
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(values[c].dtype)]
    if text:
        values = values.astype({c: "str" if c in text else "float64" for c in columns})
    else:  # as every smray before string features digested the values: stored digests stay valid
        values = values.astype("float64")
    return pd.util.hash_pandas_object(values, index=False).to_numpy().view("int64")


def latest_versions(history: pd.DataFrame, record_id: str, event_time: str) -> pd.DataFrame:
    """Each id's latest row of an offline history (the newest event time, then the latest write, then a
    delete over a record), live records only."""
    order = [record_id, event_time, "write_time", "is_deleted"]
    latest = history.sort_values(order, kind="stable").drop_duplicates(record_id, keep="last")
    return latest[~latest["is_deleted"].astype(bool)]


def is_in(values: Ids, of: Ids) -> np.ndarray:
    """Which of `values` (strings) are among `of`: Arrow's hash set, not a Python loop over strings."""
    found = pc.is_in(pa.array(ids(values)), value_set=pa.array(ids(of)))
    return found.to_numpy(zero_copy_only=False)


def distinct(values: Ids) -> bool:
    """Whether no id repeats. Integer ids: pandas' hash table; text: Arrow's, three times faster there."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return pd.Index(values).is_unique
    array = pa.array(ids(values))
    return len(pc.unique(array)) == len(array)


def as_online_changes(versions: pd.DataFrame) -> pd.DataFrame:
    """A batch's new versions as its online changes, when each one is (a deletion removes the record)."""
    return versions.assign(**{LIVE: ~versions[DELETED].to_numpy(dtype=bool)}).drop(columns=DELETED)


def ids(values: Ids) -> pd.api.extensions.ExtensionArray:
    """Record ids as Arrow-backed strings: about 15 bytes an id, where a Python string takes 60."""
    return pd.array(values, dtype="str")


@dataclass(frozen=True)
class Applied:
    """A batch applied to the state: what to commit, and the state afterwards."""

    fresh: pd.DataFrame  # the batch's rows that are new versions, with _digest and their stored time
    versions: pd.DataFrame  # their keys: record id, event time, _digest, _deleted
    online_changes: pd.DataFrame  # rows (with _live) that replace or remove a record's online row
    state: RecordState


@dataclass(frozen=True)
class RecordState:
    record_id: str
    event_time: str
    versions: pd.DataFrame  # record id, event time, _digest, _deleted: every version in the offline store
    # Indexed by record id: event time and _digest of its online row. Its values are in the offline store
    # (that version's row): keeping them here too would double what a batch writes and the state's memory.
    online: pd.DataFrame

    @classmethod
    def empty(cls, record_id: str, event_time: str) -> RecordState:
        versions = pd.DataFrame(
            {
                record_id: pd.Series(dtype="str"),
                event_time: pd.Series(dtype="float64"),
                DIGEST: pd.Series(dtype="int64"),
                DELETED: pd.Series(dtype=bool),
            }
        )
        online = pd.DataFrame(
            {event_time: pd.Series(dtype="float64"), DIGEST: pd.Series(dtype="int64")},
            index=pd.Index([], dtype="str", name=record_id),
        )
        return cls(record_id, event_time, versions, online)

    @classmethod
    def from_history(
        cls, history: pd.DataFrame, record_id: str, event_time: str, value_columns: list[str]
    ) -> RecordState:
        """The state an offline history (every row the offline store holds) implies."""
        deleted = history["is_deleted"].astype(bool).to_numpy()
        digests = np.where(deleted, 0, record_digests(history, value_columns))
        versions = pd.DataFrame(
            {
                record_id: ids(history[record_id].astype(str)),
                event_time: history[event_time].astype(float).to_numpy(),
                DIGEST: digests,
                DELETED: deleted,
            }
        ).drop_duplicates()
        latest = latest_versions(history.assign(**{DIGEST: digests}), record_id, event_time)
        online = latest.set_index(pd.Index(ids(latest[record_id].astype(str)), name=record_id))
        return cls(record_id, event_time, versions, online[[event_time, DIGEST]])

    @classmethod
    def from_files(
        cls, empty: RecordState, versions: list[pd.DataFrame], online: list[pd.DataFrame]
    ) -> RecordState:
        """The state its files hold: versions appended batch by batch; the last online snapshot, then each
        later batch's online changes, in commit order."""
        rid = empty.record_id
        all_versions = (
            pd.concat([empty.versions, *versions], ignore_index=True) if versions else empty.versions
        )
        if not online:
            return cls(rid, empty.event_time, all_versions, empty.online)
        rows = pd.concat(online, ignore_index=True).drop_duplicates(rid, keep="last")
        live = rows[rows[LIVE].astype(bool)] if LIVE in rows else rows
        index = pd.Index(ids(live[rid]), name=rid)
        return cls(rid, empty.event_time, all_versions, live.set_index(index)[empty.online.columns])

    # ---- a batch ------------------------------------------------------------------------------------

    def apply(
        self,
        frame: pd.DataFrame,
        value_columns: list[str],
        deleted: bool,
        keep_unchanged_times: bool,
        now: float,
        digests: np.ndarray | None = None,
        ids_distinct: bool = False,
    ) -> Applied:
        """A version the store holds (same id, event time, values, deletion) is not new; two equal rows of
        one batch are one version. With `keep_unchanged_times`, a record whose values equal its online
        row's keeps that row's event time. A live record whose latest stored version is a deletion no
        older than its newest row comes back as of `now` (a snapshot says it is live again). Online,
        each id's newest new version replaces a row no newer than it; a deletion removes such a row.
        `digests`: the rows' `record_digests`, when the caller has them already; `ids_distinct`: the
        caller checked that no id repeats."""
        rid, et = self.record_id, self.event_time
        batch_ids = ids(frame[rid])
        times = frame[et].to_numpy(dtype="float64").copy()
        if deleted:
            digests = np.zeros(len(frame), dtype="int64")
        elif digests is None:
            digests = record_digests(frame, value_columns)
        at = self._online_rows(batch_ids)
        online = at >= 0
        online_times = np.full(len(batch_ids), -np.inf)
        online_times[online] = self.online[et].to_numpy(dtype="float64")[at[online]]
        online_digests = np.zeros(len(batch_ids), dtype="int64")
        online_digests[online] = self.online[DIGEST].to_numpy(dtype="int64")[at[online]]
        if keep_unchanged_times:
            unchanged = online & (online_digests == digests)
            times[unchanged] = online_times[unchanged]
        if not deleted:
            self._revive(batch_ids, times, now)
        keys = pd.DataFrame({rid: batch_ids, et: times, DIGEST: digests, DELETED: deleted})
        # An online row is a live version the store holds: only the rest need a look at the versions.
        held = online & (online_times == times) & (online_digests == digests) & (not deleted)
        held[~held] = self._holds(keys[~held])
        new = ~held
        unique = ids_distinct or distinct(batch_ids)
        if not unique:
            new &= ~keys.duplicated([rid, et, DIGEST]).to_numpy()
        fresh = frame[new].assign(**{et: times[new], DIGEST: digests[new]})
        changes, replaced = self._online_changes(fresh, batch_ids[new], at[new], deleted, unique)
        kept = np.ones(len(self.online), dtype=bool)
        kept[replaced] = False
        live = changes[changes[LIVE].to_numpy(dtype=bool)]
        live = live.set_index(pd.Index(ids(live[rid]), name=rid))[self.online.columns]
        next_online = pd.concat([self.online[kept], live]) if kept.any() else live
        versions = pd.concat([self.versions, keys[new]], ignore_index=True) if new.any() else self.versions
        return Applied(fresh, keys[new], changes, RecordState(rid, et, versions, next_online))

    def _online_rows(self, batch_ids: pd.api.extensions.ExtensionArray) -> np.ndarray:
        """Each id's row in the online rows, -1 for none. A table ingested again as it was lines up with a
        run of them (they keep its order; each host's share is a batch): a scan for its first id and one
        comparison then, not a hash lookup of every id."""
        index = self.online.index
        if not len(index):
            return np.full(len(batch_ids), -1)
        online, batch = pa.array(index.array), pa.array(batch_ids)
        start = pc.index(online, value=batch[0]).as_py() if len(batch) else -1
        lined_up = 0 <= start <= len(online) - len(batch)
        if lined_up and pc.all(pc.equal(online.slice(start, len(batch)), batch)).as_py():
            return np.arange(start, start + len(batch))
        return index.get_indexer(batch_ids)

    def _revive(self, batch_ids: pd.api.extensions.ExtensionArray, times: np.ndarray, now: float) -> None:
        """In place: each id's newest batch row, if the id's latest version is a deletion at or after that
        row's time, moves to just after the deletion (or now)."""
        rid, et = self.record_id, self.event_time
        deletions = self.versions[self.versions[DELETED].to_numpy(dtype=bool)]
        if deletions.empty:
            return
        touched = self.versions[is_in(self.versions[rid], deletions[rid])]
        last = touched.groupby(rid, sort=False)[et].max()
        dead_last = deletions.merge(last.rename("last").reset_index(), on=rid)
        dead_last = dead_last[dead_last[et] == dead_last["last"]].drop_duplicates(rid)
        deleted_at = pd.Series(dead_last[et].to_numpy(), index=pd.Index(ids(dead_last[rid])))
        at = deleted_at.index.get_indexer(batch_ids)
        rows = np.flatnonzero(at >= 0)
        if not len(rows):
            return
        newest = pd.Series(times).groupby(np.asarray(batch_ids), sort=False).transform("max").to_numpy()
        t_deleted = deleted_at.to_numpy()[at[rows]]
        revive = (t_deleted >= times[rows]) & (times[rows] == newest[rows])
        times[rows[revive]] = np.maximum(now, t_deleted[revive] + _AFTER)

    def _holds(self, keys: pd.DataFrame) -> np.ndarray:
        """Which keys are versions the store holds (only the versions of those ids are looked at)."""
        if self.versions.empty or keys.empty:
            return np.zeros(len(keys), dtype=bool)
        candidates = self.versions[is_in(self.versions[self.record_id], keys[self.record_id])]
        if candidates.empty:
            return np.zeros(len(keys), dtype=bool)
        found = keys.merge(candidates, how="left", on=list(keys.columns), indicator=True)
        return (found["_merge"] == "both").to_numpy()

    def _online_changes(
        self,
        fresh: pd.DataFrame,
        fresh_ids: pd.api.extensions.ExtensionArray,
        at: np.ndarray,
        deleted: bool,
        unique: bool,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The online changes of the new versions (`fresh_ids`, and `at`: each one's online row, -1 for none;
        `unique`: no id repeats), and the online rows they replace or remove."""
        et = self.event_time
        if not unique:
            order = np.argsort(fresh[et].to_numpy(dtype="float64"), kind="stable")
            last = ~pd.Series(fresh_ids[order]).duplicated(keep="last").to_numpy()
            fresh, at = fresh.iloc[order[last]], at[order[last]]
        stored = np.full(len(fresh), -np.inf)
        stored[at >= 0] = self.online[et].to_numpy(dtype="float64")[at[at >= 0]]
        newer = fresh[et].to_numpy(dtype="float64") >= stored
        changed = newer & (at >= 0) if deleted else newer
        replaced = at[changed & (at >= 0)]
        changes = fresh.loc[changed, [self.record_id, et, DIGEST]].assign(**{LIVE: not deleted})
        return changes, replaced
