"""The import rule of the product packages, checked from the source: layers point one way, files form no circle.

    ledger (domain: events, state machines, errors, clock)
      <- ledger (store: schema, store, writer, blobs, state, commands, settings)
      <- projections <- executors <- api <- cli
    gpuledger (the researcher's SDK) imports no server package; cli may import it.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a cycle hidden
from the interpreter is still a cycle in the design. ``python3 scripts/layers.py`` prints each
violation and exits 1; ``tests/test_layers.py`` runs the same check.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

LAYERS = ("ledger.domain", "ledger.store", "projections", "executors", "api", "cli")
DOMAIN = frozenset(
    {"events", "jobs", "attempts", "retries", "quotas", "nodes", "tokens", "users", "shares", "errors", "clock"}
)
SDK = "gpuledger"
PACKAGES = ("ledger", "projections", "executors", "api", "cli", SDK)
UNCHECKED = frozenset({"executors.wrapper"})  # runs on nodes alone, stdlib only: imports nothing of ours


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "ledger":
        return "ledger.domain" if len(parts) > 1 and parts[1] in DOMAIN else "ledger.store"
    return parts[0] if parts[0] in PACKAGES else None


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []:
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, module: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import in the file, resolved to a known module."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                yield target, node.lineno
                break


def graph(root: Path) -> dict[str, dict[str, int]]:
    known = modules(root)
    names = set(known)
    return {module: dict(imports_of(path, module, names)) for module, path in known.items() if module not in UNCHECKED}


def upward(edges: dict[str, dict[str, int]]) -> list[str]:
    problems = []
    for module, targets in sorted(edges.items()):
        here = layer_of(module)
        for target, line in sorted(targets.items()):
            there = layer_of(target)
            if here == SDK and there != SDK:
                problems.append(f"{module}:{line} imports {target}: the SDK imports no server package")
            elif there == SDK and here not in (SDK, "cli"):
                problems.append(f"{module}:{line} imports {target}: only the CLI builds on the SDK")
            elif here in LAYERS and there in LAYERS and LAYERS.index(there) > LAYERS.index(here):
                problems.append(f"{module}:{line} imports {target}: {here} may not import {there} (upward)")
    return problems


def circles(edges: dict[str, dict[str, int]]) -> list[str]:
    """Strongly connected groups of more than one module (Tarjan), each named once."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[str] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append("circle: " + " <-> ".join(sorted(group)))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def check(root: Path) -> list[str]:
    edges = graph(root)
    return upward(edges) + circles(edges)


if __name__ == "__main__":
    problems = check(Path(__file__).resolve().parent.parent)
    print("\n".join(problems) or "imports: one way, no circles")
    sys.exit(1 if problems else 0)
