"""docs/migrating.md: every ``sh`` block runs as written, in order, against a real server, from the
directory the server runs in, with an admin token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from server import OPEN_LIMITS, REPO, config_yaml, submit, wait_status

GUIDE = REPO / "docs" / "migrating.md"


def test_migration_guide_commands_run_as_written(server_factory, tmp_path: Path):
    """The mapped commands (tokens, jobs as JSON with jq, the admin_user hint, events, audit, node drain,
    config show --toml) all succeed against a server with one finished job."""
    server = server_factory(endpoint_limits=OPEN_LIMITS)
    with server.client(server.token("bob")) as bob:
        wait_status(bob, submit(bob, "print(1)\n", config_yaml("bob")).json()["job_id"], {"completed", "failed"})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gpuledger").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli.main "$@"\n')
    (bin_dir / "gpuledger").chmod(0o755)
    env = {
        **os.environ,
        **server.env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "GPULEDGER_URL": server.url,
        "GPULEDGER_TOKEN": server.admin_token or "",
    }
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    for block in blocks:
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block],
            cwd=server.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
