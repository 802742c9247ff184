"""What a researcher types, as the API reads it: job ids by any-case unique prefix (never another user's
job), ``user_id`` taken from the token, durations with units, typos of fields, and ``whoami``; on the app
in-process (tests/inprocess.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from inprocess import InProcess, in_process
from server import OPEN_LIMITS, Server, config_yaml, running, submit, wait_status


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    limits = {"max_expected_time": 7200, "rate_limit_per_minute": 0, "max_active_jobs_per_user": 100}
    with in_process(tmp_path_factory.mktemp("job_ids"), **limits) as app:
        yield app


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """For the expiry header, which the HTTP edge around the app adds (api/edge.py)."""
    with running(tmp_path_factory.mktemp("job_ids_edge"), endpoint_limits=OPEN_LIMITS) as srv:
        yield srv


def raw_config(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _shared(a: str, b: str) -> str:
    """The longest prefix two ids have in common."""
    size = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
    return a[:size]


def _submitted(server: InProcess, token: str, user: str, code: str = "print('hi')") -> str:
    with server.client(token) as client:
        answer = submit(client, code, config_yaml(user))
        assert answer.status_code == 200, answer.text
        job_id: str = answer.json()["job_id"]
        wait_status(client, job_id, {"completed", "failed"})
        return job_id


def test_a_lower_case_prefix_names_the_job_on_every_job_endpoint(server: InProcess) -> None:
    """status, results, logs, events and cancel take a unique prefix of the id, in any case."""
    token = server.token("carol")
    job_id = _submitted(server, token, "carol")
    prefix = job_id[:12].lower()
    with server.client(token) as client:
        assert client.get(f"/api/status/{prefix}").json()["job_id"] == job_id
        assert client.get(f"/api/results/{prefix}").json()["stdout"] == "hi\n"
        assert client.get(f"/api/jobs/{prefix}/logs").content == b"hi\n"
        assert client.get(f"/api/jobs/{prefix}/events").json()["job_id"] == job_id
        cancelled = client.post(f"/api/cancel/{prefix}")
        assert (cancelled.status_code, cancelled.json()["detail"]) == (409, "Job already completed")


def test_an_ambiguous_prefix_is_a_400_with_the_count_and_an_unknown_one_a_404(server: InProcess) -> None:
    """Two of my jobs under one prefix: 400 naming how many; a prefix of nothing: 404."""
    token = server.token("dave")
    first, second = _submitted(server, token, "dave"), _submitted(server, token, "dave")
    common = _shared(first, second)
    with server.client(token) as client:
        ambiguous = client.get(f"/api/status/{common}")
        assert ambiguous.status_code == 400
        assert "ambiguous" in ambiguous.json()["detail"]
        assert "matches 2 jobs" in ambiguous.json()["detail"]
        assert client.get(f"/api/status/{second[: len(common) + 1]}").json()["job_id"] == second
        assert client.get("/api/status/ZZZZZZZZ").status_code == 404
        assert client.get(f"/api/status/{second[:3]}").status_code == 404  # under MIN_PREFIX: a whole id


def test_a_prefix_never_reaches_or_reveals_another_users_job(server: InProcess) -> None:
    """Only the caller's jobs are candidates: eve's unique prefix of frank's job is a 404, and a prefix
    shared with frank's job names eve's own; the admin resolves either."""
    eve, frank = server.token("eve"), server.token("frank")
    franks = _submitted(server, frank, "frank")
    eves = _submitted(server, eve, "eve")
    with server.client(eve) as client:
        assert client.get(f"/api/status/{franks[:-1]}").status_code == 404
        assert client.post(f"/api/cancel/{franks[:-1]}").status_code == 404
        shared = _shared(franks, eves)
        assert client.get(f"/api/status/{shared}").json()["job_id"] == eves
    with server.client(server.admin_token) as admin:
        assert admin.get(f"/api/status/{franks[:-1]}").json()["job_id"] == franks


def test_user_id_is_the_tokens_by_default_and_a_mismatch_names_the_tokens_user(server: InProcess) -> None:
    """A config without user_id submits as the token's user; a wrong one is a 403 that says whose token it is."""
    token = server.token("grace")
    config = raw_config("competition_id: comp", "project_id: proj", "expected_time: 30")
    with server.client(token) as client:
        answer = submit(client, "pass", config)
        assert answer.status_code == 200, answer.text
        assert client.get(f"/api/status/{answer.json()['job_id']}").json()["user_id"] == "grace"
        refused = submit(client, "pass", config_yaml("heidi"))
        assert refused.status_code == 403
        detail = refused.json()["detail"]
        assert detail.startswith("Token does not belong to specified user_id: the token is grace's")


@pytest.mark.parametrize(
    ("written", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("1:00:00", 3600), ("1:30", 90), ("45", 45)]
)
def test_expected_time_takes_units_and_clock_notation(server: InProcess, written: str, seconds: int) -> None:
    """``expected_time: 1h`` (and 90s, 15m, 1:00:00) is read as seconds."""
    token = server.token("ivan")
    config = raw_config("competition_id: comp", "project_id: proj", f"expected_time: '{written}'")
    with server.client(token) as client:
        answer = submit(client, "pass", config)
        assert answer.status_code == 200, answer.text
        assert client.get(f"/api/status/{answer.json()['job_id']}").json()["expected_time"] == seconds


def test_a_duration_that_is_not_one_is_a_400_naming_the_forms(server: InProcess) -> None:
    """``expected_time: soon`` is refused with the forms a duration may take."""
    with server.client(server.token("judy")) as client:
        answer = submit(client, "pass", raw_config("competition_id: c", "project_id: p", "expected_time: soon"))
        assert answer.status_code == 400
        assert answer.json()["detail"].startswith("Invalid field expected_time: not a duration")
        assert "1h" in answer.json()["detail"]


def test_a_field_close_to_a_known_one_is_a_400_with_a_suggestion(server: InProcess) -> None:
    """``gpu: 2`` is refused with "did you mean `gpus`?" (the job would run on one GPU otherwise); a field
    far from every known one stays a warning."""
    with server.client(server.token("ken")) as client:
        typo = submit(client, "pass", config_yaml("ken", gpu=2))
        assert (typo.status_code, typo.json()["detail"]) == (400, "Unknown config field gpu: did you mean `gpus`?")
        far = submit(client, "pass", config_yaml("ken", notes="'first try'"))
        assert far.status_code == 200
        assert far.json()["warnings"] == ["Unknown config field ignored: notes"]


def test_whoami_and_every_answer_say_when_the_token_expires(real_server: Server) -> None:
    """``GET /api/whoami`` names the user, admin or not, and the expiry, also sent as a header."""
    with real_server.client(real_server.token("leo", days=2)) as client:
        answer = client.get("/api/whoami")
        body = answer.json()
        assert (body["user_id"], body["is_admin"]) == ("leo", False)
        assert body["expires_at"]
        assert answer.headers["x-token-expires-at"] == body["expires_at"]
        assert client.get("/api/jobs").headers["x-token-expires-at"] == body["expires_at"]
    with real_server.client(real_server.admin_token) as admin:
        assert admin.get("/api/whoami").json()["is_admin"] is True
