"""The housing pipeline, built by the SageMaker Python SDK, every step running the one smray image:

FeatureStoreIngestion -> PreprocessData -> HPTuning (aws) / TrainWithTuning (local) -> EvaluateModel
-> CheckEvaluation (the gate: test RMSE <= Threshold, accuracy >= Threshold, ...) -> RegisterTrainedModel,
else GateFail.

The gate (Target.gate, smray.gate) fixes the condition's metric of evaluation.json and its direction; the
parameter Threshold, its number, defaults to the gate's. The tuner's objective and metric definitions are
the gate's task's (smray.contracts.train).

The two targets differ only where SageMaker local mode cannot follow AWS (the README's "The pipeline"):
- tuning: a TuningStep over training jobs on AWS; smray's own tuning inside one training step locally;
- registration: a ModelStep into SageMaker Model Registry on AWS; the image's `register` mode into the
  local registry (a folder mounted into the job) locally;
- the feature store: SageMaker Feature Store on AWS; the local store (a mounted folder) locally.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.model import Model
from sagemaker.model_metrics import MetricsSource, ModelMetrics
from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
from sagemaker.session import Session
from sagemaker.tuner import ContinuousParameter, HyperparameterTuner, IntegerParameter
from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
from sagemaker.workflow.entities import PipelineVariable
from sagemaker.workflow.execution_variables import ExecutionVariables
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.properties import PropertyFile
from sagemaker.workflow.steps import ProcessingStep, TrainingStep, TuningStep

from smray import gate as gate_mod
from smray import hyperparameters
from smray.contracts import evaluate as evaluate_contract
from smray.contracts import ingest as ingest_contract
from smray.contracts import preprocess as preprocess_contract
from smray.contracts import register as register_contract
from smray.contracts import train as train_contract
from smray.contracts.cluster import TOKEN_ENV
from smray.contracts.jobs import SCHEMA, in_container
from smray.gate import GateRule
from smray.registry.records import GATE_METRIC
from smray.schema import Task
from smray.workflow import default, label
from smray.workstation.pipeline import FAIL_STEP

ENTRYPOINT = ["smray-entrypoint"]
EVALUATION = PropertyFile(
    name="EvaluationReport", output_name="evaluation", path=evaluate_contract.EVALUATION_FILE
)
# On AWS, ingest's report names the feature group's own offline store (its ResolvedOutputS3Uri, which
# SageMaker makes when the group is created): preprocess reads that prefix and nothing else of the bucket.
INGEST_REPORT = PropertyFile(name="IngestReport", output_name="report", path=ingest_contract.REPORT_FILE)


def tuning_ranges() -> dict[str, IntegerParameter | ContinuousParameter]:
    """The search ranges the local tuning draws from (smray.hyperparameters), for SageMaker's tuner."""
    ranges: dict[str, IntegerParameter | ContinuousParameter] = {}
    for param in hyperparameters.PARAMS:
        if param.tune:
            kind = IntegerParameter if param.kind is int else ContinuousParameter
            ranges[param.name] = kind(*param.tune, scaling_type="Logarithmic" if param.log_scale else "Auto")
    return ranges


@dataclass(frozen=True)
class Target:
    """What differs between a pipeline on AWS and the same pipeline in SageMaker local mode."""

    name: str  # "aws" or "local"
    image: str
    role: str
    ray_token: str  # SMRAY_RAY_TOKEN for multi-host jobs (smray refuses a cluster without one)
    pipeline_name: str = "smray-housing"
    processing_instance_type: str = "ml.m5.xlarge"
    training_instance_type: str = "ml.m5.xlarge"
    model_package_group: str = "housing"
    defaults: dict[str, object] = field(default_factory=dict)  # parameter name -> default
    spot_max_wait_s: int = 0  # aws: managed spot training, waiting up to this long (0: on-demand)
    gate: GateRule = field(default_factory=lambda: gate_mod.default(Task.REGRESSION))  # the table's task's

    @property
    def local(self) -> bool:
        return self.name == "local"


class Parameters:
    """The pipeline's parameters; `overrides` replaces defaults (the local target's file:// folders)."""

    def __init__(self, target: Target) -> None:
        def make(kind: type, name: str, default: object) -> ParameterString:
            return kind(name, default_value=target.defaults.get(name, default))

        self.processing_count = make(
            ParameterInteger, "ProcessingInstanceCount", default("ProcessingInstanceCount")
        )
        self.training_count = make(
            ParameterInteger, "TrainingInstanceCount", default("TrainingInstanceCount")
        )
        self.feature_group = make(ParameterString, "FeatureGroupName", "housing")
        self.input_data = make(ParameterString, "InputDataUrl", "s3://my-bucket/housing/raw/")
        self.output = make(ParameterString, "OutputUrl", "s3://my-bucket/smray/runs")
        self.store = make(ParameterString, "FeatureStoreUrl", "s3://my-bucket/smray/offline-store")
        # A folder holding schema.json: the table's columns, target and rules (smray.schema)
        self.schema = make(ParameterString, "SchemaUrl", "s3://my-bucket/smray/schemas/housing/")
        self.threshold = make(ParameterFloat, "Threshold", target.gate.threshold)
        self.train_size = make(ParameterFloat, "TrainSize", 0.6)
        self.validation_size = make(ParameterFloat, "ValidationSize", 0.2)
        self.test_size = make(ParameterFloat, "TestSize", 0.2)
        self.num_round = make(ParameterInteger, "NumRound", default("NumRound"))
        self.tuning_trials = make(ParameterInteger, "TuningTrials", default("TuningTrials"))
        if target.local:
            self.registry = make(ParameterString, "RegistryUrl", "")
        else:
            self.tuning_parallel = make(ParameterInteger, "TuningParallelTrials", 2)

    def all(self) -> list[ParameterString]:
        return list(vars(self).values())


def aws_session(region: str | None, bucket: str) -> PipelineSession:
    import boto3

    return PipelineSession(boto_session=boto3.Session(region_name=region), default_bucket=bucket)


def _under(base: ParameterString, *parts: str | PipelineVariable) -> Join:
    """<OutputUrl>/<execution id>/<parts>: every execution writes under its own prefix."""
    return Join(on="/", values=[base, ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])


def build(target: Target, session: Session) -> Pipeline:
    with warnings.catch_warnings():  # "Running within a PipelineSession, there will be No Wait...": we know
        warnings.filterwarnings("ignore", message="Running within a PipelineSession", category=UserWarning)
        return _build(target, session)


@dataclass(frozen=True)
class _Context:
    """What every step builder needs: the target, the session, the parameters, and how a job is run."""

    target: Target
    session: Session
    p: Parameters

    @property
    def env(self) -> dict[str, str]:
        return {TOKEN_ENV: self.target.ray_token}

    def processor(self, count: object, mode: str) -> Processor:
        return Processor(
            role=self.target.role,
            image_uri=self.target.image,
            instance_count=count,
            instance_type=self.target.processing_instance_type,
            entrypoint=[*ENTRYPOINT, mode],
            base_job_name=f"smray-{mode}",
            env=self.env,
            sagemaker_session=self.session,
        )

    def output(self, name: str, folder: str, *prefix: str) -> ProcessingOutput:
        """A job's output folder, uploaded to <OutputUrl>/<execution id>/<prefix, else name>."""
        return ProcessingOutput(
            output_name=name,
            source=in_container(folder),
            destination=_under(self.p.output, *(prefix or (name,))),
        )

    def input(self, name: str, source: object, folder: str, sharded: bool = False) -> ProcessingInput:
        """A job's input; `sharded`: each host gets its own objects of it (ShardedByS3Key), as ingest reads
        a share only, instead of every host a copy of all of it."""
        return ProcessingInput(
            source=source,
            destination=in_container(folder),
            input_name=name,
            s3_data_distribution_type="ShardedByS3Key" if sharded else "FullyReplicated",
        )

    def store_input(self) -> ProcessingInput:
        return self.input("store", self.p.store, ingest_contract.STORE)

    def schema_input(self) -> ProcessingInput:
        return self.input("schema", self.p.schema, SCHEMA)


def _build(target: Target, session: Session) -> Pipeline:
    # No step is cached: SageMaker's cache key holds a step's input URIs, not the objects under them, so
    # ingest would skip new data under the same InputDataUrl and preprocess would return old splits.
    c = _Context(target, session, Parameters(target))
    ingest = _ingest_step(c)
    preprocess = _preprocess_step(c, ingest)
    train, model_data = _train_step(c, preprocess)
    evaluate = _evaluate_step(c, preprocess, model_data)
    evaluation_uri = evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri
    gate = _gate_step(c, evaluate, _register_step(c, model_data, evaluation_uri))
    return Pipeline(
        name=target.pipeline_name,
        parameters=c.p.all(),
        steps=[ingest, preprocess, train, evaluate, gate],
        sagemaker_session=session,
    )


def _gate_step(c: _Context, evaluate: ProcessingStep, register: ProcessingStep | ModelStep) -> ConditionStep:
    """The gate's metric of the test split against Threshold, in the metric's direction: register, or fail
    saying why ("test accuracy 0.82 is below the Threshold 0.9")."""
    rule = c.target.gate
    value = JsonGet(step_name=evaluate.name, property_file=EVALUATION, json_path=rule.path)
    condition = ConditionGreaterThanOrEqualTo if rule.higher_is_better else ConditionLessThanOrEqualTo
    side = "below" if rule.higher_is_better else "above"
    fail = FailStep(
        name=FAIL_STEP,
        error_message=Join(
            on=" ", values=[f"test {label(rule.metric)}", value, f"is {side} the Threshold", c.p.threshold]
        ),
    )
    return ConditionStep(
        name="CheckEvaluation",
        conditions=[condition(left=value, right=c.p.threshold)],
        if_steps=[register],
        else_steps=[fail],
    )


def _ingest_step(c: _Context) -> ProcessingStep:
    p = c.p
    if c.target.local:
        arguments = ingest_contract.argv(feature_group=p.feature_group)
    else:
        arguments = ingest_contract.argv(
            feature_group=p.feature_group, sagemaker_role=c.target.role, offline_s3_uri=p.store
        )
    # Local mode refuses ShardedByS3Key; its hosts mount one folder anyway.
    raw = c.input("raw", p.input_data, ingest_contract.RAW, sharded=not c.target.local)
    return ProcessingStep(
        name="FeatureStoreIngestion",
        step_args=c.processor(p.processing_count, "ingest").run(
            inputs=[raw, c.schema_input(), *([c.store_input()] if c.target.local else [])],
            outputs=[
                c.output("report", ingest_contract.REPORT, "ingest"),
                c.output("quarantine", ingest_contract.QUARANTINE),
            ],
            arguments=arguments,
        ),
        property_files=[] if c.target.local else [INGEST_REPORT],
    )


def _preprocess_step(c: _Context, ingest: ProcessingStep) -> ProcessingStep:
    p = c.p
    sizes = (p.train_size.to_string(), p.validation_size.to_string(), p.test_size.to_string())
    if c.target.local:
        store = c.store_input()
    else:  # the group's own offline files (".../<group>-<creation epoch>/data"), not another group's
        offline = JsonGet(step_name=ingest.name, property_file=INGEST_REPORT, json_path="offline_store")
        store = c.input("store", offline, preprocess_contract.STORE)
    return ProcessingStep(
        name="PreprocessData",
        step_args=c.processor(p.processing_count, "preprocess").run(
            inputs=[store, c.schema_input()],
            outputs=[
                *(c.output(name, preprocess_contract.split(name)) for name in preprocess_contract.SPLITS),
                c.output("transform", preprocess_contract.TRANSFORM),
                c.output("report", preprocess_contract.REPORT, "preprocess"),
            ],
            arguments=preprocess_contract.argv(
                offline_files=not c.target.local, feature_group=p.feature_group, sizes=sizes
            ),
        ),
        depends_on=[ingest],
    )


def _train_step(
    c: _Context, preprocess: ProcessingStep
) -> tuple[TrainingStep | TuningStep, PipelineVariable]:
    """Training with tuning, and where the best model lands."""
    target, p = c.target, c.p
    outputs = preprocess.properties.ProcessingOutputConfig.Outputs
    channels = {name: TrainingInput(outputs[name].S3Output.S3Uri) for name in train_contract.CHANNELS}
    # On AWS every training job syncs /opt/ml/checkpoints under the run's output: a restarted or
    # spot-interrupted job resumes from its last checkpoint (local mode has no S3 to sync to).
    resumable = (
        {}
        if target.local
        else {
            "checkpoint_s3_uri": _under(p.output, train_contract.CHECKPOINTS),
            "max_run": train_contract.MAX_RUN_S,
            **(
                {
                    "use_spot_instances": True,
                    "max_wait": train_contract.check_max_wait(target.spot_max_wait_s),
                }
                if target.spot_max_wait_s
                else {}
            ),
        }
    )
    estimator = Estimator(
        image_uri=target.image,
        role=target.role,
        instance_count=p.training_count,
        instance_type=target.training_instance_type,
        output_path=_under(p.output, "model"),
        metric_definitions=train_contract.metric_definitions(target.gate.task),
        environment=c.env,
        hyperparameters={"num_round": p.num_round.to_string()},
        sagemaker_session=c.session,
        **resumable,
    )
    if target.local:  # local mode cannot run a TuningStep: the training job tunes itself
        estimator.set_hyperparameters(
            num_round=p.num_round.to_string(),
            tune="true",
            tune_trials=p.tuning_trials.to_string(),
        )
        train = TrainingStep(name="TrainWithTuning", step_args=estimator.fit(inputs=channels))
        return train, train.properties.ModelArtifacts.S3ModelArtifacts
    objective, direction = train_contract.objective(target.gate.task)
    tuner = HyperparameterTuner(
        estimator,
        objective_metric_name=objective,
        hyperparameter_ranges=tuning_ranges(),
        metric_definitions=train_contract.metric_definitions(target.gate.task),
        objective_type=direction,
        max_jobs=p.tuning_trials,
        max_parallel_jobs=p.tuning_parallel,
    )
    tuning = TuningStep(name="HPTuning", step_args=tuner.fit(inputs=channels))
    # SageMaker writes each trial's model at <output_path>/<training job>/output/model.tar.gz
    best_trial = tuning.properties.TrainingJobSummaries[0].TrainingJobName
    return tuning, _under(p.output, "model", best_trial, "output", "model.tar.gz")


def _evaluate_step(c: _Context, preprocess: ProcessingStep, model_data: PipelineVariable) -> ProcessingStep:
    test = preprocess.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri
    return ProcessingStep(
        name="EvaluateModel",
        step_args=c.processor(1, "evaluate").run(
            inputs=[
                c.input("model", model_data, evaluate_contract.MODEL),
                c.input("test", test, evaluate_contract.TEST),
            ],
            outputs=[c.output("evaluation", evaluate_contract.OUTPUT)],
        ),
        property_files=[EVALUATION],
    )


def _register_step(
    c: _Context, model_data: PipelineVariable, evaluation_uri: PipelineVariable
) -> ProcessingStep | ModelStep:
    target = c.target
    # local mode rejects RegisterModel: the image's `register` mode writes the local registry instead
    if target.local:
        return ProcessingStep(
            name="RegisterTrainedModel",
            step_args=c.processor(1, "register").run(
                inputs=[
                    c.input("model", model_data, register_contract.MODEL),
                    c.input("evaluation", evaluation_uri, register_contract.EVALUATION),
                    c.input("registry", c.p.registry, register_contract.REGISTRY),
                ],
                outputs=[c.output("registered", register_contract.OUTPUT)],
                arguments=register_contract.argv(
                    group=target.model_package_group,
                    image=target.image,
                    execution=ExecutionVariables.PIPELINE_EXECUTION_ID,
                    gate_metric=target.gate.metric,
                ),
            ),
        )
    model = Model(
        image_uri=target.image, model_data=model_data, role=target.role, sagemaker_session=c.session
    )
    metrics = ModelMetrics(
        model_statistics=MetricsSource(
            s3_uri=Join(on="/", values=[evaluation_uri, evaluate_contract.EVALUATION_FILE]),
            content_type="application/json",
        )
    )
    return ModelStep(
        name="RegisterTrainedModel",
        step_args=model.register(
            content_types=["text/csv", "application/json", "application/jsonlines"],
            response_types=["text/csv", "application/json"],
            inference_instances=["ml.m5.large", "ml.m5.xlarge"],
            transform_instances=["ml.m5.xlarge"],
            model_package_group_name=target.model_package_group,
            approval_status="PendingManualApproval",
            model_metrics=metrics,
            customer_metadata_properties={GATE_METRIC: target.gate.metric},
        ),
    )
