"""The docs stay true: every setting is documented, and the user guide's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec

from ledger.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_every_setting_is_documented_in_the_admin_guide():
    """Each field of Settings appears, upper-cased, in the admin guide's settings table."""
    guide = (DOCS / "admin-guide.md").read_text()
    missing = [f.name.upper() for f in msgspec.structs.fields(Settings) if f"`{f.name.upper()}`" not in guide]
    assert missing == []


def test_user_guide_examples_run_as_written(server_factory, tmp_path):
    """The guide's curl and Python examples work against a real server with a user's token."""
    server = server_factory(rate_limit_per_minute=10)
    env = {
        **os.environ,
        "GPULEDGER_URL": server.url,
        "GPULEDGER_TOKEN": server.token("reader"),
        "GPULEDGER_USER": "reader",
    }
    guide = (DOCS / "user-guide.md").read_text()
    shell = _blocks(guide, "sh")
    script = "set -euo pipefail\n" + "\n".join(shell[1:4])  # the first block only sets the variables
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert '"status":"completed"' in done.stdout
    assert "training..." in done.stdout
    assert '"score": 0.93' in done.stdout or '\\"score\\": 0.93' in done.stdout
    python = _blocks(guide, "python")[0]
    ran = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "completed 0 hello from python\n"
