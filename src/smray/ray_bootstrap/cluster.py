"""Forms the job's Ray cluster from the resource config, runs the head's work on it, and takes it down.

One host: a private local Ray instance (`ray.init`), nothing else. Several hosts: the first host in
sorted order starts the Ray head and waits for exactly the other hosts; every other host joins it and
stays until the head's work is over (see `lifeline`). The head exits with the work's real status.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import NoReturn

from smray.contracts.resource_config import ResourceConfig
from smray.errors import ClusterError
from smray.ray_bootstrap import auth, object_store
from smray.ray_bootstrap.lifeline import LifelineClient, LifelineServer
from smray.ray_bootstrap.resolve import resolve, wait_for_port
from smray.ray_bootstrap.settings import ClusterSettings
from smray.retry import NotYet, retry

log = logging.getLogger(__name__)

Work = Callable[[], None]
Abort = Callable[[BaseException], NoReturn]
# A worker's raylet gives up on a vanished head after this long (Ray's default is 60 s).
GCS_RECONNECT_TIMEOUT_S = "15"
# After the lifeline reports a lost host, how long the head's work may take to stop before a hard exit.
ABORT_GRACE_S = 15.0


def run(config: ResourceConfig, env: Mapping[str, str], work: Work, abort: Abort) -> None:
    """Run `work` on the head of the job's cluster; on a worker, serve the cluster until the head is done.
    Raises on failure; returns normally on success (on every host). `abort` ends the process at once
    when a lost host leaves the head's work stuck."""
    settings = ClusterSettings.from_env(env)
    token = auth.cluster_token(env, len(config.hosts))
    os.environ.update(auth.ray_env(token))  # read by every Ray process we start and by our driver
    store = object_store.plan_for_this_host(settings.object_store_mib or None)
    log.info(store.describe())
    if len(config.hosts) == 1:
        _run_single_host(settings, store, work)
    elif config.is_head:
        _run_head(config, settings, token, store, work, abort)
    else:
        _run_worker(config, settings, token, store)


def _run_single_host(settings: ClusterSettings, store: object_store.ObjectStorePlan, work: Work) -> None:
    import ray

    started = time.monotonic()
    ray.init(
        object_store_memory=store.size_bytes,
        _plasma_directory=str(store.directory),
        include_dashboard=settings.include_dashboard,
        log_to_driver=True,
    )
    log.info("cluster formed: 1 host ready in %.1f s", time.monotonic() - started)
    try:
        work()
    finally:
        ray.shutdown()


def ray_start_command(
    *,
    node_ip: str,
    settings: ClusterSettings,
    store: object_store.ObjectStorePlan,
    head_address: str | None,
) -> list[str]:
    """`ray start` for the head (head_address None) or for a worker joining head_address."""
    cmd = ["ray", "start", f"--node-ip-address={node_ip}"]
    if head_address is None:
        cmd += [
            "--head",
            f"--port={settings.gcs_port}",
            f"--include-dashboard={str(settings.include_dashboard).lower()}",
            "--disable-usage-stats",
            "--no-monitor",  # the autoscaler's: a job's hosts are fixed, and it is one more process to start
        ]
    else:
        cmd += [f"--address={head_address}"]
    cmd += [f"--object-store-memory={store.size_bytes}", f"--plasma-directory={store.directory}"]
    return cmd


def _ray_start(cmd: list[str]) -> None:
    log.info("running: %s", " ".join(cmd))
    env = {**os.environ, "RAY_gcs_rpc_server_reconnect_timeout_s": GCS_RECONNECT_TIMEOUT_S}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ClusterError(
            f"`{' '.join(cmd[:3])}` failed with exit code {proc.returncode}: {' | '.join(tail)}"
        )


def _ray_stop() -> None:
    # Only ever runs inside a worker's container: `ray stop` ends every Ray process on the machine.
    subprocess.run(["ray", "stop", "--force"], capture_output=True, check=False)


def _run_head(
    config: ResourceConfig,
    settings: ClusterSettings,
    token: str,
    store: object_store.ObjectStorePlan,
    work: Work,
    abort: Abort,
) -> None:
    import ray

    ip = resolve(config.current_host, settings.resolve_timeout_s)
    started = time.monotonic()

    def abort_and_release_workers(exc: BaseException) -> NoReturn:
        # A hard exit skips the `finally` below: tell the workers first that the head is done (failed),
        # so that they leave after it and leave the failure to it.
        lifeline.finish(1)
        abort(exc)

    lost = _LostHostAlarm(abort_and_release_workers)
    lifeline = LifelineServer(
        "0.0.0.0",
        token,
        set(config.workers),
        lost.raise_in_main,
        port=settings.lifeline_port,
        silence_s=settings.lifeline_silence_s,
    )
    status = 1
    try:
        _ray_start(ray_start_command(node_ip=ip, settings=settings, store=store, head_address=None))
        log.info("head %s (%s) started; waiting for %s", config.current_host, ip, ", ".join(config.workers))
        lifeline.wait_for(set(config.workers), settings.join_timeout_s)
        ray.init(address=f"{ip}:{settings.gcs_port}", log_to_driver=True)
        _expect_live_nodes(len(config.hosts))
        log.info("cluster formed: %d hosts joined in %.1f s", len(config.hosts), time.monotonic() - started)
        with lost:
            work()
        status = 0
    finally:
        stopping = time.monotonic()
        lifeline.finish(status)
        if ray.is_initialized():
            ray.shutdown()
        # No `ray stop` here (0.6 s): Ray's daemons end with the job's container, when this process does.
        # (A worker does stop its Ray: that keeps it from leaving before the head's container has.)
        log.info("Ray's driver disconnected in %.1f s", time.monotonic() - stopping)


def _expect_live_nodes(expected: int, timeout_s: float = 30.0) -> None:
    """Every host answered on the lifeline after its `ray start` returned, so its node is registered;
    check that Ray agrees and that no stranger joined."""
    import ray

    def exactly_expected() -> None:
        alive = sum(1 for n in ray.nodes() if n.get("Alive"))
        if alive > expected:
            raise ClusterError(f"expected exactly {expected} live Ray nodes, found {alive}")
        if alive < expected:
            raise NotYet(f"{alive} live")

    retry(
        exactly_expected,
        what=f"{expected} Ray nodes registering",
        timeout_s=timeout_s,
        retry_on=(),
        max_delay_s=1.0,
        error=ClusterError,
    )


class _LostHostAlarm:
    """Turns the lifeline's report of a lost host into a ClusterError raised in the main thread, where
    the head's work runs. If the work does not stop in ABORT_GRACE_S (stuck in native code), exit hard."""

    def __init__(self, abort: Abort) -> None:
        self._abort = abort
        self._armed = False
        self._reason: str | None = None

    def raise_in_main(self, host: str, why: str) -> None:
        self._reason = f"lost host {host} while the job ran: {why}"
        log.error(self._reason)
        if not self._armed:
            return
        os.kill(os.getpid(), signal.SIGUSR1)
        timer = threading.Timer(ABORT_GRACE_S, self._hard_exit)
        timer.daemon = True
        timer.start()

    def _hard_exit(self) -> None:
        self._abort(ClusterError(self._reason or "lost a host"))

    def __enter__(self) -> None:
        if self._reason:
            raise ClusterError(self._reason)
        signal.signal(signal.SIGUSR1, self._on_signal)
        self._armed = True

    def __exit__(self, *exc: object) -> None:
        self._armed = False
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: object) -> None:
        raise ClusterError(self._reason or "lost a host")


def _run_worker(
    config: ResourceConfig,
    settings: ClusterSettings,
    token: str,
    store: object_store.ObjectStorePlan,
) -> None:
    ip = resolve(config.current_host, settings.resolve_timeout_s)
    head_ip = resolve(config.head, settings.resolve_timeout_s)
    deadline = time.monotonic() + settings.join_timeout_s
    wait_for_port(config.head, head_ip, settings.gcs_port, settings.join_timeout_s)
    try:
        _ray_start(
            ray_start_command(
                node_ip=ip, settings=settings, store=store, head_address=f"{head_ip}:{settings.gcs_port}"
            )
        )
        remaining = max(deadline - time.monotonic(), 1.0)
        lifeline = LifelineClient.connect(
            head_ip,
            config.current_host,
            token,
            remaining,
            port=settings.lifeline_port,
            silence_s=settings.lifeline_silence_s,
        )
        log.info("worker %s (%s) joined head %s (%s)", config.current_host, ip, config.head, head_ip)
        status = lifeline.wait()
        if status is not None:
            # The head is done, so is this host. Local mode stops every container once the head's has
            # exited (SIGTERM): that must not fail a host that is only stopping Ray on its way out.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        _ray_stop()
    if status is None:
        raise ClusterError(f"lost the head host {config.head} before it finished")
    log.info("head %s finished with status %d; worker %s exits", config.head, status, config.current_host)
