"""Shared fixtures: real sshd (tests/sshd.py) and Slurm (tests/slurm.py) daemons, a real server
(tests/server.py), chromium (tests/browser.py), the job sandbox check (tests/sandbox.py) and small
filesystems for disk tests (tests/disks.py)."""

import pytest

pytest_plugins = ["sshd", "server", "browser", "sandbox", "slurm", "disks", "nonroot"]

# Under pytest-xdist (``-n N --dist loadgroup``, as scripts/check runs it), tests that share a host-wide
# resource go to one worker: the Slurm daemons (one cluster per session) and the system user the
# non-root server runs as (created and deleted by its session fixture). Every other test stays with its
# module, so a module-scoped server starts once.
HOST_WIDE = {"slurm_cluster": "slurm", "server_user": "nonroot"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks (its hook tags each node id with its group)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        group = next((HOST_WIDE[n] for n in HOST_WIDE if n in names), item.nodeid.split("::", 1)[0])
        item.add_marker(pytest.mark.xdist_group(group))
