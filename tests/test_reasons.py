"""Reasons in words: one function maps the ledger's codes to phrases; the API keeps the codes, the CLI
and the web page show the words."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit, wait_status

from ledger.store.reasons import duration_words, finish_words, size_words

PHRASES = [
    ("results_missing", {}, "no results file"),
    ("exit_zero", {}, "completed"),
    ("exit_nonzero", {"exit_code": 1}, "exit code 1"),
    ("cancelled", {"cancelled_by": "alice"}, "cancelled by alice"),
    ("cancelled", {}, "cancelled"),
    ("timeout", {"expected_time_s": 7200}, "timed out after 2h"),
    ("timeout", {"expected_time_s": 5400}, "timed out after 1h30m"),
    ("signal", {"signal": 9}, "killed by signal 9 (SIGKILL)"),
    ("out_of_memory", {"memory_limit_bytes": 8 * 2**30}, "killed: out of memory (limit 8 GiB)"),
    ("out_of_memory", {}, "killed: out of memory"),
    ("disk_limit", {}, "stopped: disk limit reached"),
    ("output_limit", {}, "stopped: too much output"),
    ("results_unreadable", {}, "results file unreadable"),
    ("env_setup_failed", {}, "environment setup failed"),
    ("dependency_never_satisfied", {}, "a job it depends on never succeeded"),
    ("gpu_idle", {}, "stopped: its GPU stayed idle"),
    ("node_lost", {}, "its node was lost"),
    ("some_new_code", {}, "some new code"),
]


@pytest.mark.parametrize(("code", "fields", "words"), PHRASES)
def test_each_reason_code_reads_as_a_phrase(code, fields, words):
    """Every code (the ones other branches add included) has a plain phrase; unknown codes lose underscores."""
    assert finish_words(code, **fields) == words


def test_durations_and_sizes_read_in_units():
    """Durations in the largest units without zero parts; sizes in binary units."""
    assert [duration_words(s) for s in (90, 3600, 86_400 + 60, 0)] == ["1m30s", "1h", "1d1m", "0s"]
    assert [size_words(n) for n in (256 * 2**20, 3 * 2**29, 512)] == ["256 MiB", "1.5 GiB", "512 B"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("reasons"), code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS) as srv:
        yield srv


def test_api_keeps_codes_and_adds_words_the_cli_prints(server: Server, tmp_path: Path):
    """A job ending 0 without results: the API says ``results_missing`` and "no results file"; so does the CLI."""
    name = f"r{time.monotonic_ns() % 10**9}"
    token = server.token(name)
    with server.client(token) as client:
        job_id = submit(client, "print('hi')\n", config_yaml(name)).json()["job_id"]
        status = wait_status(client, job_id, {"completed", "failed"})
        results = client.get(f"/api/results/{job_id}").json()
    assert (status["finish_reason"], status["finish_reason_text"]) == ("results_missing", "no results file")
    assert results["reason_text"] == "no results file"
    assert status["duration_s"] >= 0
    env = {"GPULEDGER_URL": server.url, "GPULEDGER_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path)}
    shown = run_cli(tmp_path, "status", job_id, env=env)
    assert "(no results file)" in shown.stdout + shown.stderr, shown
    as_json = json.loads(run_cli(tmp_path, "status", job_id, "--json", env=env).stdout)
    assert as_json["finish_reason"] == "results_missing"


def test_a_cancelled_job_says_who_cancelled_it(server: Server):
    """Cancelling a queued job records who asked: "cancelled by <user>"."""
    name = f"c{time.monotonic_ns() % 10**9}"
    with server.client(server.token(name)) as client:
        job_id = submit(client, "import time\ntime.sleep(60)\n", config_yaml(name, expected=120)).json()["job_id"]
        assert client.post(f"/api/cancel/{job_id}").status_code == 200
        status = wait_status(client, job_id, {"cancelled"})
    assert (status["cancelled_by"], status["finish_reason_text"]) == (name, f"cancelled by {name}")
