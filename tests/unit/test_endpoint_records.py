"""A local endpoint's record keeps the model it serves as (group, version), and reads the records an
earlier smray wrote ("model": "group/version"), such as those in a user's home."""

import json

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
