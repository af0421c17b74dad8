import json
import os
from pathlib import Path

import pytest

from smray import paths
from smray.ray_bootstrap import auth

# Ray reads its auth settings once, when first imported, and keeps the first token it saw: give every
# in-process Ray instance of this test session the same token, before anything imports Ray.
os.environ.update(auth.ray_env(auth.cluster_token(os.environ, 1)))


@pytest.fixture(autouse=True)
def own_smray_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test has a home of its own: a user's SMRAY_HOME (or ~/.smray) is never read or written."""
    home = tmp_path_factory.mktemp("smray-home")
    monkeypatch.setenv(paths.HOME_ENV, str(home))
    return home


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
