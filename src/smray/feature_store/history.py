"""Where preprocess reads a feature group's offline history from, the same way on both backends: the
group's definition, the schema it was ingested with, and the Parquet files of every version (deletions
included). The local store answers from its catalog; on AWS the job downloads the group's offline store
(its ResolvedOutputS3Uri: S3 has no catalog, so every Parquet file under it is the history, and the
schema comes with the job, since SageMaker keeps no target)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from smray.feature_store.definition import FeatureGroupDefinition
from smray.schema import Schema


class OfflineHistory(Protocol):
    def describe(self, name: str) -> FeatureGroupDefinition | None: ...

    def schema(self, group: str) -> Schema | None: ...

    def committed_files(self, group: FeatureGroupDefinition) -> list[Path]: ...


@dataclass(frozen=True)
class DownloadedOfflineStore:
    """A SageMaker offline store downloaded into `folder`, of a group ingested with `given`."""

    folder: Path
    given: Schema

    def describe(self, name: str) -> FeatureGroupDefinition | None:
        return FeatureGroupDefinition.from_schema(name, self.given)

    def schema(self, group: str) -> Schema | None:
        return self.given

    def committed_files(self, group: FeatureGroupDefinition) -> list[Path]:
        return sorted(self.folder.rglob("*.parquet"))
