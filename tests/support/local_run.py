"""`smray run local` without Docker: its pipeline as the containers would leave it, for the tests of what
the CLI does around the pipeline (tests/container/test_pipeline_local.py runs the real one)."""

import json
import shutil
from pathlib import Path

from smray import model_artifact
from smray.contracts.register import OUTPUT, RESULT_FILE
from smray.registry.local import LocalRegistry
from smray.workstation import local_workflow as flow
from smray.workstation.pipeline import execute


def passing_pipeline(monkeypatch, model: Path) -> None:
    """Every run's pipeline passes the gate and registers `model` in the home's registry, as the image's
    `register` step does; the image is taken to be there."""

    def run(home, runs, input_dir, image, parameters, schema, hosts, gate) -> execute.Execution:
        folder = runs / "exec1"
        version = LocalRegistry(home / "registry").register(schema.name, model, image, {})
        (folder / OUTPUT).mkdir(parents=True)
        (folder / OUTPUT / RESULT_FILE).write_text(
            json.dumps({"group": schema.name, "version": version.version})
        )
        (folder / "model").mkdir()
        shutil.copyfile(version.artifact, folder / "model" / model_artifact.ARCHIVE)
        steps = [execute.StepResult("RegisterTrainedModel", "Succeeded", 1.0)]
        definition = {"Steps": [{"Name": "RegisterTrainedModel"}]}
        return execute.Execution("exec1", "Succeeded", folder, 1.0, steps, definition=definition)

    monkeypatch.setattr(execute, "run", run)
    monkeypatch.setattr(flow, "require_image", lambda image: None)
