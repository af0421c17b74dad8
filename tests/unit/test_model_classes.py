"""A classifier whose outputs do not match its labels is refused when it loads (the endpoint would start,
then answer every request with a 500)."""

import json

import pytest

from smray import model_artifact, transform
from smray.errors import UserError
from smray.schema import Task
from tests.support.classifiers import build_classifier


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS])
def test_a_classifier_loads_with_its_own_labels(tmp_path, task):
    model = model_artifact.load(build_classifier(tmp_path, task))
    assert model.task is task and len(model.labels) >= 2


@pytest.mark.parametrize(
    ("task", "labels"), [(Task.MULTICLASS, ["bronze", "gold"]), (Task.BINARY, ["a", "b", "c"])]
)
def test_labels_that_do_not_match_the_model_s_outputs_are_refused(tmp_path, task, labels):
    folder = build_classifier(tmp_path, task)
    path = folder / transform.FILE_NAME
    prep = json.loads(path.read_text())
    path.write_text(json.dumps(prep | {"labels": labels}))
    with pytest.raises(UserError, match="output\\(s\\) per row, but its preprocessing names"):
        model_artifact.load(folder)
