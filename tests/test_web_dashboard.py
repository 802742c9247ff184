"""The web dashboard in a real browser (chromium via Playwright) against the real server over HTTP."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import sign_in
from tests.server import OPEN_LIMITS, Server, config_yaml, running, submit, wait_status

SLEEP = "import time\ntime.sleep({})\n"
TALK = "import time\nprint('first line', flush=True)\ntime.sleep({})\nprint('second line', flush=True)\n"
WAIT_MS = 20_000
QUEUE_ROWS = 3  # the queue panel's rows (DASHBOARD_ACTIVE_JOBS): the test below queues more


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("web"),
        code_scanner_quick_mode=True,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=100,
        endpoint_limits=OPEN_LIMITS,
        dashboard_active_jobs=QUEUE_ROWS,
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: Server) -> httpx.Client:
    assert server.admin_token is not None
    return server.client(server.admin_token)


@pytest.fixture(scope="module")
def alice(server: Server) -> str:
    return server.token("alice")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    yield opened
    context.close()


def run_job(client: httpx.Client, user: str, code: str, **config: Any) -> str:
    answer = submit(client, code, config_yaml(user, **config))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["job_id"])


def idle(admin: httpx.Client) -> None:
    """Wait until no job is pending or running (each test starts from an idle node)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = admin.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
        if all(j["status"] not in ("pending", "running") for j in jobs):
            return
        time.sleep(0.1)
    raise AssertionError("jobs still active after 30 s")


def test_page_is_served_with_a_strict_csp_and_advertised(server: Server) -> None:
    """GET /dashboard is HTML with a CSP that allows no inline script; GET / names the page."""
    answer = httpx.get(f"{server.url}/dashboard")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "<script" not in answer.text.replace('<script type="module" src="/dashboard/static/app.js"></script>', "")
    assert httpx.get(f"{server.url}/").json()["endpoints"]["web_dashboard"] == "GET /dashboard"
    assert httpx.get(f"{server.url}/dashboard/static/uPlot.esm.js").status_code == 200


def test_admin_sees_a_job_go_pending_running_completed_live(server: Server, admin: httpx.Client, page: Any) -> None:
    """Without a reload, the jobs table shows a queued job pending, then running, then completed."""
    idle(admin)
    sign_in(page, server.url, server.admin_token or "")
    page.evaluate("window.__same_page = true")
    blocker = run_job(admin, "admin", SLEEP.format(5))
    wait_status(admin, blocker, {"running"})
    job = run_job(admin, "admin", SLEEP.format(2), competition="live-comp")
    cell = page.locator(f'tr[data-job="{job}"] .job-status')
    cell.filter(has_text="pending").wait_for()
    page.locator(f'#panel-queue a[title="{job}"]').wait_for()
    page.locator("#panel-queue td.factors", has_text="fair share").wait_for()  # the score's factors shown
    cell.filter(has_text="running").wait_for()
    page.locator('tr[data-node="local"] .badge', has_text="busy").wait_for()
    cell.filter(has_text="completed").wait_for()
    assert page.evaluate("window.__same_page") is True


def test_a_long_queue_shows_its_head_and_says_how_long_it_is(server: Server, admin: httpx.Client, page: Any) -> None:
    """The queue panel lists the first DASHBOARD_ACTIVE_JOBS pending jobs in order and says how many
    are pending; the rest is GET /api/queue's, page by page."""
    idle(admin)
    blocker = run_job(admin, "admin", SLEEP.format(5))
    wait_status(admin, blocker, {"running"})
    queued = [run_job(admin, "admin", SLEEP.format(0)) for _ in range(QUEUE_ROWS + 2)]
    panel = admin.get("/dashboard/data/queue").json()
    assert [row["job_id"] for row in panel["queue"]] == queued[:QUEUE_ROWS]
    assert panel["pending_total"] == QUEUE_ROWS + 2
    sign_in(page, server.url, server.admin_token or "")
    page.locator("#panel-queue p.more", has_text=f"The first {QUEUE_ROWS} of {QUEUE_ROWS + 2} pending jobs").wait_for()
    assert page.locator("#panel-queue tbody tr").count() == QUEUE_ROWS
    lanes = admin.get("/dashboard/data/lanes").json()
    assert (lanes["pending_drawn"], lanes["pending_total"]) == (QUEUE_ROWS, QUEUE_ROWS + 2)
    planned = {s["job_id"] for s in lanes["segments"] if s["planned"]}
    assert planned == set(queued[:QUEUE_ROWS])  # the head of the queue: its planned waits
    page.locator("#panel-lanes p.more", has_text=f"first {QUEUE_ROWS} of {QUEUE_ROWS + 2} pending jobs").wait_for()
    admin.post(f"/api/cancel/{blocker}")
    idle(admin)


def test_job_page_follows_the_log_live(server: Server, admin: httpx.Client, page: Any) -> None:
    """The job page streams the console while the job runs, says when it ended, and downloads the output."""
    idle(admin)
    job = run_job(admin, "admin", TALK.format(4))
    wait_status(admin, job, {"running"})
    sign_in(page, server.url, server.admin_token or "")
    page.goto(f"{server.url}/dashboard#/job/{job}")
    page.locator("#log-text", has_text="first line").wait_for()
    assert "second line" not in page.inner_text("#log-text")
    page.locator("#log-text", has_text="second line").wait_for()
    page.locator("#log-state", has_text="ended (completed)").wait_for()
    page.locator("#job-status .badge", has_text="completed").wait_for()
    page.locator("#job-events").get_by_text("job.finished", exact=True).wait_for()
    assert page.inner_text("#log-text").count("first line") == 1
    assert page.locator("#job-download").is_hidden()  # no results file: nothing to download


def test_job_page_shows_stderr_reason_duration_and_submission(
    server: Server, admin: httpx.Client, alice: str, page: Any
) -> None:
    """A failed job's page: its traceback in the stderr tab, "exit code 1", its duration, its code and
    config (to its owner), and no "Download results" when it wrote none."""
    idle(admin)
    job = run_job(server.client(alice), "alice", "print('out here')\nraise ValueError('boom in the job')\n")
    wait_status(admin, job, {"failed"})
    sign_in(page, server.url, alice)
    page.goto(f"{server.url}/dashboard#/job/{job}")
    page.locator("#job-status .badge", has_text="failed").wait_for()
    page.locator("#job-status dd", has_text="exit code 1").wait_for()
    page.locator("#log-text", has_text="out here").wait_for()
    assert page.locator("#err-text").is_hidden()
    page.click("#tab-stderr")
    page.locator("#err-text", has_text="ValueError: boom in the job").wait_for()
    assert page.locator("#log-text").is_hidden()
    page.locator("#job-code", has_text="boom in the job").wait_for()
    assert "alice" in page.inner_text("#job-config")
    durations = page.locator("#job-status .field", has_text="duration").inner_text()
    assert durations.split()[-1].endswith("s"), durations
    assert page.locator("#job-download").is_hidden()


def test_results_download_is_the_results_file(server: Server, admin: httpx.Client, page: Any) -> None:
    """ "Download results" gives the job's results file under its own name; the API has no such file for a
    job without one (404, never its stdout)."""
    idle(admin)
    code = "import json\nprint('stdout, not results')\njson.dump({'score': 0.93}, open('results.jsonl', 'w'))\n"
    job = run_job(admin, "admin", code)
    wait_status(admin, job, {"completed"})
    sign_in(page, server.url, server.admin_token or "")
    page.goto(f"{server.url}/dashboard#/job/{job}")
    page.locator("#job-status .badge", has_text="completed").wait_for()
    page.locator("#job-download:not([hidden])").wait_for()
    with page.expect_download() as download:
        page.click("#job-download")
    assert json.loads(Path(download.value.path()).read_text()) == {"score": 0.93}
    assert download.value.suggested_filename.endswith(".jsonl")
    plain = run_job(admin, "admin", "print('only stdout')\n")
    wait_status(admin, plain, {"completed"})
    answer = admin.get(f"/api/jobs/{plain}/results-file")
    assert answer.status_code == 404
    assert "has no results file" in answer.json()["detail"]


def test_cancel_button_cancels_a_running_job(server: Server, admin: httpx.Client, alice: str, page: Any) -> None:
    """A user cancels their own running job from its page; it ends cancelled."""
    idle(admin)
    job = run_job(server.client(alice), "alice", SLEEP.format(60))
    wait_status(admin, job, {"running"})
    sign_in(page, server.url, alice)
    page.goto(f"{server.url}/dashboard#/job/{job}")
    page.locator("#job-status .badge", has_text="running").wait_for()
    page.click("#job-cancel")
    page.locator("#job-status .badge", has_text="cancelled").wait_for()
    assert wait_status(admin, job, {"cancelled"})["status"] == "cancelled"


def test_slider_shows_a_node_busy_then_and_idle_now(server: Server, admin: httpx.Client, page: Any) -> None:
    """Dragging the slider to when a job ran shows its node busy; Live shows it idle again."""
    idle(admin)
    job = run_job(admin, "admin", SLEEP.format(1))
    wait_status(admin, job, {"completed"})
    events = admin.get(f"/api/jobs/{job}/events").json()["events"]
    started = next(e["position"] for e in events if e["type"] == "job.started")
    sign_in(page, server.url, server.admin_token or "")
    badge = page.locator('tr[data-node="local"] .badge')
    badge.filter(has_text="idle").wait_for()
    page.fill("#slider", str(started))
    badge.filter(has_text="busy").wait_for()
    page.locator("#asof-label", has_text=f"position {started}").wait_for()
    page.locator(f'tr[data-job="{job}"] .job-status', has_text="running").wait_for()
    page.click("#live")
    badge.filter(has_text="idle").wait_for()
    page.locator(f'tr[data-job="{job}"] .job-status', has_text="completed").wait_for()


def test_hostile_strings_are_shown_as_text(server: Server, admin: httpx.Client, page: Any) -> None:
    """A project id and console output full of markup are displayed, and none of it runs."""
    idle(admin)
    hostile = '"><img src=x onerror="window.__xss=1">'
    printed = "<script>window.__xss=2</script>" + '"><img src=x onerror="window.__xss=3">'
    config = {"competition_id": "xss", "project_id": hostile, "user_id": "admin", "expected_time": 30}
    answer = admin.post(
        "/api/submit?wait=false",
        files={
            "code": ("solution.py", f"print({printed!r})\n".encode()),
            "config_file": ("config.json", json.dumps(config).encode()),
        },
    )
    assert answer.status_code == 200, answer.text
    job = answer.json()["job_id"]
    wait_status(admin, job, {"completed"})
    sign_in(page, server.url, server.admin_token or "")
    page.goto(f"{server.url}/dashboard#/job/{job}")
    page.locator("#log-text", has_text="<script>window.__xss=2</script>").wait_for()
    page.locator("#job-status").get_by_text(hostile).wait_for()
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0


def test_a_user_cannot_see_another_users_job(server: Server, admin: httpx.Client, alice: str, page: Any) -> None:
    """Alice's table lists only her jobs, Bob's job page is 'not found', and his jobs filter is refused."""
    idle(admin)
    bob = server.token("bob")
    bobs = run_job(server.client(bob), "bob", "print('bob')\n", competition="bobs-comp")
    mine = run_job(server.client(alice), "alice", "print('alice')\n", competition="alices-comp")
    wait_status(admin, bobs, {"completed"})
    wait_status(admin, mine, {"completed"})
    sign_in(page, server.url, alice)
    page.locator(f'tr[data-job="{mine}"]').wait_for()
    assert page.locator(f'tr[data-job="{bobs}"]').count() == 0
    assert "bobs-comp" not in page.inner_text("main#overview")
    page.goto(f"{server.url}/dashboard#/job/{bobs}")
    page.locator("#job-status .error", has_text="not found").wait_for()
    forbidden = server.client(alice).get("/dashboard/data/jobs", params={"user": "bob"})
    assert forbidden.status_code == 403
    assert server.client(alice).get("/dashboard/data/users").status_code == 403


def test_signed_out_visitor_sees_only_the_anonymous_node_view(server: Server, admin: httpx.Client, page: Any) -> None:
    """Sign-out forgets the token: nodes show no job ids, the jobs table is gone, the nodes stay live."""
    idle(admin)
    job = run_job(admin, "admin", SLEEP.format(3))
    wait_status(admin, job, {"running"})
    sign_in(page, server.url, server.admin_token or "")
    page.locator('tr[data-node="local"]').get_by_text(job).wait_for()
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    page.locator('tr[data-node="local"]').get_by_text("a job").wait_for()
    assert job not in page.inner_text("#panel-nodes")
    assert not page.is_visible("#panel-jobs")
    assert page.evaluate("sessionStorage.length") == 0
    page.evaluate("window.__same_page = true")
    page.locator('tr[data-node="local"] .badge', has_text="idle").wait_for()
    assert page.evaluate("window.__same_page") is True
    wait_status(admin, job, {"completed"})


def test_jobs_filters_and_bad_filters(server: Server, admin: httpx.Client, alice: str) -> None:
    """The jobs endpoint filters by competition, user and status; a bad value is a 400 naming it."""
    idle(admin)
    job = run_job(server.client(alice), "alice", "print(1)\n", competition="filter-me")
    wait_status(admin, job, {"completed"})
    found = admin.get("/dashboard/data/jobs", params={"competition": "filter-me", "user": "alice"}).json()
    assert [j["job_id"] for j in found["jobs"]] == [job]
    assert (
        admin.get("/dashboard/data/jobs", params={"competition": "filter-me", "status": "failed"}).json()["jobs"] == []
    )
    every = admin.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
    for params, kept in (
        ({}, every),
        ({"user": "alice"}, [j for j in every if j["user_id"] == "alice"]),
        ({"status": "completed"}, [j for j in every if j["status"] == "completed"]),
        (
            {"user": "alice", "status": "completed"},
            [j for j in every if (j["user_id"], j["status"]) == ("alice", "completed")],
        ),
        ({"user": "nobody"}, []),
    ):  # the fold's counts (no count of rows) agree with the jobs themselves
        assert admin.get("/dashboard/data/jobs", params=params).json()["total"] == len(kept), params
    bad = admin.get("/dashboard/data/jobs", params={"since": "yesterday"})
    assert bad.status_code == 400
    assert "since" in bad.json()["detail"]
    assert admin.get("/dashboard/data/nodes", params={"as_of": "soon"}).status_code == 400
    assert httpx.get(f"{server.url}/dashboard/data/jobs").status_code == 401
    assert httpx.get(f"{server.url}/dashboard/data/jobs", params={"limit": 0}).status_code == 401  # auth first
    bad_token = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{server.url}/dashboard/data/nodes?as_of=soon", headers=bad_token).status_code == 401
    assert admin.get("/dashboard/data/jobs", params={"limit": 0}).status_code == 400


def test_every_page_and_asset_ships_in_the_wheel() -> None:
    """The package-data globs cover every dashboard file (flat folders: the globs do not recurse)."""
    web = Path(__file__).resolve().parent.parent / "api" / "web"
    patterns = tomllib.loads((web.parent.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for folder in ("static", "pages"):
        assert f"web/{folder}/*" in patterns["api"]
        assert all(path.is_file() for path in (web / folder).iterdir())
    assert (web / "static" / "uPlot.LICENSE").read_text().startswith("The MIT License")
