"""The retraining workflow in Amazon States Language (JSONPath), the pipeline's steps on Step Functions:

Defaults (the execution input, with the deployed gate's threshold and model package group where it has
none) -> Names -> PrepareData (the image's ingest then preprocess as SageMaker Processing jobs, or a Glue
job) -> Train (a training job with the image, `.sync`) -> Evaluate (the image's evaluate mode on the test
split, a Processing job, `.sync`) -> ReadEvaluation (evaluation.json through the AWS SDK integration
s3:getObject, parsed with States.StringToJson) -> MetricReported? (the gate's metric is in it, a number:
else MetricMissing, a Fail state naming the file and the metric) -> MetricWithinThreshold? (the gate's
direction: `>=` for accuracy, `<=` for rmse; else MetricMissed, a Fail state naming the metric, its value
and the threshold) -> Register (a model package, Approved, with evaluation.json as its model quality
statistics, in SageMaker Model Registry) -> CreateModel -> CreateEndpointConfig -> create the endpoint,
or update it when it exists (once it is not changing already), then poll it until it serves this
execution's config.

The gate's metric and direction are the definition's (`build(rule=...)`, from `smray retraining deploy
--gate`); its number is the execution input's Threshold, by default the gate's own.

Every task retries throttling and transient service errors with backoff and catches everything else into
WorkflowFailed, whose cause is the failed task's own error.

Execution input (the schedule's constant JSON): JobNamePrefix, DataUri, SchemaUri, OutputBucket,
OutputPrefix, EndpointName, Image, RoleArn, ProcessingInstanceType, TrainingInstanceType,
EndpointInstanceType; optional the workflow's shared parameters (ProcessingInstanceCount,
TrainingInstanceCount, Threshold, NumRound, TuningTrials: smray.workflow's names and defaults) and
ModelPackageGroupName. Step Functions' intrinsics cannot split an s3:// URI, so the output location comes
as a bucket and a prefix, and every URI and key is built from them. An execution's files (`LAYOUT`), under
s3://<OutputBucket>/<OutputPrefix>/<execution name>/:

    store/                          ingest's feature store
    ingest/                         ingest's report
    prepared/{train,validation,test,transform}/   preprocess's splits and preprocessing.json (or Glue's)
    model/<training job>/output/model.tar.gz      the training job's model
    checkpoints/                    the training job's checkpoints (a restarted job resumes from them)
    evaluation/evaluation.json      evaluate's metrics on the test split (the gate's and the registry's),
                                    beside its report
"""

from __future__ import annotations

import json
import re
from typing import Any

from smray import gate, workflow
from smray import schema as schema_mod
from smray.contracts import evaluate as evaluate_contract
from smray.contracts import ingest as ingest_contract
from smray.contracts import payload
from smray.contracts import preprocess as preprocess_contract
from smray.contracts import train as train_contract
from smray.contracts.cluster import TOKEN_ENV
from smray.contracts.jobs import SCHEMA, in_container
from smray.gate import GateRule
from smray.schema import Task

PROCESSING_MAX_RUN_S = 3600  # each Processing job's MaxRuntimeInSeconds
ENDPOINT_POLL_S = 30
ENDPOINT_POLLS = 120  # 60 min of waits, then the endpoint "never settled"
# the statuses that end by themselves: an update must wait them out (UpdateEndpoint refuses them)
ENDPOINT_CHANGING = ("Creating", "Updating", "SystemUpdating", "RollingBack")
SUFFIXED_NAME = re.compile(r"States\.Format\('\{\}(-[^']*)', \$\.names\.base\)")
SM = "arn:aws:states:::sagemaker"
SDK = "arn:aws:states:::aws-sdk:sagemaker"
S3 = "arn:aws:states:::aws-sdk:s3"
# The execution's folders, under s3://<OutputBucket>/<OutputPrefix>/<execution name>/
LAYOUT = {
    "store": "store",
    "ingest": "ingest",
    "prepared": "prepared",
    "model": "model",
    "checkpoints": train_contract.CHECKPOINTS,
    "evaluation": "evaluation",
}
TEST_SPLIT = "test"  # the split Evaluate scores, one of preprocess_contract.SPLITS
EVALUATION_KEY = f"{LAYOUT['evaluation']}/{evaluate_contract.EVALUATION_FILE}"
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
    "OutputBucket",
    "OutputPrefix",
    "EndpointName",
    "Image",
    "RoleArn",
    "ProcessingInstanceType",
    "TrainingInstanceType",
    "EndpointInstanceType",
)
# The workflow's shared parameters (smray.workflow), each by its one name with its one default
WORKFLOW_INPUT = tuple(p.name for p in workflow.PARAMETERS)
DEFAULTED_INPUT = (*WORKFLOW_INPUT, "ModelPackageGroupName")  # the Defaults state fills them in
INPUT = REQUIRED_INPUT + DEFAULTED_INPUT  # every key the definition reads


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


def _processing(
    mode: str, inputs: list[dict], outputs: list[dict], arguments: list[str], hosts: str | int
) -> dict[str, Any]:
    """A Processing job running the image's `mode`; `hosts`: a path into the input, or a number."""
    count = {"InstanceCount.$": hosts} if isinstance(hosts, str) else {"InstanceCount": hosts}
    return {
        "ProcessingJobName.$": _job_name(mode),
        "RoleArn.$": "$.RoleArn",
        "AppSpecification": {
            "ImageUri.$": "$.Image",
            "ContainerEntrypoint": ["smray-entrypoint", mode],
            # SageMaker refuses an empty list: a mode without arguments has none
            **({"ContainerArguments": arguments} if arguments else {}),
        },
        "ProcessingResources": {
            "ClusterConfig": {
                **count,
                "InstanceType.$": "$.ProcessingInstanceType",
                "VolumeSizeInGB": 30,
            }
        },
        "Environment": {f"{TOKEN_ENV}.$": "$.names.token"},
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": outputs},
        "StoppingCondition": {"MaxRuntimeInSeconds": PROCESSING_MAX_RUN_S},
    }


def _s3_input(name: str, uri_path: str, local: str, sharded: bool = False) -> dict[str, Any]:
    """`sharded`: each host gets its own objects (ShardedByS3Key: ingest reads a share only)."""
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri.$": uri_path,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "ShardedByS3Key" if sharded else "FullyReplicated",
        },
    }


def _s3_output(name: str, uri_path: str, local: str) -> dict[str, Any]:
    return {
        "OutputName": name,
        "S3Output": {"S3Uri.$": uri_path, "LocalPath": local, "S3UploadMode": "EndOfJob"},
    }


def _key(*parts: str) -> str:
    """An S3 key under the execution's own prefix: <OutputPrefix>/<execution name>/<parts>."""
    return "States.Format('{}/" + "/".join(parts) + "', $.names.key)"


def _under(*parts: str) -> str:
    """An S3 URI under the execution's own prefix: s3://<OutputBucket>/<OutputPrefix>/<execution>/<parts>."""
    return "States.Format('s3://{}/{}/" + "/".join(parts) + "', $.OutputBucket, $.names.key)"


def build(
    glue_job: str = "", spot_max_wait_s: int = 0, rule: GateRule | None = None, group: str = ""
) -> dict[str, Any]:
    """The definition; with `glue_job`, PrepareData runs that Glue job (arguments --data_uri and
    --output_uri, which must write train/ validation/ test/ and transform/ there) instead. With
    `spot_max_wait_s`, Train is a managed spot job that waits up to that long for capacity. `rule`: the
    gate (default: the regression default, `rmse <= 15000`), its threshold the default Threshold;
    `group`: the default ModelPackageGroupName (default: the built-in housing table's name)."""
    rule = rule or gate.default(Task.REGRESSION)
    states: dict[str, Any] = {
        **_input_states(rule, group or schema_mod.housing().name, glue_job),
        **(_glue_states(glue_job) if glue_job else _processing_states()),
        "Train": _train_state(spot_max_wait_s, rule.task),
        "Evaluate": _evaluate_state(),
        **_gate_states(rule),
        "Register": _register_state(),
        **_deploy_states(),
        "WorkflowFailed": {"Type": "Fail", "Error": "RetrainingFailed", "CausePath": "$.error.Cause"},
    }
    return {
        "Comment": "smray scheduled retraining: prepare -> train -> evaluate on the test split -> gate "
        f"({rule.metric} {rule.operator} Threshold) -> register -> deploy",
        "QueryLanguage": "JSONPath",
        "StartAt": "Defaults",
        "TimeoutSeconds": run_limit_s(spot_max_wait_s),
        "States": states,
    }


def run_limit_s(spot_max_wait_s: int = 0) -> int:
    """An execution's limit: its steps' own limits added up (three Processing jobs or the Glue job, the
    training job's run or its spot wait, two hours of endpoint polls), so no step is cut short and no
    execution outlives them."""
    training = max(train_contract.MAX_RUN_S, spot_max_wait_s)
    return 3 * PROCESSING_MAX_RUN_S + training + 2 * ENDPOINT_POLLS * ENDPOINT_POLL_S


def input_defaults(rule: GateRule, group: str) -> dict[str, Any]:
    """The values of DEFAULTED_INPUT where an execution's input has none: the workflow's defaults, the
    gate's own threshold, and the model package group (the table's name)."""
    shared = {name: workflow.default(name) for name in WORKFLOW_INPUT}
    return {**shared, "Threshold": rule.threshold, "ModelPackageGroupName": group}


def _input_states(rule: GateRule, group: str, glue_job: str) -> dict[str, Any]:
    return {
        "Defaults": {
            "Type": "Pass",
            "Comment": f"the deployed defaults of the inputs that may be left out: the gate {rule}",
            "Result": input_defaults(rule, group),
            "ResultPath": "$.defaults",
            "Next": "WithDefaults",
        },
        "WithDefaults": {
            "Type": "Pass",
            "Comment": "the execution input over the defaults: what it gives wins",
            "Parameters": {"input.$": "States.JsonMerge($.defaults, $$.Execution.Input, false)"},
            "OutputPath": "$.input",
            "Next": "Names",
        },
        "Names": {
            "Type": "Pass",
            "Comment": "one base name for every job of this execution, its S3 prefix, and the Ray token "
            "its hosts share",
            "Parameters": {
                "base.$": "States.Format('{}-{}', $.JobNamePrefix, $$.Execution.Name)",
                "key.$": "States.Format('{}/{}', $.OutputPrefix, $$.Execution.Name)",
                "token.$": "States.UUID()",
            },
            "ResultPath": "$.names",
            "Next": "PrepareData" if glue_job else "Ingest",
        },
    }


def _glue_states(glue_job: str) -> dict[str, Any]:
    return {
        "PrepareData": _task(
            "arn:aws:states:::glue:startJobRun.sync",
            {
                "JobName": glue_job,
                "Arguments": {"--data_uri.$": "$.DataUri", "--output_uri.$": _under(LAYOUT["prepared"])},
                "Timeout": 2 * PROCESSING_MAX_RUN_S // 60,  # minutes: as long as Ingest and Preprocess
            },
            "Train",
            ResultPath=None,
        )
    }


def _processing_states() -> dict[str, Any]:
    """Ingest then Preprocess, the image's modes as Processing jobs; the store passes between them in S3."""
    store = _under(LAYOUT["store"])
    # SchemaUri: an S3 folder holding schema.json, the table's declaration (smray.schema)
    schema_in = _s3_input("schema", "$.SchemaUri", in_container(SCHEMA))
    ingest = _processing(
        "ingest",
        [_s3_input("raw", "$.DataUri", in_container(ingest_contract.RAW), sharded=True), schema_in],
        [
            _s3_output("store", store, in_container(ingest_contract.STORE)),
            _s3_output("report", _under(LAYOUT["ingest"]), in_container(ingest_contract.REPORT)),
        ],
        ingest_contract.argv(),
        "$.ProcessingInstanceCount",
    )
    prepared = [(name, preprocess_contract.split(name)) for name in preprocess_contract.SPLITS]
    preprocess = _processing(
        "preprocess",
        [_s3_input("store", store, in_container(preprocess_contract.STORE)), schema_in],
        [
            _s3_output(name, _under(LAYOUT["prepared"], name), in_container(folder))
            for name, folder in [*prepared, ("transform", preprocess_contract.TRANSFORM)]
        ],
        preprocess_contract.argv(),
        "$.ProcessingInstanceCount",
    )
    return {
        "Ingest": _task(f"{SM}:createProcessingJob.sync", ingest, "Preprocess", ResultPath=None),
        "Preprocess": _task(f"{SM}:createProcessingJob.sync", preprocess, "Train", ResultPath=None),
    }


def _train_state(spot_max_wait_s: int, task: Task) -> dict[str, Any]:
    """The training job: the image reads the task (objective, eval metrics) from preprocessing.json; the
    metric definitions only chart the task's metrics in CloudWatch."""
    channels = [
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri.$": _under(LAYOUT["prepared"], name),
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
                "MetricDefinitions": train_contract.metric_definitions(task),
            },
            # hyper-parameters are text: the rounds and trials formatted from the input's numbers
            "HyperParameters": {
                "tune": "true",
                **{
                    f"{p.hyperparameter}.$": f"States.Format('{{}}', $.{p.name})"
                    for p in workflow.PARAMETERS
                    if p.hyperparameter
                },
            },
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath.$": _under(LAYOUT["model"])},
            "ResourceConfig": {
                "InstanceCount.$": "$.TrainingInstanceCount",
                "InstanceType.$": "$.TrainingInstanceType",
                "VolumeSizeInGB": 30,
            },
            "Environment": {f"{TOKEN_ENV}.$": "$.names.token"},
            # a restarted job resumes
            "CheckpointConfig": {"S3Uri.$": _under(LAYOUT["checkpoints"])},
            **_stopping(spot_max_wait_s),
        },
        "Evaluate",
        ResultSelector={"ModelDataUrl.$": "$.ModelArtifacts.S3ModelArtifacts"},
        ResultPath="$.training",
    )


def _evaluate_state() -> dict[str, Any]:
    """The image's evaluate mode on one host: the training job's model.tar.gz and preprocess's test split
    in, evaluation.json (and its report) out, as the pipeline's EvaluateModel."""
    evaluate = _processing(
        "evaluate",
        [
            _s3_input("model", "$.training.ModelDataUrl", in_container(evaluate_contract.MODEL)),
            _s3_input(
                "test",
                _under(LAYOUT["prepared"], TEST_SPLIT),
                in_container(evaluate_contract.TEST),
            ),
        ],
        [_s3_output("evaluation", _under(LAYOUT["evaluation"]), in_container(evaluate_contract.OUTPUT))],
        [],
        1,
    )
    return _task(f"{SM}:createProcessingJob.sync", evaluate, "ReadEvaluation", ResultPath=None)


def _gate_states(rule: GateRule) -> dict[str, Any]:
    """Read evaluation.json; fail with a cause when the gate's metric is not in it, or on the wrong side
    of the threshold. A Choice on a path that is absent fails with States.Runtime, which no Catch
    handles: the metric's presence is checked first."""
    value = f"$.evaluation.json.{rule.path}"
    side = "below" if rule.higher_is_better else "above"
    return {
        "ReadEvaluation": _task(
            f"{S3}:getObject",
            {"Bucket.$": "$.OutputBucket", "Key.$": _key(EVALUATION_KEY)},
            "MetricReported",
            ResultSelector={"json.$": "States.StringToJson($.Body)"},  # the object's text, parsed
            ResultPath="$.evaluation",
        ),
        "MetricReported": {
            "Type": "Choice",
            "Choices": [
                {"Not": {"Variable": value, "IsPresent": True}, "Next": "MetricMissing"},
                {"Variable": value, "IsNumeric": True, "Next": "PickMetric"},
            ],
            "Default": "MetricMissing",
        },
        "MetricMissing": {
            "Type": "Fail",
            "Error": "MetricMissing",
            "CausePath": f"States.Format('s3://{{}}/{{}}/{EVALUATION_KEY} has no number at {rule.path}: "
            f"the gate on {rule.metric} cannot decide, the endpoint was not changed', $.OutputBucket, "
            "$.names.key)",
        },
        "PickMetric": {
            "Type": "Pass",
            "Comment": "the gate's metric alone: the rest of evaluation.json is not carried on",
            "Parameters": {"name": workflow.label(rule.metric), "value.$": value},
            "ResultPath": "$.evaluation",
            "Next": "MetricWithinThreshold",
        },
        "MetricWithinThreshold": {
            "Type": "Choice",
            "Comment": f"the gate: {rule.metric} {rule.operator} Threshold, on the test split",
            "Choices": [
                {
                    "Variable": "$.evaluation.value",
                    _comparison(rule): "$.Threshold",
                    "Next": "Register",
                }
            ],
            "Default": "MetricMissed",
        },
        "MetricMissed": {
            "Type": "Fail",
            "Error": f"Metric{side.title()}Threshold",
            "CausePath": f"States.Format('{{}} {{}} is {side} the threshold {{}} on the test split: the "
            "endpoint was not changed', $.evaluation.name, $.evaluation.value, $.Threshold)",
        },
    }


def _comparison(rule: GateRule) -> str:
    return "NumericGreaterThanEqualsPath" if rule.higher_is_better else "NumericLessThanEqualsPath"


def _register_state() -> dict[str, Any]:
    """A model package that passed the gate, Approved (this workflow deploys it next), with the test
    split's evaluation.json as its model quality statistics, as the pipeline registers."""
    return _task(
        f"{SDK}:createModelPackage",
        {
            "ModelPackageGroupName.$": "$.ModelPackageGroupName",
            "ModelPackageDescription.$": "States.Format('retraining execution {}: {} {} on the test "
            "split', $$.Execution.Name, $.evaluation.name, $.evaluation.value)",
            "InferenceSpecification": {
                "Containers": [{"Image.$": "$.Image", "ModelDataUrl.$": "$.training.ModelDataUrl"}],
                "SupportedContentTypes": list(payload.CONTENT_TYPES),
                "SupportedResponseMIMETypes": list(payload.CONTENT_TYPES),
                "SupportedRealtimeInferenceInstanceTypes.$": "States.Array($.EndpointInstanceType)",
            },
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri.$": _under(EVALUATION_KEY)}
                }
            },
            "ModelApprovalStatus": "Approved",
            "MetadataProperties": {"GeneratedBy.$": "$$.Execution.Id"},
        },
        "CreateModel",
        ResultSelector={"ModelPackageArn.$": "$.ModelPackageArn"},
        ResultPath="$.registered",
    )


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
    limits: dict[str, Any] = {"MaxRuntimeInSeconds": train_contract.MAX_RUN_S}  # the pipeline's
    if not train_contract.check_max_wait(spot_max_wait_s):
        return {"StoppingCondition": limits}
    limits["MaxWaitTimeInSeconds"] = spot_max_wait_s
    return {"EnableManagedSpotTraining": True, "StoppingCondition": limits}


def render(
    glue_job: str = "", spot_max_wait_s: int = 0, rule: GateRule | None = None, group: str = ""
) -> str:
    return json.dumps(build(glue_job, spot_max_wait_s, rule, group), indent=2) + "\n"
