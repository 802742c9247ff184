"""Shared fixtures: real sshd processes (tests/sshd.py) and a real gpuledger server (tests/server.py)."""

pytest_plugins = ["sshd", "server"]
