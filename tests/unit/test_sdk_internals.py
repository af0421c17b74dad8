"""The SageMaker SDK 2.x internals that smray's local runs rely on (smray.workstation.pipeline.local_mode),
listed in one place and checked by name and signature: an SDK upgrade that moves one fails here, naming
it, before any run. The README's "Which SageMaker SDK" says why smray stays on 2.x for now and what moving
to 3.x takes; this list is that move's checklist. Each internal's behaviour is tested in
tests/unit/test_local_mode.py and by every local run."""

import importlib
import inspect

import pytest

INTERNALS = {
    # require_mountable: the folders local mode refuses to mount
    "sagemaker.utils._SENSITIVE_SYSTEM_PATHS": None,
    # file_property_files: JsonGet of a file:// property file
    "sagemaker.local.pipeline.LocalPipelineExecutor._evaluate_json_get_function": [
        "self",
        "pipeline_variable",
        "step_name",
    ],
    # job_containers_removed: the command that starts a job, and the clean-up after its outputs
    "sagemaker.local.image._SageMakerContainer._compose": ["self", "detached"],
    "sagemaker.local.image._SageMakerContainer._cleanup": ["self", "dirs_to_delete"],
}
# config_validated_once: the modules that imported validate_sagemaker_config by name
VALIDATING_MODULES = (
    "sagemaker.config.config",
    "sagemaker.config",
    "sagemaker.utils",
    "sagemaker.session",
    "sagemaker.local.local_session",
)


def _find(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("dotted", INTERNALS)
def test_each_internal_is_where_smray_uses_it(dotted):
    found = _find(dotted)
    parameters = INTERNALS[dotted]
    if parameters is None:
        assert isinstance(found, list | tuple | set) and found, dotted
    else:
        assert list(inspect.signature(found).parameters) == parameters, dotted


def test_every_module_that_validates_the_config_holds_the_function_smray_swaps():
    from sagemaker.config import config

    for name in VALIDATING_MODULES:
        assert importlib.import_module(name).validate_sagemaker_config is config.validate_sagemaker_config, (
            name
        )
