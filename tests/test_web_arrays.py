"""The web dashboard's arrays in a real browser (chromium via Playwright): an array is one row in the
jobs panel, its page lists its tasks, and one button cancels them all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import sign_in
from tests.server import OPEN_LIMITS, Server, config_yaml, running

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("web_arrays"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        max_active_jobs_per_user=10,
    ) as srv:
        yield srv


def test_an_array_is_one_row_with_a_task_page_and_a_cancel_all_button(server: Server, browser: Any) -> None:
    """The jobs panel shows the array once; its page lists 5 tasks; Cancel all tasks ends every one."""
    token = server.token("ada")
    with server.client(token) as client:
        answer = client.post(
            "/api/arrays",
            params={"array": "0-4%1"},
            files={"code": ("s.py", b"import time\ntime.sleep(60)\n"), "config_file": ("c.yaml", config_yaml("ada"))},
        )
        assert answer.status_code == 200, answer.text
        array_id = answer.json()["array_id"]
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            sign_in(page, server.url, token)
            row = page.locator(f'#panel-jobs tr[data-array="{array_id}"]')
            row.wait_for()
            assert page.locator("#panel-jobs tr[data-job]").count() == 0  # no task on a line of its own
            row.locator("a").click()
            page.locator("#array-status tr[data-task]").nth(4).wait_for()
            assert page.locator("#array-status tr[data-task]").count() == 5
            page.click("#array-cancel")
            page.locator("#array-counts", has_text="5 cancelled").wait_for()
        finally:
            context.close()
        assert client.get(f"/api/arrays/{array_id}").json()["counts"]["cancelled"] == 5
