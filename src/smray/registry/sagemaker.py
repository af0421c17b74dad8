"""SageMaker Model Registry behind the same calls as the local registry (list, describe, approve,
reject). Registration on AWS happens inside the pipeline (its ModelStep), not here: a version's model
quality statistics are its evaluation.json in S3, and its customer metadata `gate_metric` the metric of
the gate it passed."""

from __future__ import annotations

import json
from typing import Any

from smray.errors import UserError
from smray.registry.records import GATE_METRIC, Approval, ModelVersion, Registry


class SageMakerRegistry(Registry):
    where = "SageMaker Model Registry"

    def __init__(self, client: Any, s3: Any = None) -> None:
        """`client`: a boto3 "sagemaker" client; `s3`, a boto3 "s3" client, to read each version's
        evaluation.json into its metrics (without one, a version's metrics name only where it is)."""
        self.client = client
        self.s3 = s3

    def groups(self) -> list[str]:
        pages = self.client.get_paginator("list_model_package_groups").paginate()
        return sorted(g["ModelPackageGroupName"] for p in pages for g in p["ModelPackageGroupSummaryList"])

    def versions(self, group: str, status: Approval | None = None) -> list[ModelVersion]:
        """Newest first."""
        query: dict[str, Any] = {"ModelPackageGroupName": group, "ModelPackageType": "Versioned"}
        if status:
            query["ModelApprovalStatus"] = status.value
        pages = self.client.get_paginator("list_model_packages").paginate(**query)
        arns = [s["ModelPackageArn"] for page in pages for s in page["ModelPackageSummaryList"]]
        found = [self._describe_arn(arn) for arn in arns]
        return sorted(found, key=lambda v: v.version, reverse=True)

    def set_status(self, group: str, version: int, status: Approval, description: str = "") -> ModelVersion:
        arn = self._arn(group, version)
        update: dict[str, Any] = {"ModelPackageArn": arn, "ModelApprovalStatus": status.value}
        if description:
            update["ApprovalDescription"] = description
        self.client.update_model_package(**update)
        return self._describe_arn(arn)

    def _arn(self, group: str, version: int) -> str:
        for page in self.client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
            for summary in page["ModelPackageSummaryList"]:
                if summary.get("ModelPackageVersion") == version:
                    return summary["ModelPackageArn"]
        raise UserError(f"no model version {group}/{version} in SageMaker Model Registry")

    def _describe_arn(self, arn: str) -> ModelVersion:
        d = self.client.describe_model_package(ModelPackageName=arn)
        container = (d.get("InferenceSpecification", {}).get("Containers") or [{}])[0]
        stats = d.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
        return ModelVersion(
            group=d["ModelPackageGroupName"],
            version=int(d["ModelPackageVersion"]),
            status=Approval(d["ModelApprovalStatus"]),
            created=d["CreationTime"].isoformat(),  # boto3 parses it into a datetime
            artifact=container.get("ModelDataUrl", ""),
            image=container.get("Image", ""),
            metrics=self._metrics(stats.get("S3Uri", ""), d.get("CustomerMetadataProperties", {})),
            execution=d.get("MetadataProperties", {}).get("GeneratedBy", ""),
            description=d.get("ApprovalDescription", d.get("ModelPackageDescription", "")),
        )

    def _metrics(self, statistics_uri: str, metadata: dict[str, str]) -> dict[str, Any]:
        """Where the statistics are, the gate passed, and (with an S3 client) the evaluation itself."""
        metrics: dict[str, Any] = {"statistics_uri": statistics_uri} if statistics_uri else {}
        if GATE_METRIC in metadata:
            metrics[GATE_METRIC] = metadata[GATE_METRIC]
        if self.s3 is None or not statistics_uri.startswith("s3://"):
            return metrics
        bucket, _, key = statistics_uri.removeprefix("s3://").partition("/")
        try:
            evaluation = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (self.s3.exceptions.ClientError, ValueError):
            # gone or unreadable: the version is still listed (and approved, rejected), without its
            # values; statistics_uri says where they were
            return metrics
        return (evaluation if isinstance(evaluation, dict) else {}) | metrics
