"""The image forms a Ray cluster of real containers, and fails loudly and fast when it cannot."""

import re
import time
from datetime import datetime

from smray.contracts.resource_config import JobKind

from .conftest import IMAGE


def finished_at(state: dict) -> datetime:
    # Docker gives nanoseconds ("...:49.985123456Z"); datetime takes microseconds.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", state["FinishedAt"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp)


def test_three_hosts_form_a_cluster_and_workers_leave_after_the_head(make_cluster):
    c = make_cluster(3, ["cluster-check"])
    started = time.monotonic()
    c.local.start()
    states = c.wait_exit(c.local.hosts, timeout_s=240)
    total = time.monotonic() - started
    head_log = c.logs(c.local.head)
    for host in c.local.hosts:
        assert f"cluster-check: task ran on {host} (" in head_log, head_log
    assert "cluster-check: OK, 3/3 hosts answered" in head_log
    assert states[c.local.head]["ExitCode"] == 0, c.logs()
    for worker in c.local.workers:
        assert states[worker]["ExitCode"] == 0, c.logs(worker)
        assert finished_at(states[worker]) >= finished_at(states[c.local.head]), (
            "a worker left before the head"
        )
    print(f"\n3-host cluster-check: {total:.1f} s from compose up to the last container's exit")


def test_local_mode_style_run_returns_the_head_exit_code(make_cluster):
    c = make_cluster(2, ["cluster-check"], kind=JobKind.PROCESSING)
    assert c.local.run() == 0
    # Compose stops the worker (SIGTERM) as soon as the head's container exits, while the worker still
    # stops its Ray: the worker's work is done, so that is no failure.
    assert c.local.exit_codes() == dict.fromkeys(c.local.hosts, 0), c.logs()
    for worker in c.local.workers:
        assert c.local.failure(worker) is None, c.logs(worker)


def test_killed_worker_fails_the_head_naming_the_lost_host(make_cluster):
    c = make_cluster(3, ["cluster-check", "--hold", "600"])
    c.local.start()
    c.wait_log(c.local.head, "cluster formed", timeout_s=240)
    victim = c.local.workers[0]
    c.containers()[victim].kill()
    killed = time.monotonic()
    states = c.wait_exit([c.local.head], timeout_s=60)
    elapsed = time.monotonic() - killed
    assert states[c.local.head]["ExitCode"] != 0
    reason = c.local.failure(c.local.head)
    assert reason and f"lost host {victim}" in reason, c.logs(c.local.head)
    assert elapsed < 60
    # The surviving worker is told the head is done, leaves after it, and leaves the failure to the head.
    survivor = c.local.workers[1]
    assert c.wait_exit([survivor], timeout_s=30)[survivor]["ExitCode"] == 0
    assert f"head {c.local.head} finished with status 1" in c.logs(survivor)
    print(f"\nhead failed {elapsed:.1f} s after {victim} was killed: {reason}")


def test_killed_head_makes_every_worker_exit(make_cluster):
    c = make_cluster(3, ["cluster-check", "--hold", "600"])
    c.local.start()
    c.wait_log(c.local.head, "cluster formed", timeout_s=240)
    c.containers()[c.local.head].kill()
    killed = time.monotonic()
    states = c.wait_exit(c.local.workers, timeout_s=30)
    elapsed = time.monotonic() - killed
    for worker in c.local.workers:
        assert states[worker]["ExitCode"] != 0
        assert f"lost the head host {c.local.head}" in (c.local.failure(worker) or ""), c.logs(worker)
    print(f"\nworkers exited {elapsed:.1f} s after the head was killed")


def test_head_name_that_never_resolves_is_a_clear_timeout(make_cluster):
    hosts = ["algo-0-ghost", "algo-1-alive"]  # sorted: the head is the ghost
    c = make_cluster(
        2,
        ["cluster-check"],
        env={"SMRAY_RESOLVE_TIMEOUT_S": "5"},
        hosts=hosts,
        absent_hosts=("algo-0-ghost",),
    )
    c.local.start()
    state = c.wait_exit(["algo-1-alive"], timeout_s=60)["algo-1-alive"]
    assert state["ExitCode"] == 1
    assert "host name 'algo-0-ghost' resolving did not happen within 5 s" in c.local.failure("algo-1-alive")


def test_worker_that_never_joins_is_named_by_the_head(make_cluster):
    hosts = ["algo-1-here", "algo-2-gone"]
    c = make_cluster(
        2, ["cluster-check"], env={"SMRAY_JOIN_TIMEOUT_S": "10"}, hosts=hosts, absent_hosts=("algo-2-gone",)
    )
    c.local.start()
    state = c.wait_exit(["algo-1-here"], timeout_s=90)["algo-1-here"]
    assert state["ExitCode"] == 1
    assert "waiting for hosts to join: algo-2-gone" in c.local.failure("algo-1-here")


def test_malformed_resource_config_is_a_clear_error(make_cluster):
    hosts = ["algo-1-bad"]
    c = make_cluster(
        1, ["cluster-check"], hosts=hosts, kind=JobKind.PROCESSING, raw_configs={"algo-1-bad": '{"hosts": ['}
    )
    c.local.start()
    assert c.wait_exit(hosts, timeout_s=60)["algo-1-bad"]["ExitCode"] == 1
    reason = c.local.failure("algo-1-bad")
    assert reason.startswith("resource config /opt/ml/config/resourceconfig.json is not valid JSON"), reason


def test_unknown_mode_is_a_usage_error(make_cluster):
    c = make_cluster(1, ["trian"])
    c.local.start()
    host = c.local.hosts[0]
    assert c.wait_exit([host], timeout_s=60)[host]["ExitCode"] == 2
    assert "unknown mode 'trian'" in c.logs(host)


def test_a_job_that_replaces_the_entrypoint_still_runs_under_an_init(docker_client):
    """A Processing job's ContainerEntrypoint replaces the image's (tini): the entrypoint puts tini back
    as PID 1, which reaps what Ray leaves behind (unreaped, `ray stop` waited 23 s on zombies)."""
    container = docker_client.containers.run(
        IMAGE,
        ["cluster-check", "--hold", "30"],
        entrypoint=["smray-entrypoint"],
        shm_size="256m",
        detach=True,
        labels={"io.smray.test": "entrypoint-init"},
    )
    try:
        deadline = time.monotonic() + 60
        while "cluster-check: task ran" not in container.logs().decode() and time.monotonic() < deadline:
            time.sleep(0.5)
        init = container.exec_run(["cat", "/proc/1/cmdline"]).output.split(b"\0")
        assert init[:2] == [b"/usr/bin/tini", b"--"], init
        assert b"cluster-check" in init
    finally:
        container.remove(force=True)
