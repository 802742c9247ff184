"""Hostile jobs against the sandbox, scanner off, on the local runner and on SSH nodes (loopback sshd):
each attack must fail, and an ordinary ML-style job must still work."""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nonroot import ServerUser
from server import OPEN_LIMITS, REPO, Server, config_yaml, run_cli, submit, wait_status
from sshd import SshCluster
from test_ssh_jobs import ssh_settings
from wrapper_jobs import PY, processes_named

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]
TERMINAL = {"completed", "failed", "cancelled"}
SECRET = "postgres://admin:hunter2-sandbox-test@db/prod"
HOME_FILE = Path.home() / ".bashrc"


@dataclass
class Harness:
    """One running server and what a job would like to reach on its host."""

    runner: str
    server: Server
    job_roots: list[Path]  # where jobs' control directories live, on the node

    def client(self) -> httpx.Client:
        return self.server.client(self.server.admin_token)

    def targets(self) -> dict[str, Any]:
        root = self.server.root
        assert self.server.proc is not None
        return {
            "ledger": str(root / "gpuledger.db"),
            "log": str(root / "server.log"),
            "config": str(root / "gpuledger.toml"),
            "jobs_roots": [str(p) for p in self.job_roots] + [str(root / "jobs")],
            "server_pid": self.server.proc.pid,
            "site_packages": sysconfig.get_paths()["purelib"],
            "home_file": str(HOME_FILE),
            "repo": str(REPO),
        }

    def token_count(self) -> int:
        done = run_cli(self.server.root, "token", "list", "--all", env=self.server.env)
        assert done.returncode == 0, done.stderr
        return len([line for line in done.stdout.splitlines() if line.strip()])


def start_server(root: Path, user: ServerUser | None = None, **settings: Any) -> Server:
    """Started as root, or as ``user`` (tests/nonroot.py) on files it owns."""
    root.mkdir()
    (root / "gpuledger.toml").write_text("token_max_days = 30  # the server's config: jobs must not read it\n")
    server = Server(
        root,
        code_scanner_enabled=False,
        endpoint_limits=OPEN_LIMITS,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=100,
        cancel_grace_s=1,
        job_env={"CUDA_VISIBLE_DEVICES": "0"},
        **settings,
    )
    server.env["DATABASE_URL"] = SECRET  # a secret under an innocent name, in the server's environment
    if user is not None:
        user.adopt(server)
    server.start()
    return server


@pytest.fixture(scope="module", params=["local", "ssh"])
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp(f"sandbox-{request.param}") / "server"
    if request.param == "local":
        server = start_server(root, local_slots=2)
        roots = [root / "jobs" / "work" / "jobs"]
    else:
        cluster = request.getfixturevalue("ssh_cluster")
        # The node's own Python would do; the server's is used to show JOB_READONLY_PATHS at work.
        settings = ssh_settings(
            cluster, job_command=f"{PY} {{solution}}", job_readonly_paths=[sys.prefix, sys.base_prefix]
        )
        for name in ("code_scanner_enabled", "rate_limit_per_minute", "max_active_jobs_per_user", "endpoint_limits"):
            settings.pop(name)
        server = start_server(root, **settings)
        roots = [Path(cluster.settings().runner.remote_root) / "jobs"]
    try:
        yield Harness(request.param, server, roots)
    finally:
        server.stop()


ATTACKS = """
import json, os, sys
T = json.loads({targets!r})
report = {{}}

def attempt(name, action):
    try:
        report[name] = "succeeded: " + repr(action())[:300]
    except BaseException as e:  # SystemExit from cli.main included
        report[name] = "refused: " + type(e).__name__ + ": " + str(e)[:300]

def mint_admin_token():
    sys.path.insert(0, T["repo"])
    from cli.main import main
    code = main(["token", "create", "mallory", "--admin", "--db", T["ledger"]])
    if code:
        raise RuntimeError(f"exit {{code}}")
    return code

def other_workdirs():
    here = os.getcwd()
    seen = [os.path.join(root, name) for root in T["jobs_roots"] if os.path.isdir(root)
            for name in os.listdir(root) if not here.startswith(os.path.join(root, name))]
    if not seen:
        raise LookupError("nothing but the job's own directory is visible")
    return seen

def host_processes():
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    if max(pids) < 64:
        raise LookupError(f"only the sandbox's own processes: {{sorted(pids)}}")
    return pids

def env_secret():
    found = [value for value in os.environ.values() if "hunter2" in value]
    if not found:
        raise LookupError("no secret in the environment")
    return found

attempt("read_ledger", lambda: open(T["ledger"], "rb").read(64))
attempt("read_log", lambda: open(T["log"], "rb").read(64))
attempt("read_config", lambda: open(T["config"], "rb").read(64))
attempt("list_other_workdirs", other_workdirs)
attempt("mint_admin_token", mint_admin_token)
attempt("signal_server", lambda: os.kill(T["server_pid"], 0))
attempt("read_server_environ", lambda: open(f"/proc/{{T['server_pid']}}/environ", "rb").read(64))
attempt("write_site_packages", lambda: open(os.path.join(T["site_packages"], "gpuledger_evil.pth"), "w").write("x"))
attempt("write_home", lambda: open(T["home_file"], "a").write("# gpuledger sandbox test\\n"))
attempt("env_secret", env_secret)
attempt("see_host_processes", host_processes)
print(json.dumps(report))
"""
ATTACK_NAMES = [
    "read_ledger",
    "read_log",
    "read_config",
    "list_other_workdirs",
    "mint_admin_token",
    "signal_server",
    "read_server_environ",
    "write_site_packages",
    "write_home",
    "env_secret",
    "see_host_processes",
]


@pytest.fixture(scope="module")
def attack_report(harness: Harness) -> dict[str, str]:
    """One job runs every attack of ATTACK_NAMES and reports what each one got."""
    home_before = hashlib.sha256(HOME_FILE.read_bytes()).hexdigest() if HOME_FILE.exists() else None
    tokens_before = harness.token_count()
    code = ATTACKS.format(targets=json.dumps(harness.targets()))
    with harness.client() as client:
        body = submit(client, code, config_yaml("admin"), wait=True).json()
    assert body["status"] == "completed", body
    report: dict[str, str] = json.loads(body["stdout"].strip().splitlines()[-1])
    # What the job did (or not) seen from outside, too.
    home_after = hashlib.sha256(HOME_FILE.read_bytes()).hexdigest() if HOME_FILE.exists() else None
    report["host:home_unchanged"] = str(home_before == home_after)
    report["host:no_new_token"] = str(harness.token_count() == tokens_before)
    report["host:no_pth"] = str(not (Path(harness.targets()["site_packages"]) / "gpuledger_evil.pth").exists())
    assert harness.server.proc is not None
    report["host:server_alive"] = str(harness.server.proc.poll() is None)
    return report


@pytest.mark.parametrize("attack", ATTACK_NAMES)
def test_hostile_job_is_refused(attack_report: dict[str, str], attack: str) -> None:
    """Each attack (server files, ledger append through cli.main, signals, /proc, site-packages, $HOME,
    an env secret, the host's processes) fails inside the sandbox."""
    assert attack_report[attack].startswith("refused"), attack_report[attack]


@pytest.mark.parametrize("check", ["home_unchanged", "no_new_token", "no_pth", "server_alive"])
def test_hostile_job_left_no_trace_on_the_host(attack_report: dict[str, str], check: str) -> None:
    """Seen from outside: $HOME untouched, no token minted, no .pth written, the server still running."""
    assert attack_report[f"host:{check}"] == "True"


def test_sibling_job_cannot_read_or_rewrite_a_running_job(harness: Harness) -> None:
    """A job cannot read another job's workdir, nor forge its status or results: the victim ends
    completed with its own results."""
    victim_code = (
        "import os, time\n"
        "open(os.environ['GPULEDGER_RESULTS'], 'w').write('{\"mine\": true}\\n')\n"
        "time.sleep(4)\nprint('victim done')\n"
    )
    with harness.client() as client:
        victim = submit(client, victim_code, config_yaml("admin", expected=60)).json()["job_id"]
        wait_status(client, victim, {"running"})
        dirs = [root / victim for root in harness.job_roots]
        forged = '{"exit_code": 1, "signal": null, "ended_at": "2020-01-01T00:00:00+00:00"}'
        attacker_code = (
            "import json\nreport = {}\n"
            f"for d in {[str(d) for d in dirs]!r}:\n"
            "    for name, mode, data in (('work/solution.py', 'r', None), ('status.json', 'w', "
            f"{forged!r}), ('work/results.jsonl', 'w', '{{\"alice\": 1}}\\n')):\n"
            "        try:\n"
            "            with open(d + '/' + name, mode) as f:\n"
            "                f.write(data) if data else f.read()\n"
            "            report[d + name] = 'succeeded'\n"
            "        except OSError as e:\n"
            "            report[d + name] = 'refused: ' + str(e)\n"
            "print(json.dumps(report))\n"
        )
        attacker = submit(client, attacker_code, config_yaml("admin"), wait=True).json()
        assert attacker["status"] == "completed", attacker
        report = json.loads(attacker["stdout"].strip().splitlines()[-1])
        assert all(v.startswith("refused") for v in report.values()), report
        body = wait_status(client, victim, TERMINAL)
        assert (body["status"], body["exit_code"]) == ("completed", 0), body
        assert client.get(f"/api/results/{victim}").json()["results"] == '{"mine": true}\n'


def test_forged_status_file_does_not_end_the_job(harness: Harness) -> None:
    """A job writing status.json (exit 0) where the wrapper's would be still runs to its time limit and
    ends failed with reason timeout: its outcome comes from outside the sandbox."""
    forged = json.dumps({"exit_code": 0, "signal": None, "ended_at": "2020-01-01T00:00:00+00:00"})
    code = (
        "import time\n"
        f"for name in ('status.json', '../status.json'):\n"
        "    try:\n"
        f"        open(name, 'w').write({forged!r})\n"
        "    except OSError as e:\n"
        "        print('refused', name, e, flush=True)\n"
        "time.sleep(30)\n"
    )
    with harness.client() as client:
        body = submit(client, code, config_yaml("admin", expected=1), wait=True).json()
        assert body["status"] == "failed", body
        assert client.get(f"/api/status/{body['job_id']}").json()["finish_reason"] == "timeout"


SURVIVOR = (
    "import subprocess, time\n"
    "subprocess.run(['bash', '-c', \"(setsid bash -c '(exec -a {marker} sleep 300) &' &)\"])\n"
    "print('forked', flush=True)\n"
    "{tail}\n"
)


@pytest.mark.parametrize("ending", ["exit", "cancel", "timeout"])
def test_double_fork_setsid_survivor_is_killed(harness: Harness, ending: str) -> None:
    """A process double-forked into a new session dies with the job: at its end, its cancel, its timeout."""
    marker = f"gpuledger-survivor-{uuid.uuid4().hex}"
    tail = {"exit": "time.sleep(0.5)", "cancel": "time.sleep(300)", "timeout": "time.sleep(300)"}[ending]
    code = SURVIVOR.format(marker=marker, tail=tail)
    expected = 1 if ending == "timeout" else 60
    with harness.client() as client:
        job_id = submit(client, code, config_yaml("admin", expected=expected)).json()["job_id"]
        deadline = time.monotonic() + 30
        while not processes_named(marker):
            assert time.monotonic() < deadline, "the survivor never started"
            time.sleep(0.05)
        if ending == "cancel":
            assert client.post(f"/api/cancel/{job_id}").status_code == 200
        body = wait_status(client, job_id, TERMINAL)
        assert body["status"] == {"exit": "completed", "cancel": "cancelled", "timeout": "failed"}[ending]
    deadline = time.monotonic() + 5
    while processes_named(marker):
        assert time.monotonic() < deadline, f"survivor still running after the job's {ending}"
        time.sleep(0.05)


ML_JOB = """
import json, multiprocessing, os
import msgspec, yaml

def square(x):
    return x * x

if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        squares = pool.map(square, range(8))
    with open(os.environ["GPULEDGER_RESULTS"], "w") as f:
        f.write(json.dumps({"squares": squares, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "yaml": yaml.safe_load("a: 1"), "msgspec": msgspec.json.decode(b"[1]")}) + "\\n")
    open("/tmp/scratch", "w").write("private tmp works")
    print("trained")
"""


def test_ordinary_ml_job_still_works(harness: Harness) -> None:
    """Imports from the server's Python (read-only), multiprocessing workers, a results file, /tmp and
    CUDA_VISIBLE_DEVICES (from JOB_ENV) all work in the sandbox."""
    with harness.client() as client:
        body = submit(client, ML_JOB, config_yaml("admin"), wait=True).json()
        assert (body["status"], body["stdout"]) == ("completed", "trained\n"), body
        results = json.loads(client.get(f"/api/results/{body['job_id']}").json()["results"])
    assert results == {"squares": [x * x for x in range(8)], "cuda": "0", "yaml": {"a": 1}, "msgspec": [1]}


def test_results_symlink_is_not_followed(harness: Harness) -> None:
    """A results file that is a symlink (to the ledger) is not read by the server: no results."""
    code = f"import os\nos.symlink({harness.targets()['ledger']!r}, os.environ['GPULEDGER_RESULTS'])\n"
    with harness.client() as client:
        body = submit(client, code, config_yaml("admin"), wait=True).json()
        assert body["status"] == "completed", body
        assert client.get(f"/api/results/{body['job_id']}").json()["results"] in (None, "")


def test_server_files_are_private(harness: Harness) -> None:
    """umask 077: the ledger, its WAL, server.log, jobs/ and saved results are the server's alone."""
    root = harness.server.root
    paths = [root / "gpuledger.db", root / "server.log", root / "jobs", *root.glob("gpuledger.db-*")]
    paths += list((root / "jobs").rglob("*"))
    assert paths
    loose = [str(p) for p in paths if p.exists() and p.stat().st_mode & 0o077]
    assert loose == []


def test_nodes_say_the_sandbox_is_on(harness: Harness) -> None:
    """/api/nodes and /readyz name the sandbox; every node is up (it could build one)."""
    with harness.client() as client:
        nodes = client.get("/api/nodes").json()
        ready = client.get("/readyz").json()
    assert (nodes["sandbox"], nodes["sandbox_warning"], ready["sandbox"]) == ("bwrap", None, "bwrap")
    assert "warning" not in ready
    assert all(n["down_reason"] is None for n in nodes["nodes"]), nodes


READS_ONLY = [
    "read_ledger",
    "read_log",
    "read_config",
    "signal_server",
    "read_server_environ",
    "see_host_processes",
    "env_secret",
]


def test_without_the_sandbox_the_same_reads_succeed_and_it_is_said(tmp_path: Path) -> None:
    """JOB_SANDBOX = "none" (the control for the tests above): the harmless attacks now succeed, the
    start prints a warning, and /readyz and /api/nodes show it; the environment stays an allowlist.
    (Writes are not tried unconfined.)"""
    server = start_server(tmp_path / "server", local_slots=1, job_sandbox="none")
    try:
        harness = Harness("local", server, [])
        lines = ATTACKS.splitlines()
        safe = [line for line in lines if not line.startswith("attempt(") or line.split('"')[1] in READS_ONLY]
        code = "\n".join(safe).format(targets=json.dumps(harness.targets()))
        with harness.client() as client:
            body = submit(client, code, config_yaml("admin"), wait=True).json()
            nodes, ready = client.get("/api/nodes").json(), client.get("/readyz").json()
        report = json.loads(body["stdout"].strip().splitlines()[-1])
        assert all(report[name].startswith("succeeded") for name in READS_ONLY[:-1]), report
        assert report["env_secret"].startswith("refused")  # the environment is an allowlist regardless
        assert (nodes["sandbox"], ready["sandbox"]) == ("none", "none")
        assert "unconfined" in nodes["sandbox_warning"]
        assert "unconfined" in ready["warning"]
        assert "sandbox.disabled" in (server.root / "serve-1.err").read_text()
    finally:
        server.stop()


def test_no_bwrap_means_the_local_node_is_down_and_runs_nothing(tmp_path: Path) -> None:
    """A host without bwrap: one line at start naming the fix, the local node down with that reason,
    and a submitted job stays queued instead of running unconfined."""
    bin_dir = bin_without_bwrap(tmp_path / "bin")
    root = tmp_path / "server"
    root.mkdir()
    server = Server(root, code_scanner_enabled=False, endpoint_limits=OPEN_LIMITS, local_slots=1)
    server.env["PATH"] = str(bin_dir)
    server.start()
    try:
        with server.client(server.admin_token) as client:
            node = client.get("/api/nodes").json()["nodes"][0]
            marker = tmp_path / "ran"
            code = f"open({str(marker)!r}, 'w').write('ran')\n"
            job_id = submit(client, code, config_yaml("admin")).json()["job_id"]
            time.sleep(2)
            status = client.get(f"/api/status/{job_id}").json()["status"]
        assert "bubblewrap" in (node["down_reason"] or ""), node
        assert "apt-get install -y bubblewrap" in node["down_reason"]
        lines = [line for line in (root / "serve-1.err").read_text().splitlines() if "bubblewrap" in line]
        assert len(lines) == 1, lines
        assert status == "pending"
        assert not marker.exists()
    finally:
        server.stop()


def bin_without_bwrap(directory: Path) -> Path:
    """A PATH directory with every program of /usr/bin but bwrap, as on a host without bubblewrap."""
    directory.mkdir()
    for program in Path("/usr/bin").iterdir():
        if program.name != "bwrap":
            (directory / program.name).symlink_to(program)
    return directory


def test_ssh_node_without_bwrap_is_down_and_runs_nothing(tmp_path: Path) -> None:
    """An SSH node whose PATH has no bwrap: its probe says so, the node is down with the fix named,
    and a submitted job stays queued."""
    bin_dir = bin_without_bwrap(tmp_path / "bin")
    (tmp_path / "cluster").mkdir()
    cluster = SshCluster(tmp_path / "cluster", node_names=("node-0",))
    node_config = cluster.sshds["node-0"].config
    node_config.write_text(node_config.read_text() + f"SetEnv PATH={bin_dir}\n")
    try:
        cluster.heal()
        settings = ssh_settings(
            cluster, job_command=f"{PY} {{solution}}", job_readonly_paths=[sys.prefix, sys.base_prefix]
        )
        settings.pop("endpoint_limits")
        root = tmp_path / "server"
        root.mkdir()
        server = Server(root, endpoint_limits=OPEN_LIMITS, **settings)
        server.start()
        try:
            with server.client(server.admin_token) as client:
                node = client.get("/api/nodes").json()["nodes"][0]
                marker = tmp_path / "ran"
                job_id = submit(client, f"open({str(marker)!r}, 'w')\n", config_yaml("admin")).json()["job_id"]
                time.sleep(2)
                status = client.get(f"/api/status/{job_id}").json()["status"]
        finally:
            server.stop()
    finally:
        cluster.close()
    assert "apt-get install -y bubblewrap" in (node["down_reason"] or ""), node
    assert status == "pending"
    assert not marker.exists()
