"""build.sh pushes to a real registry (Debian's docker-registry on loopback) and the image pulls back by
digest; the image holds the bytecode of what its jobs import."""

import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import IMAGE

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "docker-registry exited at start"
            assert time.monotonic() < deadline, "docker-registry did not listen within 20 s"
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_push_and_pull_back_by_digest(registry, docker_client):
    out = subprocess.run(
        [str(REPO / "build.sh"), "--push", registry], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    ref = out.stdout.strip().splitlines()[-1]
    assert ref.startswith(f"{registry}/smray@sha256:"), out.stdout
    local_id = docker_client.images.get("smray:latest").id
    for tag in docker_client.images.get(ref).tags:
        if tag.startswith(registry):
            docker_client.images.remove(tag)
    pulled = docker_client.images.pull(ref)
    assert pulled.id == local_id


def test_help_documents_every_option():
    out = subprocess.run([str(REPO / "build.sh"), "--help"], capture_output=True, text=True, check=True)
    for option in ("--gpu", "--name", "--base-image", "--push", "--ecr", "--refresh-wheels"):
        assert option in out.stdout
    bad = subprocess.run([str(REPO / "build.sh"), "--bogus"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "unknown option '--bogus'" in bad.stderr


# Lists, in the image, the modules that the entrypoint, Ray's daemons and a job's Ray tasks import and
# whose bytecode is missing: each process would compile those from source every time it starts.
WITHOUT_BYTECODE = """
import importlib.util, os, sys
import pandas, pyarrow.parquet, xgboost, ray, ray.data, ray.tune, ray.scripts.scripts
import smray.entrypoints.dispatch, smray.entrypoints.modes.train, smray.entrypoints.modes.preprocess
missing = [
    m.__file__ for m in list(sys.modules.values())
    if (getattr(m, "__file__", None) or "").endswith(".py")
    and not os.path.exists(importlib.util.cache_from_source(m.__file__))
]
print(len(missing), *missing[:5])
"""


def test_what_a_job_imports_is_compiled_in_the_image(docker_client):
    """Without bytecode, `ray start --head` took 6.5 s instead of 2.7 s and the 100k-row main command 27 s
    longer: every daemon and worker of every job compiled its imports again."""
    output = docker_client.containers.run(
        IMAGE,
        ["-c", WITHOUT_BYTECODE],
        entrypoint=["python"],
        remove=True,
        labels={"io.smray.test": "bytecode"},
    )
    assert output.decode().split()[0] == "0", output.decode()
