"""One thing at a time: the lock waits for another process (saying so), or refuses; deploys and deletes
of one endpoint never interleave."""

import subprocess
import sys
import threading
import time

import pytest

from smray.errors import UserError
from smray.locks import exclusive
from smray.workstation.endpoints.local import LocalEndpoints

HOLD = """
import fcntl, sys, time
with open(sys.argv[1], "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _held_elsewhere(path, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"held\n"
    return holder


def test_the_lock_says_it_waits_then_waits_for_the_other_process(tmp_path):
    holder = _held_elsewhere(tmp_path / "x.lock", 1.0)
    said = []
    started = time.monotonic()
    with exclusive(tmp_path / "x.lock", on_wait=lambda: said.append(time.monotonic() - started)):
        waited = time.monotonic() - started
    holder.wait()
    assert len(said) == 1 and said[0] < 0.5 and waited > 0.8


def test_the_lock_can_refuse_instead_of_waiting(tmp_path):
    holder = _held_elsewhere(tmp_path / "x.lock", 5.0)

    def refuse():
        raise UserError("busy")

    started = time.monotonic()
    with pytest.raises(UserError, match="busy"), exclusive(tmp_path / "x.lock", on_wait=refuse):
        pass
    assert time.monotonic() - started < 1
    holder.kill()
    holder.wait()


def test_deploys_of_one_endpoint_take_turns(tmp_path, monkeypatch):
    spans = []

    def slow_deploy(self, name, version, image, port):
        begun = time.monotonic()
        time.sleep(0.5)
        spans.append((begun, time.monotonic()))

    monkeypatch.setattr(LocalEndpoints, "_deploy", slow_deploy)
    endpoints = LocalEndpoints(tmp_path)
    threads = [threading.Thread(target=endpoints.deploy, args=("houses", None)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted(spans)
    assert second[0] >= first[1]  # the second swap began after the first had ended
