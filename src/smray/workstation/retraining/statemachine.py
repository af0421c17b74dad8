"""The retraining workflow in Amazon States Language (JSONPath):

PrepareData (the image's ingest then preprocess as SageMaker Processing jobs, or a Glue job) -> Train
(a training job with the image, `.sync`) -> ReadMetric (DescribeTrainingJob through the AWS SDK
integration; the metric is selected by name, since FinalMetricDataList's order is not guaranteed) ->
MetricWithinThreshold? -> CreateModel -> CreateEndpointConfig -> create the endpoint, or update it when
it exists (once it is not changing already), then poll it until it serves this execution's config; else
MetricMissed, a Fail state naming the metric, its value and the threshold.

Every task retries throttling and transient service errors with backoff and catches everything else into
WorkflowFailed, whose cause is the failed task's own error.

Execution input (the schedule's constant JSON): JobNamePrefix, DataUri, OutputUri, Threshold,
EndpointName, Image, RoleArn, ProcessingInstanceType, ProcessingInstanceCount, TrainingInstanceType,
TrainingInstanceCount, EndpointInstanceType.
"""

from __future__ import annotations

import json
import re
from typing import Any

from smray.contracts import ingest as ingest_contract
from smray.contracts import preprocess as preprocess_contract
from smray.contracts import train as train_contract
from smray.contracts.cluster import TOKEN_ENV
from smray.contracts.jobs import SCHEMA, in_container

METRIC = "validation:rmse"
METRIC_VALUES = f"$.metric.FinalMetricDataList[?(@.MetricName == '{METRIC}')].Value"
TRAINING_MAX_RUN_S = 14_400
ENDPOINT_POLL_S = 30
ENDPOINT_POLLS = 120  # 60 min of waits, then the endpoint "never settled"
# the statuses that end by themselves: an update must wait them out (UpdateEndpoint refuses them)
ENDPOINT_CHANGING = ("Creating", "Updating", "SystemUpdating", "RollingBack")
SUFFIXED_NAME = re.compile(r"States\.Format\('\{\}(-[^']*)', \$\.names\.base\)")
NEGATED_THRESHOLD = "States.StringToJson(States.Format('-{}', $.Threshold))"
SM = "arn:aws:states:::sagemaker"
SDK = "arn:aws:states:::aws-sdk:sagemaker"
# Throttling and SageMaker's 5xx errors only: SageMaker.AmazonSageMakerException names every SageMaker
# error, validation errors included. AWS SDK integrations name an error <Service>.<Code>Exception.
RETRY = [
    {
        "ErrorEquals": [
            "ThrottlingException",
            "SageMaker.ThrottlingException",
            "SageMaker.InternalFailureException",
            "SageMaker.ServiceUnavailableException",
        ],
        "IntervalSeconds": 5,
        "MaxAttempts": 6,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL",
    }
]
# The optimised integrations (arn:aws:states:::sagemaker:*) name every SageMaker error, throttling
# included, SageMaker.AmazonSageMakerException (AWS's own sample projects retry it for that): two quick
# retries take a burst of throttling, and a validation error costs seconds, not the minutes of RETRY.
OPTIMISED_RETRY = [
    {
        "ErrorEquals": ["SageMaker.AmazonSageMakerException"],
        "IntervalSeconds": 10,
        "MaxAttempts": 2,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL",
    }
]
CATCH = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "WorkflowFailed"}]
REQUIRED_INPUT = (
    "JobNamePrefix",
    "DataUri",
    "SchemaUri",
    "OutputUri",
    "Threshold",
    "EndpointName",
    "Image",
    "RoleArn",
    "ProcessingInstanceType",
    "ProcessingInstanceCount",
    "TrainingInstanceType",
    "TrainingInstanceCount",
    "EndpointInstanceType",
)


def _task(resource: str, parameters: dict[str, Any], next_state: str | None, **extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Task", "Resource": resource, "Parameters": parameters}
    state |= extra
    state["Retry"] = RETRY + (OPTIMISED_RETRY if resource.startswith(f"{SM}:") else [])
    state["Catch"] = CATCH
    if next_state:
        state["Next"] = next_state
    else:
        state["End"] = True
    return state


def _job_name(suffix: str) -> str:
    """A job's name: this execution's base name and `suffix` (read back by `longest_job_suffix`)."""
    return f"States.Format('{{}}-{suffix}', $.names.base)"


def longest_job_suffix() -> int:
    """How many characters the definition appends to the base name of a job (the Processing variant's
    names are the longest), for checking JobNamePrefix against SageMaker's 63."""
    return max((len(s) for s in SUFFIXED_NAME.findall(render())), default=0)


def _processing(mode: str, inputs: list[dict], outputs: list[dict], arguments: list[str]) -> dict[str, Any]:
    return {
        "ProcessingJobName.$": _job_name(mode),
        "RoleArn.$": "$.RoleArn",
        "AppSpecification": {
            "ImageUri.$": "$.Image",
            "ContainerEntrypoint": ["smray-entrypoint", mode],
            "ContainerArguments": arguments,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount.$": "$.ProcessingInstanceCount",
                "InstanceType.$": "$.ProcessingInstanceType",
                "VolumeSizeInGB": 30,
            }
        },
        "Environment": {f"{TOKEN_ENV}.$": "$.names.token"},
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": outputs},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def _s3_input(name: str, uri_path: str, local: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri.$": uri_path,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
        },
    }


def _s3_output(name: str, uri_path: str, local: str) -> dict[str, Any]:
    return {
        "OutputName": name,
        "S3Output": {"S3Uri.$": uri_path, "LocalPath": local, "S3UploadMode": "EndOfJob"},
    }


def _under(*parts: str) -> str:
    """An S3 URI under the execution's own prefix: <OutputUri>/<execution name>/<parts>."""
    return "States.Format('{}/{}/" + "/".join(parts) + "', $.OutputUri, $$.Execution.Name)"


def build(glue_job: str = "", spot_max_wait_s: int = 0) -> dict[str, Any]:
    """The definition; with `glue_job`, PrepareData runs that Glue job (arguments --data_uri and
    --output_uri, which must write train/ validation/ test/ and transform/ there) instead. With
    `spot_max_wait_s`, Train is a managed spot job that waits up to that long for capacity."""
    states: dict[str, Any] = {
        "Names": {
            "Type": "Pass",
            "Comment": "one base name for every job of this execution, and the Ray token its hosts share",
            "Parameters": {
                "base.$": "States.Format('{}-{}', $.JobNamePrefix, $$.Execution.Name)",
                "token.$": "States.UUID()",
            },
            "ResultPath": "$.names",
            "Next": "PrepareData" if glue_job else "Ingest",
        },
        **(_glue_states(glue_job) if glue_job else _processing_states()),
        "Train": _train_state(spot_max_wait_s),
        **_metric_states(),
        **_deploy_states(),
        "WorkflowFailed": {"Type": "Fail", "Error": "RetrainingFailed", "CausePath": "$.error.Cause"},
    }
    return {
        "Comment": "smray scheduled retraining: prepare -> train -> gate on the validation metric -> deploy",
        "QueryLanguage": "JSONPath",
        "StartAt": "Names",
        "States": states,
    }


def _glue_states(glue_job: str) -> dict[str, Any]:
    return {
        "PrepareData": _task(
            "arn:aws:states:::glue:startJobRun.sync",
            {
                "JobName": glue_job,
                "Arguments": {"--data_uri.$": "$.DataUri", "--output_uri.$": _under("prepared")},
            },
            "Train",
            ResultPath=None,
        )
    }


def _processing_states() -> dict[str, Any]:
    """Ingest then Preprocess, the image's modes as Processing jobs; the store passes between them in S3."""
    store = _under("store")
    # SchemaUri: an S3 folder holding schema.json, the table's declaration (smray.schema)
    schema_in = _s3_input("schema", "$.SchemaUri", in_container(SCHEMA))
    ingest = _processing(
        "ingest",
        [_s3_input("raw", "$.DataUri", in_container(ingest_contract.RAW)), schema_in],
        [
            _s3_output("store", store, in_container(ingest_contract.STORE)),
            _s3_output("report", _under("ingest"), in_container(ingest_contract.REPORT)),
        ],
        ingest_contract.argv(),
    )
    prepared = [(name, preprocess_contract.split(name)) for name in preprocess_contract.SPLITS]
    preprocess = _processing(
        "preprocess",
        [_s3_input("store", store, in_container(preprocess_contract.STORE)), schema_in],
        [
            _s3_output(name, _under("prepared", name), in_container(folder))
            for name, folder in [*prepared, ("transform", preprocess_contract.TRANSFORM)]
        ],
        preprocess_contract.argv(),
    )
    return {
        "Ingest": _task(f"{SM}:createProcessingJob.sync", ingest, "Preprocess", ResultPath=None),
        "Preprocess": _task(f"{SM}:createProcessingJob.sync", preprocess, "Train", ResultPath=None),
    }


def _train_state(spot_max_wait_s: int) -> dict[str, Any]:
    channels = [
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri.$": _under("prepared", name),
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
        for name in train_contract.CHANNELS
    ]
    return _task(
        f"{SM}:createTrainingJob.sync",
        {
            "TrainingJobName.$": "$.names.base",
            "RoleArn.$": "$.RoleArn",
            "AlgorithmSpecification": {
                "TrainingImage.$": "$.Image",
                "TrainingInputMode": "File",
                "MetricDefinitions": train_contract.metric_definitions(),
            },
            "HyperParameters": {"tune": "true"},
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath.$": _under("model")},
            "ResourceConfig": {
                "InstanceCount.$": "$.TrainingInstanceCount",
                "InstanceType.$": "$.TrainingInstanceType",
                "VolumeSizeInGB": 30,
            },
            "Environment": {f"{TOKEN_ENV}.$": "$.names.token"},
            "CheckpointConfig": {"S3Uri.$": _under(train_contract.CHECKPOINTS)},  # a restarted job resumes
            **_stopping(spot_max_wait_s),
        },
        "ReadMetric",
        ResultSelector={"ModelDataUrl.$": "$.ModelArtifacts.S3ModelArtifacts"},
        ResultPath="$.training",
    )


def _metric_states() -> dict[str, Any]:
    """Read the training job's metric by name; fail with a cause when it is missing or above the threshold."""
    return {
        "ReadMetric": _task(
            f"{SDK}:describeTrainingJob",
            {"TrainingJobName.$": "$.names.base"},
            "MetricListed",
            ResultPath="$.metric",
        ),
        "MetricListed": {
            "Type": "Choice",
            "Comment": "a job that logged no metric has no FinalMetricDataList: a path into it would fail "
            "with States.Runtime, which no Catch handles",
            "Choices": [
                {"Variable": "$.metric.FinalMetricDataList", "IsPresent": True, "Next": "SelectMetric"}
            ],
            "Default": "NoMetric",
        },
        "SelectMetric": {
            "Type": "Pass",
            "Parameters": {"values.$": METRIC_VALUES},
            "ResultPath": "$.metric",
            "Next": "MetricReported",
        },
        "MetricReported": {
            "Type": "Choice",
            "Comment": f"a job that printed no {METRIC} line has none: that fails the workflow, with a cause",
            "Choices": [{"Variable": "$.metric.values[0]", "IsPresent": True, "Next": "PickMetric"}],
            "Default": "NoMetric",
        },
        "NoMetric": {
            "Type": "Pass",
            "Parameters": {
                "Error": "MetricMissing",
                "Cause.$": f"States.Format('training job {{}} reported no {METRIC}: the endpoint was not "
                "changed', $.names.base)",
            },
            "ResultPath": "$.error",
            "Next": "WorkflowFailed",
        },
        "PickMetric": {
            "Type": "Pass",
            "Comment": f"the filter yields a list: its one element is {METRIC}",
            "Parameters": {"name": METRIC, "value.$": "States.ArrayGetItem($.metric.values, 0)"},
            "ResultPath": "$.metric",
            "Next": "MetricWithinThreshold",
        },
        "MetricWithinThreshold": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.metric.value",
                    "NumericLessThanEqualsPath": "$.Threshold",
                    "Next": "CreateModel",
                }
            ],
            "Default": "MeasureMiss",
        },
        "MeasureMiss": {
            "Type": "Pass",
            "Comment": "value - threshold: JSONPath has no subtraction, so add the negated threshold "
            "(MathAdd rounds to a whole number)",
            "Parameters": {
                "name.$": "$.metric.name",
                "value.$": "$.metric.value",
                "excess.$": f"States.MathAdd($.metric.value, {NEGATED_THRESHOLD})",
            },
            "ResultPath": "$.metric",
            "Next": "MetricMissed",
        },
        "MetricMissed": {
            "Type": "Fail",
            "Error": "MetricAboveThreshold",
            "CausePath": "States.Format('{} {} is above the threshold {} by {}: the endpoint was not "
            "changed', $.metric.name, $.metric.value, $.Threshold, $.metric.excess)",
        },
    }


def _deploy_states() -> dict[str, Any]:
    """Model, endpoint config, then create the endpoint or update it when it exists, and wait until it
    serves: neither call waits for the endpoint, and an update is refused while it is changing."""
    endpoint = {"EndpointName.$": "$.EndpointName", "EndpointConfigName.$": "$.names.base"}
    variant = {
        "VariantName": "AllTraffic",
        "ModelName.$": "$.names.base",
        "InstanceType.$": "$.EndpointInstanceType",
        "InitialInstanceCount": 1,
    }
    return {
        "CreateModel": _task(
            f"{SM}:createModel",
            {
                "ModelName.$": "$.names.base",
                "ExecutionRoleArn.$": "$.RoleArn",
                "PrimaryContainer": {"Image.$": "$.Image", "ModelDataUrl.$": "$.training.ModelDataUrl"},
            },
            "CreateEndpointConfig",
            ResultPath=None,
        ),
        "CreateEndpointConfig": _task(
            f"{SM}:createEndpointConfig",
            {"EndpointConfigName.$": "$.names.base", "ProductionVariants": [variant]},
            "FindEndpoint",
            ResultPath=None,
        ),
        "FindEndpoint": _task(
            f"{SDK}:listEndpoints",
            {"NameContains.$": "$.EndpointName", "MaxResults": 100},
            "EndpointExists",
            ResultSelector={"names.$": "$.Endpoints[*].EndpointName"},
            ResultPath="$.existing",
        ),
        "EndpointExists": {
            "Type": "Pass",
            "Comment": "NameContains matches parts of names: look for the exact one",
            "Parameters": {"exists.$": "States.ArrayContains($.existing.names, $.EndpointName)"},
            "ResultPath": "$.existing",
            "Next": "CreateOrUpdate",
        },
        "CreateOrUpdate": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.existing.exists", "BooleanEquals": True, "Next": "AwaitIdle"}],
            "Default": "CreateEndpoint",
        },
        **_poll_endpoint("Idle", [{"Not": _status_in(ENDPOINT_CHANGING), "Next": "UpdateEndpoint"}]),
        "CreateEndpoint": _task(f"{SM}:createEndpoint", endpoint, "AwaitInService", ResultPath=None),
        "UpdateEndpoint": _task(f"{SM}:updateEndpoint", dict(endpoint), "AwaitInService", ResultPath=None),
        **_poll_endpoint("InService", _serving_choices()),
        "Deployed": {"Type": "Succeed"},
        **_endpoint_failures(),
    }


def _status_in(statuses: tuple[str, ...]) -> dict[str, Any]:
    return {"Or": [{"Variable": "$.endpoint.EndpointStatus", "StringEquals": s} for s in statuses]}


def _poll_endpoint(until: str, exits: list[dict[str, Any]]) -> dict[str, Any]:
    """Await<until> -> Poll<until> (DescribeEndpoint) -> Is<until> (`exits`, else after ENDPOINT_POLLS
    waits EndpointNotSettled) -> Wait<until> -> Count<until> -> Poll<until>; the count is in $.poll."""
    bound = {
        "Variable": "$.poll.count",
        "NumericGreaterThanEquals": ENDPOINT_POLLS,
        "Next": "EndpointNotSettled",
    }
    return {
        f"Await{until}": {
            "Type": "Pass",
            "Result": {"count": 0},
            "ResultPath": "$.poll",
            "Next": f"Poll{until}",
        },
        f"Poll{until}": _task(
            f"{SDK}:describeEndpoint",
            {"EndpointName.$": "$.EndpointName"},
            f"Is{until}",
            ResultPath="$.endpoint",
        ),
        f"Is{until}": {"Type": "Choice", "Choices": [*exits, bound], "Default": f"Wait{until}"},
        f"Wait{until}": {"Type": "Wait", "Seconds": ENDPOINT_POLL_S, "Next": f"Count{until}"},
        f"Count{until}": {
            "Type": "Pass",
            "Parameters": {"count.$": "States.MathAdd($.poll.count, 1)"},
            "ResultPath": "$.poll",
            "Next": f"Poll{until}",
        },
    }


def _serving_choices() -> list[dict[str, Any]]:
    """Serving means InService with this execution's config: a failed update is rolled back to InService
    with the old one. Any other status that no longer changes is a failure, with SageMaker's reason when
    it gives one (FailureReason is absent otherwise, and a path to it would fail)."""
    settled = {"Not": _status_in(ENDPOINT_CHANGING)}
    ours = {"Variable": "$.endpoint.EndpointConfigName", "StringEqualsPath": "$.names.base"}
    in_service = {"Variable": "$.endpoint.EndpointStatus", "StringEquals": "InService"}
    reason = {"Variable": "$.endpoint.FailureReason", "IsPresent": True}
    return [
        {"And": [in_service, ours], "Next": "Deployed"},
        {"And": [settled, reason], "Next": "EndpointFailed"},
        {**settled, "Next": "EndpointNotServing"},
    ]


def _endpoint_failures() -> dict[str, Any]:
    not_ours = "endpoint {} is {} with config {}, not {}"
    facts = "$.EndpointName, $.endpoint.EndpointStatus, $.endpoint.EndpointConfigName, $.names.base"
    return {
        "EndpointFailed": {
            "Type": "Fail",
            "Error": "EndpointNotServing",
            "CausePath": f"States.Format('{not_ours}: {{}}', {facts}, $.endpoint.FailureReason)",
        },
        "EndpointNotServing": {
            "Type": "Fail",
            "Error": "EndpointNotServing",
            "CausePath": f"States.Format('{not_ours}', {facts})",
        },
        "EndpointNotSettled": {
            "Type": "Fail",
            "Error": "EndpointNotSettled",
            "CausePath": "States.Format('endpoint {} is still {} after {} waits of "
            f"{ENDPOINT_POLL_S} s', $.EndpointName, $.endpoint.EndpointStatus, $.poll.count)",
        },
    }


def _stopping(spot_max_wait_s: int) -> dict[str, Any]:
    limits: dict[str, Any] = {"MaxRuntimeInSeconds": TRAINING_MAX_RUN_S}
    if not train_contract.check_max_wait(spot_max_wait_s, TRAINING_MAX_RUN_S):
        return {"StoppingCondition": limits}
    limits["MaxWaitTimeInSeconds"] = spot_max_wait_s
    return {"EnableManagedSpotTraining": True, "StoppingCondition": limits}


def render(glue_job: str = "", spot_max_wait_s: int = 0) -> str:
    return json.dumps(build(glue_job, spot_max_wait_s), indent=2) + "\n"
