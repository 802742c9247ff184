"""The command table of ``cli.main``: what ``--help`` lists matches what each module registers, and the
server's start imports neither the SDK nor the optional executors."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from server import REPO, run_cli

import gpuledger
from cli.main import COMMANDS, VERSION, build_parser, chosen_command


def registered(module: str) -> list[tuple[str, str]]:
    """(name, help) of each command the module's register() adds, in its order."""
    subparsers = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register(subparsers)
    return [(action.dest, str(action.help)) for action in subparsers._choices_actions]


def test_table_matches_registered_commands() -> None:
    """Every module's commands appear in the table, in the same order, with the same help."""
    modules = list(dict.fromkeys(module for _, module, _ in COMMANDS))
    expected = [entry for module in modules for entry in registered(module)]
    assert [(name, summary) for name, _, summary in COMMANDS] == expected


def test_version_is_the_sdks() -> None:
    """``gpuledger --version`` says the SDK's version without importing it."""
    assert gpuledger.__version__ == VERSION


@pytest.mark.parametrize("command", [name for name, _, _ in COMMANDS])
def test_each_command_parses_its_own_options(command: str) -> None:
    """With one command chosen, its module's full parser is built (its --help works), the rest stay stubs."""
    parser = build_parser(command)
    with pytest.raises(SystemExit) as done:
        parser.parse_args([command, "--help"])
    assert done.value.code == 0


def test_chosen_command_skips_options() -> None:
    """The command is the first word that is not an option."""
    assert chosen_command(["--version"]) is None
    assert chosen_command(["-h", "serve", "--port", "1"]) == "serve"


def test_help_lists_every_command(tmp_path: Path) -> None:
    """``gpuledger --help`` names every command of the table with its help line."""
    done = run_cli(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    for name, _, summary in COMMANDS:
        assert name in done.stdout
        assert summary.split(" (")[0][:30] in " ".join(done.stdout.split())


def test_unknown_command_lists_choices(tmp_path: Path) -> None:
    """A misspelt command is refused with the nearest command, or the list of commands when none is near."""
    done = run_cli(tmp_path, "serv")
    assert done.returncode == 2
    assert "unknown command `serv`; did you mean `serve`?" in done.stderr
    far = run_cli(tmp_path, "frobnicate")
    assert far.returncode == 2
    assert "server-log" in far.stderr


def test_serve_imports_no_sdk_nor_optional_executors() -> None:
    """What ``serve`` imports before it binds leaves out the SDK, httpx, asyncssh, Slurm and apprise (used
    only when the settings or a notification ask for them)."""
    probe = (
        "import sys; from cli.main import build_parser; build_parser('serve'); "
        "import uvicorn, api.app, api.logsetup; "
        "print(' '.join(m for m in ('gpuledger', 'httpx', 'asyncssh', 'executors.slurm.cluster', "
        "'executors.ssh.nodes', 'apprise') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO, timeout=60
    )
    assert done.stdout.split() == []
