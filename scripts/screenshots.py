"""Regenerate the dashboard screenshots in docs/screenshots/ (one PNG per panel, and the whole page).

    PYTHONPATH=. python3 scripts/screenshots.py

Starts a real server on a temporary ledger, runs a few jobs for three users (one still running, one
queued, one failed), and photographs the page in Debian's chromium. Takes about half a minute.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser import CHROMIUM, sign_in  # noqa: E402  (the repository root is on the path now)
from tests.server import OPEN_LIMITS, Server, config_yaml, submit, wait_status  # noqa: E402

OUT = REPO / "docs" / "screenshots"
PANELS = {
    "nodes": "#panel-nodes",
    "queue": "#panel-queue",
    "jobs": "#panel-jobs",
    "lanes": "#panel-lanes",
    "utilisation": "#panel-util",
    "usage": "#panel-usage",
}


def job(server: Server, token: str, user: str, code: str, competition: str, expected: int = 30) -> str:
    with server.client(token) as client:
        answer = submit(client, code, config_yaml(user, competition=competition, expected=expected))
        answer.raise_for_status()
        return str(answer.json()["job_id"])


def populate(server: Server) -> tuple[str, str]:
    """A small history: finished, failed and cancelled jobs, then one running and one queued."""
    admin = server.admin_token or ""
    tokens = {user: server.token(user) for user in ("alice", "bob", "carol")}
    history = [
        ("alice", "import time\nprint('epoch 1 loss 0.41')\ntime.sleep(2)\n", "spaceship-titanic"),
        ("bob", "import time\ntime.sleep(1)\nraise SystemExit(3)\n", "house-prices"),
        ("carol", "import time\ntime.sleep(3)\nprint('done')\n", "digit-recognizer"),
        ("alice", "import time\ntime.sleep(1)\n", "spaceship-titanic"),
    ]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as client:
        for user, code, competition in history:
            wait_status(client, job(server, tokens[user], user, code, competition), {"completed", "failed"}, 60)
        long = "import time\nprint('training…', flush=True)\ntime.sleep(40)\n"
        running = job(server, tokens["bob"], "bob", long, "house-prices", 60)
        wait_status(client, job(server, tokens["alice"], "alice", long, "spaceship-titanic", 90), {"running"})
        wait_status(client, running, {"running"})
        queued = job(server, tokens["carol"], "carol", "print('next')\n", "digit-recognizer", 120)
        time.sleep(3)
    return running, queued


def shoot(page: Page, server: Server, running: str) -> None:
    sign_in(page, server.url, server.admin_token or "")
    page.select_option("#window", "300")
    page.locator('tr[data-node="local"] .badge', has_text="busy").first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
    for name, selector in PANELS.items():
        page.locator(selector).screenshot(path=str(OUT / f"{name}.png"))
    page.goto(f"{server.url}/dashboard#/job/{running}")
    page.locator("#log-text", has_text="training").wait_for()
    page.screenshot(path=str(OUT / "job.png"), full_page=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="gpuledger-shots-"))
    server = Server(
        root, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS, local_slots=2, max_active_jobs_per_user=5
    )
    server.start()
    try:
        running, _ = populate(server)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            shoot(page, server, running)
            browser.close()
    finally:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}) as client:
            for entry in client.get("/api/jobs", params={"status": "running"}).json()["jobs"]:
                client.post(f"/api/cancel/{entry['job_id']}")
        server.stop()
    print(f"screenshots in {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
