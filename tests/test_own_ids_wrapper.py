"""The wrapper's side of subordinate ids, without a server: how it reads a range, the slot's uid inside
a small one, and the old way (with the reason in the probe) when newuidmap is missing or refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nonroot import ServerUser, owned_dir
from own_accounts import account, first_id, subordinate_ids
from server import REPO
from wrapper_jobs import prepare_workdir

from executors import wrapper
from executors.protocol import FrameDecoder, FrameKind, SandboxSpec, decode_exit_status, job_spec_bytes

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def ranged_user(server_user: ServerUser) -> Iterator[ServerUser]:
    """This worker's account with a range (tests/own_accounts.py); ``server_user`` only groups these
    tests with the other non-root ones."""
    with account("idsw") as user, subordinate_ids(user, first_id(1)):
        yield user


def test_without_newuidmap_the_probe_says_why(ranged_user: ServerUser) -> None:
    """With a range but no newuidmap on the wrapper's PATH, the probe still builds the sandbox (as the
    node user) and names the missing package."""
    with owned_dir(ranged_user) as base:
        (base / "bin").mkdir()
        for tool in ("bwrap", "setpriv"):
            (base / "bin" / tool).symlink_to(shutil.which(tool) or tool)
        ranged_user.own(base)
        argv = [sys.executable, "-I", "-S", str(REPO / "executors" / "wrapper.py"), "probe", str(base), "61000"]
        done = subprocess.run(
            argv, env={"PATH": str(base / "bin")}, capture_output=True, text=True, timeout=60,
            preexec_fn=ranged_user.become(),
        )  # fmt: skip
    verdict = json.loads(done.stdout.splitlines()[-1])
    assert (verdict["ok"], verdict["own_ids"]) == (True, None), done.stderr
    assert (
        verdict["own_ids_off"]
        == "newuidmap and newgidmap are not installed: install uidmap (apt-get install -y uidmap)"
    )


def test_when_newuidmap_fails_the_job_runs_as_before_and_the_probe_says_why(ranged_user: ServerUser) -> None:
    """A setuid newuidmap that refuses: the probe names its refusal, and a job still runs (as the node
    user, bwrap's own user namespace), its daemon having fallen back before the job started."""
    with owned_dir(ranged_user) as base:
        (base / "bin").mkdir()
        for tool in ("bwrap", "setpriv"):
            (base / "bin" / tool).symlink_to(shutil.which(tool) or tool)
        workdir = base / "job"
        prepare_workdir(workdir, b"", job_spec_bytes("id -u", 30.0, 0.5, {}, SandboxSpec()))
        ranged_user.own(base)
        for tool in ("newuidmap", "newgidmap"):  # root's and setuid, as the real ones (the shell ignores it)
            (base / "bin" / tool).write_text("#!/bin/sh\necho 'refused by the test' >&2\nexit 1\n")
            (base / "bin" / tool).chmod(0o4755)
        env = {"PATH": f"{base / 'bin'}:/usr/bin:/bin"}

        def wrapper_as_user(*args: str) -> subprocess.CompletedProcess[bytes]:
            argv = [sys.executable, "-I", "-S", str(workdir / "wrapper.py"), *args]
            return subprocess.run(argv, env=env, capture_output=True, timeout=60, preexec_fn=ranged_user.become())

        probe = wrapper_as_user("probe", str(base), "61000")
        assert wrapper_as_user("launch", str(workdir)).returncode == 0
        done = wrapper_as_user("follow", str(workdir), "0", "0")
    verdict = json.loads(probe.stdout.splitlines()[-1])
    assert (verdict["ok"], verdict["own_ids_off"]) == (True, "newuidmap failed: refused by the test"), verdict
    frames = FrameDecoder().feed(done.stdout)
    stdout = b"".join(f.payload for f in frames if f.kind is FrameKind.STDOUT).decode()
    assert (decode_exit_status(frames[-1].payload).exit_code, stdout) == (0, f"{ranged_user.uid}\n")


def test_a_range_is_read_by_name_or_uid_first_line_first(tmp_path: Path) -> None:
    """/etc/subuid lines name the user or its uid; the first well-formed one for it counts, others and
    broken ones are skipped."""
    listing = tmp_path / "subuid"
    listing.write_text("other:100000:65536\nnode:bad:1\nnode:200000:0\n1001:300000:1000\nnode:400000:65536\n")
    assert wrapper.subid_range(str(listing), ("1001", "node")) == (300000, 1000)
    assert wrapper.subid_range(str(listing), ("1002", "node")) == (400000, 65536)
    assert wrapper.subid_range(str(listing), ("1003", "nobody")) is None
    assert wrapper.subid_range(str(tmp_path / "missing"), ("1001",)) is None


def test_slot_uids_inside_stay_in_a_small_range() -> None:
    """JOB_UID_BASE + n is the uid inside when the range holds it; a smaller range wraps, one uid per slot."""
    assert [wrapper.OwnIds([(500000, 65536)] * 2, []).inside(61000 + n) for n in range(2)] == [61000, 61001]
    small = wrapper.OwnIds([(500000, 1000), (700000, 4000)], [])  # the smaller of the two counts
    assert [small.inside(61000 + n) for n in range(4)] == [1000, 1, 2, 3]
