"""A real browser for the web dashboard's tests: Debian's chromium driven by Playwright.

Never a downloaded browser. Without chromium or Playwright the tests skip, unless
``GPULEDGER_REQUIRE_BROWSER=1`` (CI sets it), which makes them fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("GPULEDGER_CHROMIUM", "/usr/bin/chromium")


def _missing(message: str) -> None:
    if os.environ.get("GPULEDGER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} and GPULEDGER_REQUIRE_BROWSER=1")
    pytest.skip(message)


# Module scope: while Playwright's sync driver runs it owns an event loop, which async tests elsewhere
# must not meet; it is gone once the browser module is done.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:  # imported here: without Playwright the tests skip (or fail in CI), not the whole suite
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _missing(f"no chromium at {CHROMIUM}")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def sign_in(page: Any, url: str, token: str) -> None:
    """Open the dashboard and sign in through its form, as a person would."""
    page.goto(f"{url}/dashboard")
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#whoami:not([hidden])")
