"""The retraining workflow's own Ingest and Preprocess jobs (entrypoint, arguments, local paths and input
distribution taken from the state machine) as 2-host processing jobs whose hosts each have a disk of
their own, as on AWS: ingest's raw input sharded by key, each host holding half the files.
Every host's outputs are merged the way S3 merges uploads to one prefix (the same key: the last upload
wins). Nothing is lost: preprocess's splits hold every input row, and the state machine's Pass-state
stand-ins in test_execution.py are backed by this run of the real steps."""

import shutil
from pathlib import Path

import pandas as pd

from smray import schema as schema_mod
from smray.contracts.resource_config import JobKind
from smray.workstation import datagen
from smray.workstation.local_cluster import host_names
from smray.workstation.retraining import statemachine


def _job(state: str) -> tuple[list[str], dict[str, tuple[str, str]], dict[str, str]]:
    """What the state machine asks SageMaker to run: command, input local paths and distribution types
    and output local paths, by name."""
    params = statemachine.build()["States"][state]["Parameters"]
    app = params["AppSpecification"]
    command = [*app["ContainerEntrypoint"][1:], *app["ContainerArguments"]]
    inputs = {
        i["InputName"]: (i["S3Input"]["LocalPath"], i["S3Input"]["S3DataDistributionType"])
        for i in params["ProcessingInputs"]
    }
    outputs = {
        o["OutputName"]: o["S3Output"]["LocalPath"] for o in params["ProcessingOutputConfig"]["Outputs"]
    }
    return command, inputs, outputs


def _download(source: Path, into: Path, distribution: str, host: int, hosts: int) -> None:
    """FullyReplicated: every host downloads the whole input; ShardedByS3Key: each object goes to one host
    (here the k-th object by key to host k mod hosts)."""
    if distribution == "FullyReplicated":
        shutil.copytree(source, into)
        return
    into.mkdir(parents=True)
    for k, path in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
        if k % hosts == host:
            (into / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, into / path.relative_to(source))


def _run_on_two_hosts(make_cluster, work: Path, state: str, s3: dict[str, Path]) -> dict[str, Path]:
    command, inputs, outputs = _job(state)
    hosts = host_names(2)
    volumes: dict[str, dict[str, str]] = {}
    for index, host in enumerate(hosts):
        disk = work / host
        for name, (_, distribution) in inputs.items():
            _download(s3[name], disk / "in" / name, distribution, index, len(hosts))
        for name in outputs:
            (disk / "out" / name).mkdir(parents=True)
        volumes[host] = {
            **{str(disk / "in" / n): local for n, (local, _) in inputs.items()},
            **{str(disk / "out" / n): local for n, local in outputs.items()},
        }
    cluster = make_cluster(2, command, hosts=hosts, kind=JobKind.PROCESSING, host_volumes=volumes)
    assert cluster.local.run() == 0, cluster.logs()
    merged = {}
    for name in outputs:  # each host uploads its folder to the one prefix: a key's last upload wins
        merged[name] = work / "s3" / name
        for host in (*cluster.local.workers, cluster.local.head):
            shutil.copytree(work / host / "out" / name, merged[name], dirs_exist_ok=True)
    return merged


def test_two_processing_hosts_with_disks_of_their_own_lose_nothing(make_cluster, tmp_path):
    raw = tmp_path / "raw"
    written = datagen.generate(raw, rows=3000, files=4, fmt="csv", seed=8)
    schema_folder = tmp_path / "schema"
    schema_folder.mkdir()
    (schema_folder / "schema.json").write_text(schema_mod.housing().dumps())

    ingested = _run_on_two_hosts(
        make_cluster, tmp_path / "ingest", "Ingest", {"raw": raw, "schema": schema_folder}
    )
    prepared = _run_on_two_hosts(
        make_cluster,
        tmp_path / "preprocess",
        "Preprocess",
        {"store": ingested["store"], "schema": schema_folder},
    )
    rows = pd.concat([pd.read_parquet(prepared[name]) for name in ("train", "validation", "test")])
    source = pd.concat([pd.read_csv(f) for f in sorted(raw.glob("*.csv"))])
    assert len(source) == written.rows == 3000
    assert len(rows) == 3000  # every row of every host's share
    assert _job("Ingest")[1]["raw"][1] == "ShardedByS3Key"
    assert sorted(rows["PRICE"]) == sorted(source["PRICE"].astype(float))
    assert (prepared["transform"] / "preprocessing.json").is_file()
