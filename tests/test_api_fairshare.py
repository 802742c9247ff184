"""The fair queue over real HTTP: usage orders the queue, factors in the status, policies as ledger events
through a restart and audit verify, the CLI's set-share, priority levels, and the queue as of a past point."""

from __future__ import annotations

import time
from typing import Any

import httpx
from server import config_yaml, run_cli, submit, wait_status

ENDED = {"completed", "failed", "cancelled"}


def _job(client: httpx.Client, user: str, seconds: float, **extra: Any) -> str:
    code = f"import time\ntime.sleep({seconds})\n"
    answer = submit(client, code, config_yaml(user, expected=60, **extra))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["job_id"])


def _accounts(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/api/admin/users")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["users"])


def test_heavy_recent_usage_waits_behind_a_light_user_who_submitted_later(server_factory: Any) -> None:
    """Given heavy ran a job, when heavy and then light queue behind a running job, then light's job is first
    (status and /api/queue show the factors), starts first, and the queue as of then still says so."""
    server = server_factory(local_slots=1, local_gpus=1, max_active_jobs_per_user=5)  # GPU time is charged
    heavy, light = server.token("heavy"), server.token("light")
    with server.client(heavy) as h, server.client(light) as lt, server.client(server.admin_token) as admin:
        wait_status(h, _job(h, "heavy", 1.0), ENDED)
        blocker = _job(h, "heavy", 2.0)
        wait_status(h, blocker, {"running"})
        later_heavy = _job(h, "heavy", 0.1)
        light_job = _job(lt, "light", 0.1)
        mine = wait_status(lt, light_job, {"pending"})
        theirs = h.get(f"/api/status/{later_heavy}").json()
        assert (mine["queue_position"], theirs["queue_position"]) == (0, 1)
        assert mine["fairshare"] == 1.0 > theirs["fairshare"]
        assert {"age", "priority", "score", "reason"} <= set(mine)
        queue = admin.get("/api/queue").json()
        assert [row["job_id"] for row in queue["queue"]] == [light_job, later_heavy]
        seen_at = queue["position"]
        ended = [wait_status(admin, job, ENDED) for job in (light_job, later_heavy)]
        assert ended[0]["started_at"] < ended[1]["started_at"]
        past = admin.get("/api/queue", params={"as_of": str(seen_at)}).json()
        assert [row["job_id"] for row in past["queue"]] == [light_job, later_heavy]
        assert past["live"] is False
        usage = admin.get("/api/dashboard").json()["fairshare"]["users"]
        assert usage["heavy"]["usage_gpu_hours"] > usage["light"]["usage_gpu_hours"] > 0
        anonymous = lt.get("/api/queue", params={"as_of": str(seen_at)}).json()["queue"]
        assert [row["job_id"] for row in anonymous] == [light_job, None]


def test_a_policy_round_trips_through_restart_and_audit_verify(server_factory: Any) -> None:
    """Given an admin sets alice's share, priority and caps, when the server restarts, then they are as set,
    the per-user cap overrides the global one, and audit verify passes."""
    server = server_factory(local_slots=1, local_gpus=1, max_active_jobs_per_user=5)
    alice = server.token("alice")
    with server.client(server.admin_token) as admin:
        answer = admin.post(
            "/api/admin/users/alice/policy",
            params={"share": 3, "priority": 1, "max_active_jobs": 1, "reason": "thesis deadline"},
        )
        assert answer.status_code == 200, answer.text
        assert (answer.json()["share"], answer.json()["max_active_jobs"]) == (3.0, 1)
        assert admin.post("/api/admin/users/alice/policy", params={"share": 0}).status_code == 400
        unchanged = admin.post("/api/admin/users/alice/policy")  # nothing named: no event, the account as is
        assert (unchanged.status_code, unchanged.json()["policy_version"]) == (200, 1)
    with server.client(alice) as client:
        assert client.post("/api/admin/users/alice/policy", params={"share": 9}).status_code == 403
        first = _job(client, "alice", 5.0)
        wait_status(client, first, {"running"})
        refused = submit(client, "print(1)", config_yaml("alice"))
        assert refused.status_code == 429, refused.text
        client.post(f"/api/cancel/{first}")
        wait_status(client, first, ENDED)
    server.stop()
    server.start()
    with server.client(server.admin_token) as admin:
        account = _accounts(admin)["alice"]
        assert (account["share"], account["priority"], account["max_active_jobs"]) == (3.0, 1, 1)
        assert (account["set_by"], account["policy_version"]) == ("admin", 1)
        assert account["usage_gpu_hours"] > 0  # the cancelled job ran a little: its usage was kept
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_set_share_from_the_cli_reaches_the_running_server(server_factory: Any) -> None:
    """Given a running server, when the admin runs `gpuledger user set-share bob 2`, then the server's
    accounts show bob's share 2 with the reason, and `gpuledger user show bob` prints it."""
    server = server_factory()
    db = str(server.root / "gpuledger.db")
    done = run_cli(server.root, "user", "set-share", "bob", "2", "--reason", "two grants", "--db", db, env=server.env)
    assert done.returncode == 0, done.stderr
    with server.client(server.admin_token) as admin:
        deadline = time.monotonic() + 10
        while _accounts(admin).get("bob", {}).get("share") != 2.0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _accounts(admin)["bob"]["reason"] == "two grants"
    shown = run_cli(server.root, "user", "show", "bob", "--json", "--db", db, env=server.env)
    assert '"share": 2.0' in shown.stdout, shown.stdout + shown.stderr
    bad = run_cli(server.root, "user", "set-share", "bob", "0", "--db", db, env=server.env)
    assert bad.returncode != 0
    assert "share must be" in bad.stderr


def test_priority_low_is_accepted_and_asking_higher_is_refused(server_factory: Any) -> None:
    """Given carol at the default level 0, then `priority: low` is queued at -1, `high` is a 403 naming the
    field, a bad value a 400; once an admin allows level 1, `high` is accepted."""
    server = server_factory(local_slots=1, max_active_jobs_per_user=5)
    carol = server.token("carol")
    with server.client(carol) as client, server.client(server.admin_token) as admin:
        blocker = _job(client, "carol", 3.0)
        wait_status(client, blocker, {"running"})
        low = _job(client, "carol", 0.1, priority="low")
        assert client.get(f"/api/status/{low}").json()["priority"] == -1
        high = submit(client, "print(1)", config_yaml("carol", priority="high"))
        assert high.status_code == 403, high.text
        assert "priority" in high.json()["detail"]
        bad = submit(client, "print(1)", config_yaml("carol", priority="urgent"))
        assert bad.status_code == 400, bad.text
        assert "Invalid field priority" in bad.json()["detail"]
        assert admin.post("/api/admin/users/carol/policy", params={"priority": 1}).status_code == 200
        boosted = _job(client, "carol", 0.1, priority="high")
        assert client.get(f"/api/status/{boosted}").json()["priority"] == 1
        for job in (blocker, low, boosted):
            wait_status(client, job, ENDED)
