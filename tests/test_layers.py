"""The import rule of the product (scripts/layers.py): one direction between layers, no circles between files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers", ROOT / "scripts" / "layers.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["layers"] = module
    spec.loader.exec_module(module)
    return module


layers = load_checker()


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_product_imports_one_way_without_circles() -> None:
    """The real tree: no upward import and no circle between files."""
    assert layers.check(ROOT) == []


def test_the_checker_sees_the_real_imports() -> None:
    """Sanity: the graph of the real tree has the arrows we know of (the check is not vacuous)."""
    edges = layers.graph(ROOT)
    assert "ledger.events" in edges["ledger.store"]
    assert "projections.views" in edges["projections.live"]
    assert "ledger.writer" in edges["executors.runner"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"ledger/events.py": "from projections.views import Views\n", "projections/views.py": ""}, "upward"),
        ({"ledger/events.py": "import ledger.store\n", "ledger/store.py": ""}, "upward"),
        ({"executors/runner.py": "def f():\n    from api.app import x\n", "api/app.py": ""}, "upward"),
        ({"projections/a.py": "from . import b\n", "projections/b.py": "from projections import a\n"}, "circle"),
        ({"gpuledger/client.py": "from ledger import events\n", "ledger/events.py": ""}, "SDK imports no"),
        ({"api/x.py": "import gpuledger.client\n", "gpuledger/client.py": ""}, "only the CLI"),
    ],
)
def test_an_added_violation_is_reported(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    """Each kind of violation, planted in a small tree, is named by the check."""
    problems = layers.check(write_tree(tmp_path, files))
    assert any(expected in problem for problem in problems), problems


def test_type_checking_imports_count(tmp_path: Path) -> None:
    """An import hidden under TYPE_CHECKING still counts: the design has the arrow."""
    tree = write_tree(
        tmp_path,
        {
            "executors/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from api.runtime import R\n",
            "api/runtime.py": "",
        },
    )
    assert layers.check(tree)
