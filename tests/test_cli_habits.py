"""The researcher's client as Slurm and SkyPilot users expect it, run as a subprocess against a real
server: flags instead of a config, id prefixes, both log streams, several cancels, an 80-column
table, whoami and the expiry warning, URLs without a scheme or of another server, completion, and
job output that cannot drive the terminal."""

from __future__ import annotations

import http.server
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from server import OPEN_LIMITS, Server, cli_user, config_yaml, running
from test_cli_client import gpuledger, solution

from cli import listing
from gpuledger import JobStatus

HOSTILE = "import sys\nprint('\\x1b]0;pwned\\x07\\x1b[31mred', flush=True)\nprint('bad\\x1b[2J', file=sys.stderr)\n"
BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("habits"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        max_active_jobs_per_user=10,
        rate_limit_per_minute=0,
    ) as srv:
        yield srv


@pytest.fixture
def user(server: Server, tmp_path: Path) -> dict[str, str]:
    """A fresh user, with its token in the environment and a private config directory."""
    return cli_user(server, tmp_path)


def _detached(tmp_path: Path, env: dict[str, str], code: str, *flags: str) -> str:
    done = gpuledger(tmp_path, env, "submit", solution(tmp_path, code), *flags, "-d")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_submit_without_a_config_takes_flags_and_defaults(user, tmp_path):
    """``submit x.py --time 15m --gpus 1`` needs no config file: competition and project are ``default``."""
    job_id = _detached(tmp_path, user, "print('ok')", "--time", "15m", "--gpus", "1")
    status = json.loads(gpuledger(tmp_path, user, "status", job_id, "--json").stdout)
    assert (status["expected_time"], status["competition_id"], status["project_id"]) == (900, "default", "default")
    assert (status["user_id"]) == user["NAME"]


def test_flags_override_the_config_and_durations_are_checked(user, tmp_path):
    """``--time 1:30`` wins over the config's 60 s; ``--time soon`` is refused before anything is sent."""
    job_id = _detached(tmp_path, user, "print('ok')", "-c", "config.yaml", "--time", "1:30")
    status = json.loads(gpuledger(tmp_path, user, "status", job_id, "--json").stdout)
    assert (status["expected_time"], status["competition_id"]) == (90, "comp")
    bad = gpuledger(tmp_path, user, "submit", "solution.py", "--time", "soon")
    assert bad.returncode == 2
    assert "not a duration: 'soon'" in bad.stderr
    missing = gpuledger(tmp_path, user, "submit", "solution.py")
    assert missing.returncode == 2
    assert "submit needs -c CONFIG, or --time DURATION" in missing.stderr


def test_status_and_wait_take_a_lower_case_prefix(user, tmp_path):
    """A job's id may be typed as a unique prefix, in lower case (and ``wait --timeout`` takes a duration)."""
    job_id = _detached(tmp_path, user, "print('ok')", "-c", "config.yaml")
    prefix = job_id[:12].lower()
    assert gpuledger(tmp_path, user, "wait", prefix, "--timeout", "1m").returncode == 0
    assert json.loads(gpuledger(tmp_path, user, "status", prefix, "--json").stdout)["job_id"] == job_id


def test_logs_show_both_streams_labelled_with_filters(user, tmp_path):
    """``logs`` prints stdout and stderr (its lines marked ``stderr| ``); --stdout and --stderr pick one."""
    code = "import sys\nprint('out one')\nprint('err one', file=sys.stderr)\n"
    job_id = _detached(tmp_path, user, code, "-c", "config.yaml")
    assert gpuledger(tmp_path, user, "wait", job_id).returncode == 0
    assert gpuledger(tmp_path, user, "logs", job_id).stdout == "out one\nstderr| err one\n"
    assert gpuledger(tmp_path, user, "logs", job_id, "--stdout").stdout == "out one\n"
    assert gpuledger(tmp_path, user, "logs", job_id, "--stderr").stdout == "err one\n"
    followed = gpuledger(tmp_path, user, "logs", job_id, "-f")
    assert sorted(followed.stdout.splitlines()) == ["out one", "stderr| err one"]


def test_job_output_cannot_drive_the_terminal_unless_raw(user, tmp_path):
    """Escape sequences a job prints reach logs, results and submit's live view as visible text
    (``\\x1b``), raw only with --raw."""
    done = gpuledger(tmp_path, user, "submit", solution(tmp_path, HOSTILE), "-c", "config.yaml")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout + done.stderr
    assert done.stdout == "\\x1b]0;pwned\\x07\\x1b[31mred\n"
    assert "bad\\x1b[2J" in done.stderr
    job_id = done.stderr.split("submitted job ")[1].split()[0]
    logs = gpuledger(tmp_path, user, "logs", job_id).stdout
    assert logs == "\\x1b]0;pwned\\x07\\x1b[31mred\nstderr| bad\\x1b[2J\n"
    assert gpuledger(tmp_path, user, "logs", job_id, "--stdout", "--raw").stdout == "\x1b]0;pwned\x07\x1b[31mred\n"


def test_cancel_takes_several_ids_and_all_of_mine(server, user, tmp_path):
    """``cancel A B`` cancels both; ``cancel --all`` cancels the rest of mine and nobody else's."""
    sleeper = "import time\ntime.sleep(60)\n"
    mine = [_detached(tmp_path, user, sleeper, "-c", "config.yaml") for _ in range(3)]
    other = {**user, "GPULEDGER_TOKEN": server.token("bystander")}
    (tmp_path / "other.yaml").write_bytes(config_yaml("bystander", expected=60))
    theirs = _detached(tmp_path, other, sleeper, "-c", "other.yaml")
    two = gpuledger(tmp_path, user, "cancel", mine[0][:14].lower(), mine[1])
    assert two.returncode == 0, two.stderr
    assert {line.split()[1] for line in two.stdout.splitlines()} == set(mine[:2])
    rest = gpuledger(tmp_path, user, "cancel", "--all")
    assert rest.returncode == 0, rest.stderr
    assert [line.split()[1] for line in rest.stdout.splitlines()] == [mine[2]]
    assert json.loads(gpuledger(tmp_path, other, "status", theirs, "--json").stdout)["status"] in ("pending", "running")
    admin = {**user, "GPULEDGER_TOKEN": server.admin_token}
    theirs_cancelled = gpuledger(tmp_path, admin, "cancel", "--user", "bystander")
    assert theirs_cancelled.returncode == 0, theirs_cancelled.stderr
    assert [line.split()[1] for line in theirs_cancelled.stdout.splitlines()] == [theirs]
    assert gpuledger(tmp_path, other, "cancel", "--all", theirs).returncode == 2  # ids or a selection, not both


def test_jobs_table_fits_80_columns_plain_in_a_pipe_with_short_ids(user, tmp_path):
    """Piped, ``jobs --all`` is plain columns within 80 characters, with short ids and an elapsed column."""
    job_id = _detached(tmp_path, user, "import time\ntime.sleep(1.2)\n", "--time", "1m", "--competition", "a" * 40)
    assert gpuledger(tmp_path, user, "wait", job_id).returncode == 0
    table = gpuledger(tmp_path, user, "jobs", "--all").stdout
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not BOX.search(table)
    assert lines[0].split()[:3] == ["ID", "STATUS", "ELAPSED"]
    row = lines[1].split()
    assert (row[0], row[1]) == (job_id[:10], "completed")
    assert re.fullmatch(r"[12]s", row[2])
    assert job_id not in table


def test_whoami_and_login_say_who_and_until_when(user, tmp_path):
    """``whoami`` names the user and the token's expiry; ``login`` says as whom and until when."""
    who = gpuledger(tmp_path, user, "whoami")
    assert who.returncode == 0, who.stderr
    assert f"user:    {user['NAME']}" in who.stdout
    assert "admin:   no" in who.stdout
    assert re.search(r"expires \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in (29|30) days\)", who.stdout)
    env = {**user, "GPULEDGER_TOKEN": ""}
    login = gpuledger(tmp_path, env, "login", "--token", user["GPULEDGER_TOKEN"])
    assert login.returncode == 0, login.stderr
    assert f"as {user['NAME']} until " in login.stdout


def test_a_token_in_its_last_three_days_is_warned_of_once(server, user, tmp_path):
    """Every command warns on stderr, once, when the token expires within 3 days; a fresh token never."""
    short = {**user, "GPULEDGER_TOKEN": server.token(user["NAME"], days=2)}
    done = gpuledger(tmp_path, short, "jobs", "--all")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning: your token expires") == 1
    assert "gpuledger: warning: your token expires" not in gpuledger(tmp_path, user, "jobs").stderr


class _OtherServer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_a_url_without_scheme_works_and_another_server_is_named_so(user, tmp_path):
    """``--url 127.0.0.1:PORT`` means http://; a web server that is not gpuledger is said to be so."""
    bare = user["GPULEDGER_URL"].removeprefix("http://")
    assert gpuledger(tmp_path, user, "jobs", "--url", bare, "--json").returncode == 0
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherServer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        done = gpuledger(tmp_path, user, "jobs", "--url", f"127.0.0.1:{other.server_address[1]}")
    finally:
        other.shutdown()
        other.server_close()
    assert done.returncode == 2
    assert f"http://127.0.0.1:{other.server_address[1]} is not a gpuledger server" in done.stderr


def test_unknown_commands_get_a_suggestion_and_completion_is_generated(tmp_path):
    """A misspelt command gets "did you mean"; ``completion bash`` knows every command and option."""
    typo = gpuledger(tmp_path, {}, "sbumit")
    assert (typo.returncode, typo.stderr.strip()) == (2, "gpuledger: unknown command `sbumit`; did you mean `submit`?")
    script = gpuledger(tmp_path, {}, "completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "whoami" in script.stdout
    assert "--gpus" in script.stdout
    assert "--stderr" in script.stdout


def test_jobs_table_of_several_users_with_long_names_keeps_every_column_in_80() -> None:
    """Long user, node and competition names are cut (…), never a column dropped or a line wrapped."""
    console = Console(file=io.StringIO(), width=80, color_system=None)
    listing.out = console
    long = {"competition_id": "imagenet-finetune-long-name", "node": "gpu-node-01-very-long"}
    jobs = [
        JobStatus(job_id="01JQ3K9M2XABCDEFGHJKMNPQRS", status="running", user_id="alexandrina", **long),
        JobStatus(job_id="01JQ3K9M2YABCDEFGHJKMNPQRS", status="pending", user_id="bob", reason="waiting " * 20),
    ]
    console.print(listing.jobs_table(jobs))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 3
    assert lines[0].split() == ["ID", "STATUS", "ELAPSED", "USER", "NODE", "COMPETITION", "WHY"]
    assert max(len(line) for line in lines) <= 80
    assert lines[1].split()[:4] == ["01JQ3K9M2X", "running", "alexandri…", "gpu-node-…"]
    assert lines[2].rstrip().endswith("…")  # the reason, cut at the edge
