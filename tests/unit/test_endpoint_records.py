"""A local endpoint's record keeps the model it serves as (group, version), and reads the records an
earlier smray wrote ("model": "group/version"), such as those in a user's home."""

import json

import pytest

from smray.errors import UserError
from smray.workstation.endpoints.local import LocalEndpoints

EARLIER = {
    "name": "housing",
    "url": "http://127.0.0.1:32769",
    "port": 32769,
    "model": "housing/11",
    "image": "smray:latest",
    "container": "smray-housing-v11-885dba",
    "router": "smray-endpoint-housing-af09b2ea",
    "updated": "2026-11-23T02:18:53+00:00",
}


def test_an_earlier_record_reads_as_group_and_version(tmp_path):
    folder = tmp_path / "endpoints" / "housing"
    folder.mkdir(parents=True)
    (folder / "endpoint.json").write_text(json.dumps(EARLIER))
    endpoint = LocalEndpoints(tmp_path).describe("housing")
    assert (endpoint.group, endpoint.version, endpoint.model) == ("housing", 11, "housing/11")
    assert [e.name for e in LocalEndpoints(tmp_path).list()] == ["housing"]


@pytest.mark.parametrize("name", ["../x", "../../victim", "a/b", "a_b", "-a", "x\n", "", "a" * 64])
def test_the_store_refuses_a_name_that_is_not_an_endpoint_name_before_any_path(tmp_path, name):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "endpoint.json").write_text(json.dumps(EARLIER))
    endpoints = LocalEndpoints(tmp_path / "home")
    for call in (endpoints.describe, endpoints.delete):
        with pytest.raises(UserError, match="is not a valid endpoint name"):
            call(name)
    assert (victim / "endpoint.json").is_file() and not (tmp_path / "home").exists()


def test_a_corrupt_record_is_named_and_stray_folders_are_not_endpoints(tmp_path):
    for name, text in [("housing", json.dumps(EARLIER)), ("not_an_endpoint", "{}"), (".hidden", "{}")]:
        (tmp_path / "endpoints" / name).mkdir(parents=True)
        (tmp_path / "endpoints" / name / "endpoint.json").write_text(text)
    assert [e.name for e in LocalEndpoints(tmp_path).list()] == ["housing"]
    state = tmp_path / "endpoints" / "housing" / "endpoint.json"
    for broken in ['{"name": "hous', "[]", json.dumps(EARLIER | {"model": "housing"}), "{}"]:
        state.write_text(broken)
        with pytest.raises(UserError, match=f"{state} is not an endpoint record"):
            LocalEndpoints(tmp_path).describe("housing")
    state.write_text(json.dumps(EARLIER | {"container": "../../.."}))  # a folder of it is deleted
    with pytest.raises(UserError, match="a container name that is not one"):
        LocalEndpoints(tmp_path).list()
