"""SageMaker Model Registry behind the same calls as the local registry (list, describe, approve,
reject). Registration on AWS happens inside the pipeline (its ModelStep), not here."""

from __future__ import annotations

from typing import Any

from smray.errors import UserError
from smray.registry.records import Approval, ModelVersion, Registry


class SageMakerRegistry(Registry):
    where = "SageMaker Model Registry"

    def __init__(self, client: Any) -> None:  # a boto3 "sagemaker" client
        self.client = client

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
            metrics={"statistics_uri": stats["S3Uri"]} if stats.get("S3Uri") else {},
            execution=d.get("MetadataProperties", {}).get("GeneratedBy", ""),
            description=d.get("ApprovalDescription", d.get("ModelPackageDescription", "")),
        )
