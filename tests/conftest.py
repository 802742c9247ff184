"""Shared fixtures: real sshd (tests/sshd.py), a real server (tests/server.py), chromium (tests/browser.py)."""

pytest_plugins = ["sshd", "server", "browser"]
