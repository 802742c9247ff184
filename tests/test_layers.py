"""The import rules of the product ([tool.importlinter] in pyproject.toml, run by ``lint-imports``): layers
point one way, ledger's store builds on its domain, the SDK stands apart, no circles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "projections", "executors", "api", "cli", "gpuledger")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the tree at ``root``, whose packages (not those installed) it reads."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_product_keeps_its_import_contracts() -> None:
    """The real tree: every contract kept."""
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the product's packages and its pyproject.toml, to plant violations in."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("files", "broken"),
    [
        pytest.param({"projections/planted.py": "from api import app\n"}, "Layers point one way", id="upward"),
        pytest.param(
            {"executors/planted.py": "def f() -> None:\n    from api.app import create_app\n"},
            "Layers point one way",
            id="upward-in-a-function",
        ),
        pytest.param(
            {"executors/planted.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import api.runtime\n"},
            "Layers point one way",
            id="upward-under-type-checking",
        ),
        pytest.param({"ledger/domain/planted.py": "import ledger.store.writer\n"}, "store over domain", id="domain-up"),
        pytest.param({"ledger/planted.py": ""}, "every module in one of them", id="ledger-module-in-no-layer"),
        pytest.param({"gpuledger/planted.py": "from ledger.domain import events\n"}, "SDK (gpuledger)", id="sdk"),
        pytest.param({"api/planted.py": "import gpuledger.client\n"}, "Only the CLI", id="sdk-below-cli"),
        pytest.param(
            {
                "projections/planted_a.py": "from projections import planted_b\n",
                "projections/planted_b.py": "from projections import planted_a\n",
            },
            "No circles",
            id="circle",
        ),
    ],
)
def test_a_planted_violation_breaks_its_contract(tree: Path, files: dict[str, str], broken: str) -> None:
    """Each kind of violation, planted in a copy of the tree, fails lint-imports naming the contract."""
    assert lint_imports(tree).returncode == 0  # the copy alone passes: the plant is what breaks it
    for name, text in files.items():
        (tree / name).write_text(text)
    done = lint_imports(tree)
    assert done.returncode != 0
    assert any(broken in line and "BROKEN" in line for line in done.stdout.splitlines()), done.stdout
