"""The job wrapper protocol end to end: real processes in temporary workdirs, driven through
executors.protocol command strings and the executors.local_process transport."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wrapper_jobs import (
    PY,
    encode_frame,
    follow_command,
    launch_command,
    prepare_workdir,
    processes_named,
    sandbox_members,
)

from executors.local_process import run_local, stream_local
from executors.protocol import (
    LAUNCH_NEVER_STARTED,
    SOLUTION_NAME,
    STATUS_NAME,
    WORK_NAME,
    WRAPPER_SOURCE,
    ExitStatus,
    Frame,
    FrameDecoder,
    FrameKind,
    ProtocolError,
    SandboxSpec,
    Started,
    WrapperState,
    cancel_command,
    decode_exit_status,
    decode_lost,
    decode_started,
    decode_wrapper_state,
    job_spec_bytes,
    render_job_command,
    run_command,
    status_command,
)

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("require_sandbox")]
# The server's Python, read-only in the sandbox, so that solutions can run with it.
SANDBOX = SandboxSpec(readonly_paths=[sys.prefix, sys.base_prefix])


# --- helpers -------------------------------------------------------------------------------------------


def make_job(
    tmp_path: Path,
    command: str,
    *,
    time_limit_s: float = 30.0,
    grace_s: float = 0.5,
    env: dict[str, str] | None = None,
    solution: bytes = b"",
    sandbox: SandboxSpec = SANDBOX,
) -> Path:
    """The job's control directory; the job itself runs in its ``work/`` subdirectory."""
    workdir = tmp_path / "job"
    prepare_workdir(workdir, solution, job_spec_bytes(command, time_limit_s, grace_s, env or {}, sandbox))
    return workdir


async def launch(workdir: Path, python: str = PY) -> Started:
    rc, out, err = await run_local(launch_command(python, workdir), 15)
    assert rc == 0, err
    return decode_started(out)


async def follow(workdir: Path, out_offset: int = 0, err_offset: int = 0) -> tuple[bytes, bytes, Frame]:
    """Follow to the end; (stdout, stderr, the final STATUS or LOST frame)."""
    decoder, out, err, last = FrameDecoder(), bytearray(), bytearray(), None
    async with asyncio.timeout(20):
        async for chunk in stream_local(follow_command(PY, workdir, out_offset, err_offset)):
            for frame in decoder.feed(chunk):
                assert last is None, "nothing may follow the final frame"
                if frame.kind is FrameKind.STDOUT:
                    out += frame.payload
                elif frame.kind is FrameKind.STDERR:
                    err += frame.payload
                elif frame.kind in (FrameKind.STATUS, FrameKind.LOST):
                    last = frame
    assert decoder.pending == 0
    assert last is not None
    return bytes(out), bytes(err), last


async def run_job(
    tmp_path: Path,
    command: str,
    *,
    time_limit_s: float = 30.0,
    grace_s: float = 0.5,
    env: dict[str, str] | None = None,
    solution: bytes = b"",
) -> tuple[ExitStatus, bytes, bytes]:
    workdir = make_job(tmp_path, command, time_limit_s=time_limit_s, grace_s=grace_s, env=env, solution=solution)
    await launch(workdir)
    out, err, last = await follow(workdir)
    assert last.kind is FrameKind.STATUS
    return decode_exit_status(last.payload), out, err


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def proc_stat(pid: int) -> tuple[str, int] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2])


def running(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(name))
    return members


def solution_command(workdir: Path) -> str:
    job_dir = workdir / WORK_NAME
    return render_job_command(
        f"{shlex.quote(PY)} {{solution}}",
        solution=job_dir / SOLUTION_NAME,
        competition_id="c",
        results=job_dir / "results.jsonl",
        workdir=job_dir,
    )


# --- exit status ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 42])
async def test_exit_code_is_recorded(tmp_path: Path, code: int) -> None:
    """A job's exit code lands in status.json as is, with no signal."""
    status, _, _ = await run_job(tmp_path, f"exit {code}")
    assert (status.exit_code, status.signal) == (code, None)
    assert not status.timed_out
    assert not status.cancelled
    assert status.succeeded is (code == 0)


@pytest.mark.parametrize("command", ["kill -9 $$", f"{shlex.quote(PY)} -c 'import os; os.kill(os.getpid(), 9)'"])
async def test_death_by_signal_records_signal_not_exit_code(tmp_path: Path, command: str) -> None:
    """A job killed by signal 9 records signal=9 and exit_code=null."""
    status, _, _ = await run_job(tmp_path, command)
    assert (status.exit_code, status.signal) == (None, 9)


async def test_python_syntax_error_exits_1_with_message(tmp_path: Path) -> None:
    """A solution with a syntax error ends with exit 1 and the SyntaxError on stderr."""
    workdir = tmp_path / "job"
    status, _, err = await run_job(tmp_path, solution_command(workdir), solution=b"def broken(:\n")
    assert status.exit_code == 1
    assert b"SyntaxError" in err


async def test_print_reaches_stdout_exactly(tmp_path: Path) -> None:
    """print("x") in the solution yields exactly b"x\\n" on stdout and nothing on stderr."""
    workdir = tmp_path / "job"
    status, out, err = await run_job(tmp_path, solution_command(workdir), solution=b'print("x")\n')
    assert (status.exit_code, out, err) == (0, b"x\n", b"")


async def test_job_runs_in_workdir_with_env_from_the_spec_only(tmp_path: Path, monkeypatch) -> None:
    """The job's cwd is its workdir; its environment is job.json's over a neutral base, never the
    caller's (a secret in the wrapper's own environment stays out); stdin is empty."""
    monkeypatch.setenv("DATABASE_URL", "postgres://admin:hunter2@db/prod")
    env = {"GPULEDGER_TEST_VAR": "v a l", "CUDA_VISIBLE_DEVICES": "0"}
    command = 'pwd; printf "%s|%s|%s\\n" "$GPULEDGER_TEST_VAR" "$PATH" "$CUDA_VISIBLE_DEVICES"; env; cat'
    status, out, _ = await run_job(tmp_path, command, env=env)
    cwd, values, *environ = out.decode().splitlines()
    assert Path(cwd) == (tmp_path / "job" / WORK_NAME).resolve()
    assert values.split("|") == ["v a l", "/usr/local/bin:/usr/bin:/bin", "0"]
    assert "hunter2" not in out.decode()
    names = {line.split("=", 1)[0] for line in environ}
    assert names <= {"GPULEDGER_TEST_VAR", "CUDA_VISIBLE_DEVICES", "PATH", "HOME", "LANG", "TMPDIR", "USER"} | {
        "LOGNAME",
        "PWD",
        "SHLVL",
        "_",
    }
    assert status.exit_code == 0


# --- killing ----------------------------------------------------------------------------------------------


async def test_time_limit_kills_the_job_and_says_so(tmp_path: Path) -> None:
    """At the time limit the group gets TERM, status is timed_out, and status.json (not stderr) says why."""
    began = time.monotonic()
    status, out, err = await run_job(tmp_path, "echo started; sleep 30", time_limit_s=0.5, grace_s=0.5)
    assert time.monotonic() - began < 5
    assert status.timed_out
    assert not status.cancelled
    assert status.group_gone
    assert (status.exit_code, status.signal) == (None, signal.SIGTERM)
    assert out == b"started\n"
    assert status.notice == "job exceeded its time limit of 0.5 s and was killed"
    assert b"gpuledger" not in err  # the job's stderr is the job's alone: nothing there can be forged


async def test_cancel_kills_children_that_ignore_term(tmp_path: Path) -> None:
    """Cancel escalates to KILL after the grace period, and no process of the job survives."""
    workdir = make_job(tmp_path, "trap '' TERM; sleep 300 & sleep 300", grace_s=0.5)
    started = await launch(workdir)
    await wait_for(lambda: len(sandbox_members(started)) >= 3)  # bash and two sleeps
    members = sandbox_members(started)
    rc, out, _ = await run_local(cancel_command(PY, workdir), 15)
    assert rc == 0
    status = decode_exit_status(out)
    assert status.cancelled
    assert status.group_gone
    assert status.signal == signal.SIGKILL  # TERM was ignored, so only KILL could end it
    assert group_members(started.pgid) == []
    assert [pid for pid in members if running(pid)] == []
    pgrep = subprocess.run(["pgrep", "-g", str(started.pgid)], capture_output=True, text=True)
    assert [pid for pid in pgrep.stdout.split() if running(int(pid))] == []


@pytest.mark.parametrize(
    "escape",
    [
        "(exec -a {m} sleep 300) &",
        "setsid bash -c 'exec -a {m} sleep 300' &",  # a session of its own
        "(setsid bash -c '(exec -a {m} sleep 300) &' &)",  # double fork into a new session
    ],
)
async def test_children_left_behind_by_an_exiting_job_are_killed(tmp_path: Path, escape: str) -> None:
    """When the main process exits, whatever it left running is killed too, setsid and double forks
    included: the sandbox's PID namespace ends with the job."""
    marker = f"gpuledger-left-{uuid.uuid4().hex}"
    status, _, _ = await run_job(tmp_path, escape.format(m=marker) + "\nsleep 0.2\nexit 0")
    assert status.exit_code == 0
    assert status.group_gone
    await wait_for(lambda: processes_named(marker) == [], timeout=5)


async def test_cancel_before_launch_means_it_never_runs(tmp_path: Path) -> None:
    """A job cancelled before launch is recorded as cancelled and a later launch does not start it."""
    workdir = make_job(tmp_path, "touch ran")
    rc, out, _ = await run_local(cancel_command(PY, workdir), 15)
    assert rc == 0
    assert decode_exit_status(out).cancelled
    rc, out, _ = await run_local(launch_command(PY, workdir), 15)
    assert rc == LAUNCH_NEVER_STARTED
    assert decode_exit_status(out).started_at is None
    assert not (workdir / WORK_NAME / "ran").exists()


# --- output streaming ------------------------------------------------------------------------------------


async def test_follow_streams_20_mib_byte_identical(tmp_path: Path) -> None:
    """20 MiB of binary output streams through follow without hanging and byte for byte."""
    status, out, _ = await run_job(tmp_path, "head -c 20971520 /dev/urandom > expected.bin && cat expected.bin")
    assert status.exit_code == 0
    assert len(out) == 20 * 1024 * 1024
    assert out == (tmp_path / "job" / WORK_NAME / "expected.bin").read_bytes()


async def test_non_utf8_and_nul_bytes_are_preserved(tmp_path: Path) -> None:
    """Bytes pass through unchanged, invalid UTF-8 and NULs included, on both streams."""
    _, out, err = await run_job(tmp_path, r"printf 'a\377\000b\376\n'; printf '\000\200' >&2")
    assert out == b"a\xff\x00b\xfe\n"
    assert err == b"\x00\x80"


async def test_follow_resumes_from_offsets_without_loss_or_duplication(tmp_path: Path) -> None:
    """follow from (k, m) returns exactly the bytes after k and m."""
    command = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done"
    _, full_out, full_err = await run_job(tmp_path, command)
    workdir = tmp_path / "job"
    for k, m in [(0, 5), (1, 0), (123, 456), (len(full_out), len(full_err) - 1)]:
        out, err, last = await follow(workdir, k, m)
        assert (out, err) == (full_out[k:], full_err[m:])
        assert last.kind is FrameKind.STATUS


async def test_follow_killed_mid_job_and_restarted_picks_up(tmp_path: Path) -> None:
    """A follower killed mid-job and restarted at its offsets yields the whole output once."""
    workdir = make_job(tmp_path, "for i in $(seq 1 40); do echo line$i; sleep 0.05; done")
    await launch(workdir)
    decoder, first = FrameDecoder(), bytearray()
    async with contextlib.aclosing(stream_local(follow_command(PY, workdir, 0, 0))) as stream:
        async for chunk in stream:
            first += b"".join(f.payload for f in decoder.feed(chunk) if f.kind is FrameKind.STDOUT)
            if first:
                break
    assert not (workdir / STATUS_NAME).exists(), "the job should still be running at re-attach"
    rest, _, last = await follow(workdir, len(first), 0)
    assert bytes(first) + rest == b"".join(b"line%d\n" % i for i in range(1, 41))
    assert decode_exit_status(last.payload).exit_code == 0


async def test_follow_sends_heartbeats_while_quiet(tmp_path: Path) -> None:
    """A quiet running job still produces heartbeat frames, so a dead link can be told apart."""
    workdir = make_job(tmp_path, "sleep 2.5")
    await launch(workdir)
    kinds = []
    decoder = FrameDecoder()
    async for chunk in stream_local(follow_command(PY, workdir, 0, 0)):
        kinds += [frame.kind for frame in decoder.feed(chunk)]
    assert FrameKind.HEARTBEAT in kinds
    assert kinds[-1] is FrameKind.STATUS


# --- launch, status, re-attach ------------------------------------------------------------------------------


async def test_launch_twice_starts_the_job_once(tmp_path: Path) -> None:
    """Concurrent and repeated launches all report the same process, and the job runs once."""
    workdir = make_job(tmp_path, "echo run >> runs; sleep 0.3")
    launches = await asyncio.gather(*(launch(workdir) for _ in range(3)))
    again = await launch(workdir)
    assert {s.pid for s in [*launches, again]} == {launches[0].pid}
    await follow(workdir)
    assert (workdir / WORK_NAME / "runs").read_text() == "run\n"


async def run_frames(workdir: Path, out_offset: int = 0, err_offset: int = 0) -> list[Frame]:
    decoder, frames = FrameDecoder(), []
    async with asyncio.timeout(20):
        async for chunk in stream_local(run_command(PY, workdir, out_offset, err_offset)):
            frames.extend(decoder.feed(chunk))
    return frames


async def test_run_launches_then_follows_in_one_command(tmp_path: Path) -> None:
    """`run` sends STARTED first, then the output, then the status; run again (re-attach) starts nothing."""
    workdir = make_job(tmp_path, "echo run >> runs; echo out; sleep 0.2; echo err >&2")
    frames = await run_frames(workdir)
    assert frames[0].kind is FrameKind.STARTED
    assert frames[-1].kind is FrameKind.STATUS
    started = decode_started(frames[0].payload)
    out = b"".join(f.payload for f in frames if f.kind is FrameKind.STDOUT)
    assert (out, decode_exit_status(frames[-1].payload).exit_code) == (b"out\n", 0)
    again = await run_frames(workdir, out_offset=len(out))
    assert decode_started(again[0].payload).pid == started.pid
    assert [f.kind for f in again if f.kind is FrameKind.STDOUT] == []
    assert (workdir / WORK_NAME / "runs").read_text() == "run\n"


async def test_status_reports_not_started_running_finished(tmp_path: Path) -> None:
    """status says not_started, then running (with sizes), then finished with the exit status."""
    workdir = make_job(tmp_path, "echo hello; sleep 30")

    async def state() -> WrapperState:
        rc, out, _ = await run_local(status_command(PY, workdir), 15)
        assert rc == 0
        return decode_wrapper_state(out)

    assert (await state()).state == "not_started"
    started = await launch(workdir)
    await wait_for(lambda: (workdir / "stdout").stat().st_size == 6)
    running_state = await state()
    assert running_state.state == "running"
    assert running_state.started == started
    assert running_state.stdout_size == 6
    await run_local(cancel_command(PY, workdir), 15)
    finished = await state()
    assert finished.state == "finished"
    assert finished.status is not None
    assert finished.status.cancelled


@pytest.mark.parametrize("mode", ["bwrap", "none"])
async def test_dead_wrapper_is_lost_and_nothing_of_the_job_survives(tmp_path: Path, mode: str) -> None:
    """If the daemon dies, status and follow say lost, and cancel records the end. In the sandbox the
    job dies with its daemon (nothing runs unsupervised); without it, cancel kills the orphaned group."""
    workdir = make_job(tmp_path, "sleep 300", grace_s=0.2, sandbox=SandboxSpec(mode=mode))
    started = await launch(workdir)
    members = sandbox_members(started) if mode == "bwrap" else group_members(started.pgid)
    assert members != []
    os.kill(started.wrapper_pid, signal.SIGKILL)
    await wait_for(lambda: not running(started.wrapper_pid))
    rc, out, _ = await run_local(status_command(PY, workdir), 15)
    assert decode_wrapper_state(out).state == "lost"
    _, _, last = await follow(workdir)
    assert last.kind is FrameKind.LOST
    assert "wrapper" in decode_lost(last.payload).reason
    if mode == "bwrap":
        await wait_for(lambda: not any(running(pid) for pid in members))
    else:
        assert group_members(started.pgid) != []
    rc, out, _ = await run_local(cancel_command(PY, workdir), 15)
    status = decode_exit_status(out)
    assert rc == 0
    assert status.cancelled
    assert status.group_gone
    assert status.error
    assert group_members(started.pgid) == []
    assert not any(running(pid) for pid in members)


def python38() -> str | None:
    for candidate in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))):
        return candidate
    return None


def test_wrapper_is_python38_stdlib_only() -> None:
    """The wrapper parses as Python 3.8 and imports nothing outside the standard library."""
    tree = ast.parse(WRAPPER_SOURCE, feature_version=(3, 8))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= sys.stdlib_module_names


@pytest.mark.skipif(python38() is None, reason="no Python 3.8 interpreter on this host")
async def test_wrapper_runs_under_python38(tmp_path: Path) -> None:
    """A node with only python3.8 can launch, follow and finish a job."""
    workdir = make_job(tmp_path, "echo hi; exit 7")
    python = python38()
    assert python is not None
    await launch(workdir, python)
    rc, out, _ = await run_local(follow_command(python, workdir, 0, 0), 15)
    frames = FrameDecoder().feed(out)
    assert rc == 0
    assert frames[0] == Frame(FrameKind.STDOUT, b"hi\n")
    assert decode_exit_status(frames[-1].payload).exit_code == 7


# --- rendering the job command ------------------------------------------------------------------------------

NASTY = ["x'; touch /tmp/pwned; '", "a b", '"$(id)"', "`id`", "$HOME", "back\\slash", "new\nline", "-rf", ""]


def render(template: str, competition_id: str = "c", solution: str = "/w/solution.py") -> str:
    return render_job_command(
        template, solution=solution, competition_id=competition_id, results="/w/results.jsonl", workdir="/w"
    )


def test_render_quotes_every_placeholder_as_one_word() -> None:
    """Each placeholder becomes exactly one shell word holding the value, whatever it contains."""
    for value in NASTY:
        rendered = render("python3 {solution} {competition_id} {results} {workdir}", value, value)
        assert shlex.split(rendered) == ["python3", value, value, "/w/results.jsonl", "/w"]


def test_render_injection_attempt_stays_inert(tmp_path: Path) -> None:
    """`x'; touch PATH; '` as competition_id is echoed as text by bash and creates no file."""
    target = tmp_path / "pwned"
    evil = f"x'; touch {target}; '"
    result = subprocess.run(["bash", "-c", render("echo {competition_id}", evil)], capture_output=True)
    assert result.stdout == evil.encode() + b"\n"
    assert not target.exists()
    assert shlex.split(render("echo {competition_id}", "x'; touch /tmp/pwned; '")) == [
        "echo",
        "x'; touch /tmp/pwned; '",
    ]


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=40))
def test_render_round_trips_any_text_through_bash(value: str) -> None:
    """For any text, bash receives the rendered competition_id as that exact argument."""
    result = subprocess.run(["bash", "-c", render("printf %s {competition_id}", value)], capture_output=True)
    assert result.stdout.decode() == value


@pytest.mark.parametrize(
    "template",
    [
        "run {python}",
        "run {0}",
        "run {}",
        "run {solution!r}",
        "run {solution:>9}",
        "run {solution.name}",
        "run {solution",
        "run }",
    ],
)
def test_render_rejects_unknown_or_malformed_placeholders(template: str) -> None:
    """An unknown, positional, converted or unbalanced placeholder is a clear ValueError."""
    with pytest.raises(ValueError, match=r"placeholder|template"):
        render(template)


@pytest.mark.parametrize(
    "template",
    [
        'run "{solution}"',
        "run '{solution}'",
        "run `cat {solution}`",
        "run ${solution}",
        "run \\{solution}",
        'run "a\\" {solution}"',
    ],
)
def test_render_rejects_placeholders_inside_quotes(template: str) -> None:
    """A placeholder the shell would re-read (inside quotes, backticks, after $ or \\) is refused."""
    with pytest.raises(ValueError, match="bare word"):
        render(template)


def test_render_keeps_literal_quotes_and_braces() -> None:
    """Closed quotes before a placeholder and doubled braces are fine: `'%s\\n' {{x}}` stays literal."""
    rendered = render("printf '%s\\n' {competition_id} {{x}}", "a b")
    assert rendered == "printf '%s\\n' 'a b' {x}"


def test_render_refuses_nul() -> None:
    """A NUL cannot be a command argument, so it is refused rather than silently truncated."""
    with pytest.raises(ValueError, match="NUL"):
        render("echo {competition_id}", "a\0b")


# --- frames ------------------------------------------------------------------------------------------------------

SAMPLE_FRAMES = [
    Frame(FrameKind.STDOUT, b"hello"),
    Frame(FrameKind.STDERR, b""),
    Frame(FrameKind.HEARTBEAT, b""),
    Frame(FrameKind.STDOUT, bytes(range(256))),
    Frame(FrameKind.STATUS, b'{"exit_code":0}'),
]


def test_frame_decoder_handles_a_split_at_every_byte_boundary() -> None:
    """Splitting the stream at any single point, or feeding byte by byte, yields the same frames."""
    data = b"".join(encode_frame(f.kind, f.payload) for f in SAMPLE_FRAMES)
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == SAMPLE_FRAMES
        assert decoder.pending == 0
    decoder = FrameDecoder()
    assert [f for i in range(len(data)) for f in decoder.feed(data[i : i + 1])] == SAMPLE_FRAMES


@given(
    st.lists(st.tuples(st.sampled_from(list(FrameKind)), st.binary(max_size=64)), max_size=8),
    st.lists(st.integers(min_value=1, max_value=20), min_size=1),
)
def test_frame_decoder_any_chunking(frames: list[tuple[FrameKind, bytes]], sizes: list[int]) -> None:
    """Any frames, cut into any chunk sizes, decode to the same frames with nothing left over."""
    data = b"".join(encode_frame(kind, payload) for kind, payload in frames)
    decoder, decoded, position, i = FrameDecoder(), [], 0, 0
    while position < len(data):
        size = sizes[i % len(sizes)]
        decoded += decoder.feed(data[position : position + size])
        position, i = position + size, i + 1
    assert decoded == [Frame(kind, payload) for kind, payload in frames]
    assert decoder.pending == 0


def test_frame_decoder_rejects_garbage() -> None:
    """An unknown kind or an absurd length is a ProtocolError, not an endless wait for bytes."""
    with pytest.raises(ProtocolError, match="kind"):
        FrameDecoder().feed(b"\x09\x00\x00\x00\x00")
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder(max_payload=10).feed(encode_frame(FrameKind.STDOUT, b"x" * 11)[:5])


# --- the local transport ------------------------------------------------------------------------------------------


async def test_run_local_timeout_raises_and_kills_the_command(tmp_path: Path) -> None:
    """run_local past its timeout raises TimeoutError and leaves no process of the command behind."""
    pid_file = tmp_path / "pid"
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_local(f"echo $$ > {shlex.quote(str(pid_file))}; sleep 30", 0.5)
    assert time.monotonic() - began < 5
    assert not running(int(pid_file.read_text()))


async def test_stream_local_failure_raises_with_stderr() -> None:
    """A streamed command that exits non-zero raises CalledProcessError carrying its stderr."""
    chunks: list[bytes] = []

    async def consume() -> None:
        async for chunk in stream_local("echo partial; echo boom >&2; exit 3"):
            chunks.append(chunk)

    with pytest.raises(subprocess.CalledProcessError) as failure:
        await consume()
    assert b"".join(chunks) == b"partial\n"
    assert (failure.value.returncode, failure.value.stderr) == (3, b"boom\n")


USER_UID = 61500  # an ordinary user, no account needed


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="needs root and python3")
async def test_unprivileged_wrapper_puts_the_job_in_a_user_namespace() -> None:
    """Run as an ordinary user (an SSH node's GPU_USER), bwrap makes a user namespace: the job is that
    user, sees a private /tmp and only its workdir, and nothing of it outlives its end."""
    base = Path(tempfile.mkdtemp(prefix="gpuledger-userns-", dir="/tmp"))  # reachable by that user
    try:
        base.chmod(0o755)
        workdir = base / "job"
        marker = f"gpuledger-userns-{uuid.uuid4().hex}"
        command = f"id -u; ls -A /tmp; ls {shlex.quote(str(base))}; echo ok > f; (exec -a {marker} sleep 300) &"
        prepare_workdir(workdir, b"", job_spec_bytes(command, 30.0, 0.5, {}, SandboxSpec()))
        (base / "probe").mkdir()
        for path in [workdir, base / "probe", *workdir.rglob("*")]:
            os.chown(path, USER_UID, USER_UID)
        as_user = f"setpriv --reuid {USER_UID} --regid {USER_UID} --clear-groups -- "
        python = "/usr/bin/python3"
        rc, out, err = await run_local(
            as_user + shlex.join([python, "-I", "-S", str(workdir / "wrapper.py"), "probe", str(base / "probe"), "0"]),
            30,
        )
        assert rc == 0, err
        if not json.loads(out.decode().splitlines()[-1])["ok"]:
            pytest.skip(f"no unprivileged user namespaces here: {out.decode().strip()}")
        rc, out, err = await run_local(as_user + launch_command(python, workdir), 15)
        assert rc == 0, err
        rc, out, err = await run_local(as_user + follow_command(python, workdir, 0, 0), 15)
        frames = FrameDecoder().feed(out)
        status = decode_exit_status(frames[-1].payload)
        stdout = b"".join(f.payload for f in frames if f.kind is FrameKind.STDOUT).decode().split()
        assert (status.exit_code, status.group_gone) == (0, True)
        # Its uid, and in /tmp and above its workdir only the directories leading to it.
        assert stdout == [str(USER_UID), base.name, "job"]
        assert (workdir / WORK_NAME / "f").stat().st_uid == USER_UID
        await wait_for(lambda: processes_named(marker) == [], timeout=5)
    finally:
        shutil.rmtree(base, ignore_errors=True)
