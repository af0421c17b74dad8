import json
from pathlib import Path

import pytest

from smray import paths


@pytest.fixture
def opt_ml(tmp_path, monkeypatch) -> Path:
    """A temporary /opt/ml tree that every smray path points into."""
    root = tmp_path / "opt_ml"
    root.mkdir()
    monkeypatch.setenv(paths.ROOT_ENV, str(root))
    return root


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path
