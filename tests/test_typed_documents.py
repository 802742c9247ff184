"""The dashboard, queue, accounts and web panel documents: typed, described field by field, same keys on the wire.

A seeded server (a finished job with a scanner finding, a running one, two queued, a share set)
answers each document; its keys, nested and in order, must match tests/typed_documents.json
(recorded from the untyped dicts these replaced), and the OpenAPI document must name exactly those
fields (a map of untyped values counts as undescribed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, running, submit, wait_status

SHAPES = Path(__file__).with_name("typed_documents.json")
SLEEP = "import time\ntime.sleep(60)\n"
# (method, path, params, caller): each document this area answers
DOCUMENTS = [
    ("get", "/api/dashboard", {}, "admin"),
    ("get", "/api/dashboard/active", {}, "admin"),
    ("get", "/api/dashboard/users", {}, "admin"),
    ("get", "/api/queue", {}, "alice"),
    ("get", "/api/admin/users", {}, "admin"),
    ("post", "/api/admin/users/{user_id}/policy", {"share": "2"}, "admin"),
    ("get", "/api/quota", {}, "alice"),
    ("get", "/dashboard/data/ledger", {}, "admin"),
    ("get", "/dashboard/data/nodes", {}, "admin"),
    ("get", "/dashboard/data/queue", {}, "admin"),
    ("get", "/dashboard/data/jobs", {}, "admin"),
    ("get", "/dashboard/data/lanes", {}, "admin"),
    ("get", "/dashboard/data/utilisation", {}, "admin"),
    ("get", "/dashboard/data/usage", {}, "admin"),
    ("get", "/dashboard/data/users", {}, "admin"),
]
BY_ID = {"user_statistics", "users"}  # objects keyed by user id: their values' keys are the shape


def shape(value: Any, key: str = "") -> Any:
    """The keys of a document in their order, nested: a list's elements merged into one shape, values dropped."""
    if isinstance(value, dict):
        if key in BY_ID and all(isinstance(v, dict) for v in value.values()):
            return {"*": merged([shape(v) for v in value.values()])}
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [merged([shape(v) for v in value])]
    return None


def merged(shapes: list[Any]) -> Any:
    lists = [s for s in shapes if isinstance(s, list)]
    if lists:
        return [merged([s[0] for s in lists])]
    objects = [s for s in shapes if isinstance(s, dict)]
    if not objects:
        return None
    keys = list(dict.fromkeys(k for s in objects for k in s))
    return {k: merged([s[k] for s in objects if k in s]) for k in keys}


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every document of DOCUMENTS on a seeded ledger, by path, and the server's OpenAPI document."""
    with running(
        tmp_path_factory.mktemp("typed"),
        code_scanner_quick_mode=True,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=100,
        endpoint_limits=OPEN_LIMITS,
    ) as server:
        yield _seeded(server)


def _seeded(server: Server) -> tuple[dict[str, Any], dict[str, Any]]:
    alice = server.token("alice")
    with server.client(server.admin_token) as admin, server.client(alice) as client:
        done = submit(client, "import http.client\nprint('hi')\n", config_yaml("alice"), wait=True).json()
        assert done["status"] == "completed", done
        ids = [submit(client, SLEEP, config_yaml("alice", expected=120)).json()["job_id"] for _ in range(3)]
        try:
            wait_status(client, ids[0], {"running"})
            wait_queued(client, 2)
            answers = {}
            for method, path, params, caller in DOCUMENTS:
                http: httpx.Client = admin if caller == "admin" else client
                response = http.request(method, path.format(user_id="alice"), params=params)
                assert response.status_code == 200, (path, response.text)
                answers[path] = response.json()
            answers["/api/dashboard?as_of"] = admin.get("/api/dashboard", params={"as_of": "3"}).json()
            schema = admin.get("/schema").json()
        finally:
            for job_id in ids:
                admin.post(f"/api/cancel/{job_id}")
    return answers, schema


def wait_queued(client: httpx.Client, count: int, timeout: float = 20) -> None:
    """Until the plan holds ``count`` queued jobs (each is scanned first)."""
    deadline = time.monotonic() + timeout
    while client.get("/api/queue").json()["total"] < count:
        assert time.monotonic() < deadline, "the jobs never reached the queue"
        time.sleep(0.05)


def test_documents_keep_their_keys(documents: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Each document has the nested keys the untyped dicts had, in their order (tests/typed_documents.json)."""
    answers, _ = documents
    shapes = {path: shape(body) for path, body in answers.items()}
    assert json.dumps(shapes, indent=1) == json.dumps(json.loads(SHAPES.read_text()), indent=1)


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The object branch of a schema: its $ref followed, a null branch of oneOf left out."""
    if "$ref" in schema:
        return resolve(spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], spec)
    branches = [b for b in schema.get("oneOf", []) if b.get("type") != "null"]
    return resolve(branches[0], spec) if len(branches) == 1 else schema


def response_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    answer = spec["paths"][path][method]["responses"]
    return resolve(answer["200"]["content"]["application/json"]["schema"], spec)


def described_keys(value: Any, schema: dict[str, Any], spec: dict[str, Any], where: str) -> None:
    """Each object in ``value`` has exactly the properties its schema names, all the way down."""
    schema = resolve(schema, spec)
    if isinstance(value, dict) and "properties" in schema:
        assert set(value) == set(schema["properties"]), where
        for key, item in value.items():
            described_keys(item, schema["properties"][key], spec, f"{where}.{key}")
    elif isinstance(value, dict) and schema.get("additionalProperties"):  # a map by id, its values typed
        for key, item in value.items():
            described_keys(item, schema["additionalProperties"], spec, f"{where}[{key}]")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            described_keys(item, schema["items"], spec, f"{where}[]")
    elif isinstance(value, dict):
        raise AssertionError(f"{where}: an object the schema does not describe field by field")


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _, _ in DOCUMENTS])
def test_openapi_describes_each_document_field_by_field(
    documents: tuple[dict[str, Any], dict[str, Any]], method: str, path: str
) -> None:
    """The 200 schema of each document names its properties, and the answer has exactly those, nested."""
    answers, spec = documents
    schema = response_schema(spec, method, path)
    assert schema.get("properties"), f"{path}: {schema}"
    described_keys(answers[path], schema, spec, path)
