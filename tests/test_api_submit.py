"""Submit over real HTTP: each bad config field, sizes, identity rules of the original clients,
idempotency keys, and the token never kept in the ledger or the log."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit, wait_status

MAX_CODE = 4096
MAX_CONFIG = 512


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("submit"),
        code_scanner_quick_mode=True,
        max_code_bytes=MAX_CODE,
        max_config_bytes=MAX_CONFIG,
        max_expected_time=3600,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=100,
        endpoint_limits=OPEN_LIMITS,
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def alice(server: Server) -> str:
    return server.token("alice")


@pytest.fixture(scope="module")
def bob(server: Server) -> str:
    return server.token("bob")


def raw_config(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


BASE = ("competition_id: comp", "project_id: proj", "user_id: alice", "expected_time: 30")


def without(field: str) -> bytes:
    return raw_config(*(line for line in BASE if not line.startswith(field)))


def replaced(field: str, value: str) -> bytes:
    return raw_config(*(f"{field}: {value}" if line.startswith(field) else line for line in BASE))


BAD_CONFIGS = [
    pytest.param(without("expected_time"), "Missing required field: expected_time", id="no-expected_time"),
    pytest.param(without("competition_id"), "Missing required field: competition_id", id="no-competition_id"),
    pytest.param(without("project_id"), "Missing required field: project_id", id="no-project_id"),
    pytest.param(b"competition_id: [unclosed\n", "Invalid YAML format: ", id="bad-yaml"),
    pytest.param(b"- just\n- a list\n", "Invalid YAML format: ", id="not-a-mapping"),
    pytest.param(b"\xff\xfe\x00config", "Invalid YAML format: ", id="config-not-utf8"),
    pytest.param(replaced("competition_id", "'../etc'"), "Invalid field competition_id", id="competition-path"),
    pytest.param(replaced("competition_id", "'-x'"), "Invalid field competition_id", id="competition-dash"),
    pytest.param(replaced("competition_id", "a" * 129), "Invalid field competition_id", id="competition-long"),
    pytest.param(replaced("expected_time", "0"), "Invalid field expected_time", id="expected-zero"),
    pytest.param(replaced("expected_time", "3601"), "Invalid field expected_time", id="expected-over-max"),
    pytest.param(replaced("expected_time", "'ten'"), "Invalid field expected_time", id="expected-text"),
    pytest.param(replaced("expected_time", "1.5"), "Invalid field expected_time", id="expected-float"),
    pytest.param(replaced("project_id", "''"), "Invalid field project_id", id="project-empty"),
]


@pytest.mark.parametrize(("config", "detail"), BAD_CONFIGS)
def test_each_bad_config_field_is_a_400_naming_it(server: Server, alice: str, config: bytes, detail: str) -> None:
    """A missing or malformed config field is a 400 whose detail names the field."""
    with server.client(alice) as client:
        answer = submit(client, "pass", config)
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"].startswith(detail)


def test_code_that_is_not_utf8_is_a_400(server: Server, alice: str) -> None:
    """Code bytes that are not UTF-8 text are refused with a 400 that says so."""
    with server.client(alice) as client:
        answer = submit(client, b"print('x')\n\xff\xfe\n", config_yaml("alice"))
        assert answer.status_code == 400
        assert "UTF-8" in answer.json()["detail"]


def test_missing_parts_are_a_400(server: Server, alice: str) -> None:
    """A multipart body without the code or the config part is a 400 naming the missing part."""
    with server.client(alice) as client:
        no_code = client.post("/api/submit?wait=false", files={"config_file": ("c.yaml", config_yaml("alice"))})
        assert (no_code.status_code, no_code.json()["detail"]) == (400, "Missing required file: code")
        no_config = client.post("/api/submit?wait=false", files={"code": ("s.py", b"pass")})
        assert (no_config.status_code, no_config.json()["detail"]) == (400, "Missing required file: config_file")


def test_code_over_max_code_bytes_is_a_413(server: Server, alice: str) -> None:
    """Code one byte over MAX_CODE_BYTES is a 413; exactly at the limit it is accepted."""
    with server.client(alice) as client:
        answer = submit(client, "#" * (MAX_CODE + 1), config_yaml("alice"))
        assert answer.status_code == 413
        assert "Code file too large" in answer.json()["detail"]
        at_limit = submit(client, "#" * MAX_CODE, config_yaml("alice"), wait=True)
        assert (at_limit.status_code, at_limit.json()["status"]) == (200, "completed")


def test_config_over_max_config_bytes_is_a_413(server: Server, alice: str) -> None:
    """A config over MAX_CONFIG_BYTES is a 413 before it is parsed."""
    with server.client(alice) as client:
        padding = "#" + "x" * MAX_CONFIG
        answer = submit(client, "pass", config_yaml("alice") + padding.encode())
        assert answer.status_code == 413
        assert "Config file too large" in answer.json()["detail"]


def test_unknown_config_keys_are_ignored_and_reported(server: Server, alice: str) -> None:
    """Unknown config keys do not fail the submit; the answer lists them in warnings."""
    with server.client(alice) as client:
        answer = submit(client, "pass", config_yaml("alice", gpu_count=2), wait=True)
        assert answer.status_code == 200
        assert answer.json()["warnings"] == ["Unknown config field ignored: gpu_count"]


def test_critical_scanner_finding_rejects_the_submission(server: Server, alice: str) -> None:
    """Code that runs a shell command is refused at once with the scanner's 400."""
    with server.client(alice) as client:
        before = len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"])
        answer = submit(client, 'import os\nos.system("id")\n', config_yaml("alice"))
        assert answer.status_code == 400
        assert answer.json()["detail"].startswith("Code security check failed: ")
        assert "job_id" not in answer.json()
        assert len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"]) == before  # nothing was kept


def test_no_token_at_all_is_a_401(server: Server) -> None:
    """A submit with neither a header nor a config token is a 401 with WWW-Authenticate."""
    with server.client() as client:
        answer = submit(client, "pass", config_yaml("alice"))
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"


def test_config_token_without_header_is_accepted(server: Server, alice: str) -> None:
    """An original client (JSON config carrying the token, no Authorization header) can submit."""
    config = json.dumps(
        {"competition_id": "comp", "project_id": "proj", "user_id": "alice", "expected_time": 30, "token": alice}
    ).encode()
    with server.client() as anonymous:
        answer = anonymous.post(
            "/api/submit?wait=true", files={"code": ("s.py", b"print(1)"), "config_file": ("config.json", config)}
        )
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["stdout"]) == ("completed", "1\n")
        assert answer.json()["warnings"] == []
    with server.client(alice) as client:
        assert client.get(f"/api/status/{answer.json()['job_id']}").json()["status"] == "completed"


def test_header_and_config_tokens_of_different_users_are_a_403(server: Server, alice: str, bob: str) -> None:
    """When both a header token and a config token are given, they must be the same user's."""
    with server.client(bob) as client:
        answer = submit(client, "pass", config_yaml("alice", token=alice))
        assert answer.status_code == 403


def test_config_user_id_of_someone_else_is_a_403(server: Server, alice: str) -> None:
    """Nobody submits as someone else: a config user_id that is not the token's user is a 403."""
    with server.client(alice) as client:
        answer = submit(client, "pass", config_yaml("bob"))
        assert answer.status_code == 403
        assert answer.json()["detail"].startswith("Token does not belong to specified user_id")  # old clients match it
    with server.client(server.admin_token) as admin:
        answer = submit(admin, "pass", config_yaml("bob"))
        assert answer.status_code == 403
        assert answer.json()["detail"].startswith("Token does not belong to specified user_id")


def test_user_id_filter_is_403_for_a_user_and_a_filter_for_an_admin(server: Server, alice: str, bob: str) -> None:
    """?user_id= of another user is a 403 for a user; for an admin it filters the list."""
    with server.client(bob) as client:
        bobs = submit(client, "pass", config_yaml("bob"), wait=True).json()["job_id"]
        refused = client.get("/api/jobs", params={"user_id": "alice"})
        assert (refused.status_code, refused.json()["detail"]) == (403, "Token does not belong to specified user_id")
        assert client.get("/api/jobs", params={"user_id": "bob"}).status_code == 200
    with server.client(alice) as client:
        submit(client, "pass", config_yaml("alice"), wait=True)
    with server.client(server.admin_token) as admin:
        only_bob = admin.get("/api/jobs", params={"user_id": "bob"}).json()["jobs"]
        assert only_bob
        assert {j["user_id"] for j in only_bob} == {"bob"}
        assert bobs in [j["job_id"] for j in only_bob]
        everyone = {j["user_id"] for j in admin.get("/api/jobs").json()["jobs"]}
        assert {"alice", "bob"} <= everyone


def test_token_is_never_stored_in_events_or_logged(server: Server, alice: str) -> None:
    """A config token is neither in the job's events nor in any ledger row nor in server.log."""
    config = config_yaml("alice", token=alice)
    with server.client() as anonymous:
        job_id = submit(anonymous, "pass", config, wait=True).json()["job_id"]
    with server.client(alice) as client:
        events = client.get(f"/api/jobs/{job_id}/events")
        assert events.status_code == 200
        assert alice not in events.text
        assert "token" not in events.json()["events"][0]["event"]["config"]
    assert alice not in (server.root / "server.log").read_text()
    dumped = run_cli(server.root, "events", "--job", job_id, "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert dumped.returncode == 0
    assert job_id in dumped.stdout
    assert alice not in dumped.stdout
    assert alice.encode() not in (server.root / "gpuledger.db").read_bytes()


def test_same_idempotency_key_twice_is_one_job(server: Server, alice: str) -> None:
    """The same Idempotency-Key and payload again returns the same job, not a second one."""
    with server.client(alice) as client:
        headers = {"Idempotency-Key": "key-once"}
        first = submit(client, "print('once')", config_yaml("alice"), headers=headers)
        second = submit(client, "print('once')", config_yaml("alice"), headers=headers)
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.json()["job_id"] == second.json()["job_id"]
        wait_status(client, first.json()["job_id"], {"completed"})
        once = [
            j
            for j in client.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
            if j["job_id"] == first.json()["job_id"]
        ]
        assert len(once) == 1
        started = [
            e
            for e in client.get(f"/api/jobs/{first.json()['job_id']}/events").json()["events"]
            if e["type"] == "job.submitted"
        ]
        assert len(started) == 1


def test_same_idempotency_key_with_another_body_is_a_409(server: Server, alice: str) -> None:
    """Reusing an Idempotency-Key for a different payload is a 409 and submits nothing."""
    with server.client(alice) as client:
        headers = {"Idempotency-Key": "key-twice"}
        first = submit(client, "print(1)", config_yaml("alice"), headers=headers, wait=True)
        before = len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"])
        other = submit(client, "print(2)", config_yaml("alice"), headers=headers)
        assert first.status_code == 200
        assert other.status_code == 409
        assert len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_job_does_not_depend_on_the_waiting_request(server: Server, alice: str) -> None:
    """A wait=true client that hangs up early does not stop the job: it still completes."""
    with server.client(alice) as client:
        code = "import time\ntime.sleep(1)\nprint('still here')\n"
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                "/api/submit?wait=true",
                timeout=0.5,
                files={"code": ("s.py", code.encode()), "config_file": ("c.yaml", config_yaml("alice"))},
            )
        newest = client.get("/api/jobs", params={"limit": 1}).json()["jobs"][0]
        done = wait_status(client, newest["job_id"], {"completed", "failed", "cancelled"}, timeout=20)
        assert done["status"] == "completed"
        assert client.get(f"/api/results/{newest['job_id']}").json()["stdout"] == "still here\n"


def test_ledger_verifies_after_the_submissions(server: Server) -> None:
    """`gpuledger audit verify` exits 0 on the ledger after every accepted and refused submit above."""
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr
