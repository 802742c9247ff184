"""Shared fixtures: real sshd (tests/sshd.py) and Slurm (tests/slurm.py) daemons, a real server
(tests/server.py), chromium (tests/browser.py), the job sandbox check (tests/sandbox.py) and small
filesystems for disk tests (tests/disks.py)."""

pytest_plugins = ["sshd", "server", "browser", "sandbox", "slurm", "disks", "nonroot"]
