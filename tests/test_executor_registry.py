"""Executors are plug-ins: the registry alone names their packages, and each one has the interface's face."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from executors.interface import Executor
from executors.registry import EXECUTORS, chosen_executor, start_executor
from executors.services import Services
from ledger.store.blobs import BlobStore
from ledger.store.settings import NodeSpec, Settings, SlurmSettings, SshSettings, StorageSettings
from projections.live import open_ledger

# Importing the SSH executor imports asyncssh, whose DSA support warns on import (not ours to mend).
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")
REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("ledger", "projections", "executors", "api", "cli", "gpuledger")
# The class each registered executor starts as (a new entry without a line here fails the test below).
CLASSES = {
    "slurm": "executors.slurm.cluster:SlurmCluster",
    "ssh": "executors.ssh.nodes:SshFleet",
    "local": "executors.local.node:LocalNode",
}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_registry_names_an_executor_package() -> None:
    """Outside the executor packages themselves, no product module but executors/registry.py imports one."""
    packages = {f"executors.{entry.kind}" for entry in EXECUTORS}
    own = [REPO / Path(*package.split(".")) for package in packages]
    offenders = []
    for path in (p for top in PRODUCT for p in (REPO / top).rglob("*.py")):
        if path == REPO / "executors" / "registry.py" or any(path.is_relative_to(d) for d in own):
            continue
        named = {m for m in _imported(path) for p in packages if m == p or m.startswith(p + ".")}
        offenders += [f"{path.relative_to(REPO)} imports {m}" for m in sorted(named)]
    assert offenders == []


def test_each_registered_executor_is_its_own_package() -> None:
    """A registry entry's kind is its package under executors/ and the kind of the nodes it registers."""
    assert [entry.kind for entry in EXECUTORS] == list(CLASSES)
    for entry in EXECUTORS:
        assert (REPO / "executors" / entry.kind / "__init__.py").is_file()
        module, name = CLASSES[entry.kind].split(":")
        assert getattr(importlib.import_module(module), name).kind == entry.kind


@pytest.mark.parametrize("kind", list(CLASSES))
def test_each_registered_executor_has_every_member_of_the_interface(kind: str) -> None:
    """Each executor class carries every member of Executor, with the same parameters and property-ness."""
    module, name = CLASSES[kind].split(":")
    cls = getattr(importlib.import_module(module), name)
    for member, annotation in Executor.__annotations__.items():  # the data members: kind, uses_job_cgroups
        assert type(getattr(cls, member, None)).__name__ == annotation, f"{name}.{member}"
    for member, wanted in inspect.getmembers(Executor, lambda m: inspect.isfunction(m) or isinstance(m, property)):
        if member.startswith("_"):
            continue
        have = inspect.getattr_static(cls, member, None)
        assert have is not None, f"{name} lacks {member}"
        assert isinstance(have, property) == isinstance(wanted, property), f"{name}.{member}"
        if inspect.isfunction(wanted):
            assert list(inspect.signature(have).parameters) == list(inspect.signature(wanted).parameters)
            assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(wanted), f"{name}.{member}"


def test_the_settings_choose_the_executor() -> None:
    """A [slurm] table wins over SSH nodes, SSH nodes over the local node, which is the default."""
    nodes = [NodeSpec(name="n1", host="h")]
    slurm = Settings(slurm=SlurmSettings(partition="gpu"), ssh=SshSettings(nodes=nodes))
    chosen = [chosen_executor(s).kind for s in (slurm, Settings(ssh=SshSettings(nodes=nodes)), Settings())]
    assert chosen == ["slurm", "ssh", "local"]


async def test_the_local_executor_starts_through_the_registry(tmp_path: Path) -> None:
    """Started from default settings, the registry's executor is the local one: its node registered
    with its kind, its runner the one the dispatcher is handed, and it answers the whole interface."""
    settings = Settings(
        storage=StorageSettings(
            database_path=str(tmp_path / "ledger.db"), jobs_dir=str(tmp_path / "jobs"), log_file=str(tmp_path / "log")
        )
    )
    ledger = open_ledger(settings.storage.database_path)
    await ledger.start()
    try:
        executor = await start_executor(
            Services(ledger=ledger, blobs=BlobStore(settings.storage.jobs_dir), settings=settings)
        )
        assert isinstance(executor, Executor)
        assert executor.kind == "local"
        assert executor.uses_job_cgroups
        assert list(executor.runners) == ["local"]
        assert ledger.views.nodes["local"].kind == "local"
        assert executor.largest_job_gpus() is None
        assert executor.describe() is None
        assert executor.pending_board() == {}
        await executor.close()
    finally:
        await ledger.close()
