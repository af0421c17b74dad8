"""A feature group's definition in SageMaker's own terms (DescribeFeatureGroup's shape), built from a
schema, so the local store and SageMaker's are created and checked the same way."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from smray.errors import UserError
from smray.schema import FeatureType, Schema

SAGEMAKER_TYPES = {
    FeatureType.INTEGRAL: "Integral",
    FeatureType.FRACTIONAL: "Fractional",
    FeatureType.STRING: "String",
}


@dataclass(frozen=True)
class FeatureGroupDefinition:
    name: str
    record_id: str
    event_time: str
    # value column -> SageMaker type, in schema order (target first); the id is String, the time Fractional.
    # Numeric-only schemas give the definition an earlier smray made: their groups still match.
    values: tuple[tuple[str, str], ...]
    offline_uri: str = ""
    created: str = field(default="", compare=False)

    @classmethod
    def from_schema(cls, name: str, schema: Schema) -> FeatureGroupDefinition:
        features = tuple((f.name, SAGEMAKER_TYPES[f.type]) for f in schema.features)
        # A regression target is a number; a classification's labels are text, whatever they look like.
        target = "String" if schema.task.classification else "Fractional"
        values = ((schema.target, target), *features)
        return cls(name=name, record_id=schema.record_id, event_time=schema.event_time, values=values)

    def value_types(self) -> dict[str, str]:
        return dict(self.values)

    def feature_definitions(self) -> list[dict[str, str]]:
        return [
            {"FeatureName": self.record_id, "FeatureType": "String"},
            {"FeatureName": self.event_time, "FeatureType": "Fractional"},
            *({"FeatureName": n, "FeatureType": t} for n, t in self.values),
        ]

    def created_now(self, offline_uri: str) -> FeatureGroupDefinition:
        return replace(self, offline_uri=offline_uri, created=datetime.now(UTC).isoformat())

    def check_matches(self, wanted: FeatureGroupDefinition) -> None:
        """The existing group (self) must have exactly the wanted columns and types."""
        mine = {d["FeatureName"]: d["FeatureType"] for d in self.feature_definitions()}
        theirs = {d["FeatureName"]: d["FeatureType"] for d in wanted.feature_definitions()}
        problems = []
        if (self.record_id, self.event_time) != (wanted.record_id, wanted.event_time):
            problems.append(
                f"record id/event time are {self.record_id}/{self.event_time}, "
                f"the data has {wanted.record_id}/{wanted.event_time}"
            )
        for col in sorted(set(mine) | set(theirs)):
            if col not in theirs:
                problems.append(f"{col} is in the group but not in the data")
            elif col not in mine:
                problems.append(f"{col} is in the data but not in the group")
            elif mine[col] != theirs[col]:
                problems.append(f"{col} is {mine[col]} in the group but {theirs[col]} in the data")
        if problems:
            raise UserError(f"feature group {self.name} does not match the data: {'; '.join(problems)}")

    def to_description(self) -> dict[str, Any]:
        return {
            "FeatureGroupName": self.name,
            "RecordIdentifierFeatureName": self.record_id,
            "EventTimeFeatureName": self.event_time,
            "FeatureDefinitions": self.feature_definitions(),
            "CreationTime": self.created,
            "OfflineStoreConfig": {"S3StorageConfig": {"ResolvedOutputS3Uri": self.offline_uri}},
        }

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> FeatureGroupDefinition:
        rid, etime = d["RecordIdentifierFeatureName"], d["EventTimeFeatureName"]
        values = tuple(
            (f["FeatureName"], f["FeatureType"])
            for f in d["FeatureDefinitions"]
            if f["FeatureName"] not in (rid, etime)
        )
        uri = d.get("OfflineStoreConfig", {}).get("S3StorageConfig", {}).get("ResolvedOutputS3Uri", "")
        return cls(
            name=d["FeatureGroupName"],
            record_id=rid,
            event_time=etime,
            values=values,
            offline_uri=uri,
            created=str(d.get("CreationTime", "")),
        )
