"""The ``require_sandbox`` fixture: can this host build a job's sandbox (bwrap, namespaces)?

Asked through the wrapper's own ``probe``, the check the server makes at start (a job cgroup below
the default JOB_CGROUP_PARENT included). Without a sandbox the tests that run jobs skip, unless
``GPULEDGER_REQUIRE_SANDBOX=1`` (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WRAPPER = Path(__file__).resolve().parent.parent / "executors" / "wrapper.py"


@pytest.fixture(scope="session")
def require_sandbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("sandbox-probe")
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(WRAPPER), "probe", str(root), "61000", "gpuledger"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if answer.get("ok"):
        return
    message = f"no job sandbox on this host: {answer.get('reason') or done.stderr.strip()}"
    if os.environ.get("GPULEDGER_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"{message} and GPULEDGER_REQUIRE_SANDBOX=1")
    pytest.skip(message)
