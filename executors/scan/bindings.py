"""What names denote in a submission: scopes, imports, aliases and shadowed builtins.

``NameResolver`` walks module code first and function bodies afterwards, so that a function sees every
module-level alias whatever the order of definitions; bindings only grow, so rebinding hides nothing.
"""

from __future__ import annotations

import ast
import builtins
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from executors.scan import names, rules
from executors.scan.literals import fold_string, literal_path

GLOBALS = "<globals>"  # what a name bound to globals()/locals() resolves to
_BUILTIN_NAMES = frozenset(dir(builtins))
# Any of these in a file means module-level names can be rebound behind the visitor's back.
_REBINDERS = frozenset({"globals", "locals", "vars", "setattr", "delattr", "__builtins__", "__main__"})
_SCOPED = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


@dataclass
class _Scope:
    kind: Literal["module", "function", "class"]
    # name -> canonical dotted name it is bound to (``sp`` -> ``subprocess``); None: a plain local.
    names: dict[str, str | None] = field(default_factory=dict)
    # name -> string constant it holds, so ``n = "sys" + "tem"; getattr(x, n)`` is still seen.
    strings: dict[str, str] = field(default_factory=dict)
    declared_global: set[str] = field(default_factory=set)


def _own_scope_nodes(body: list[ast.stmt]) -> Iterable[ast.AST]:
    """Every node of a scope's body, not descending into nested scopes (their names are their own)."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPED):
            stack.extend(ast.iter_child_nodes(node))


def _local_names(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """Names Python makes local to ``func``: parameters and anything bound in its own body."""
    a = func.args
    names = {arg.arg for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if arg}
    declared: set[str] = set()
    body = [] if isinstance(func, ast.Lambda) else func.body
    for node in _own_scope_nodes(body):
        match node:
            case ast.Name(ctx=ast.Store() | ast.Del()):
                names.add(node.id)
            case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
                names.add(node.name)
            case ast.Import() | ast.ImportFrom():
                names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
            case ast.ExceptHandler(name=str() as name) | ast.MatchAs(name=str() as name):
                names.add(name)
            case ast.Global() | ast.Nonlocal():
                declared.update(node.names)
    return names - declared


def _shadowed_builtins(tree: ast.Module) -> frozenset[str]:
    """Builtin names the module rebinds, unconditionally, before any use, and never unbinds.

    ``def eval(model): ...`` in a training script is the user's own function; anything less certain
    (conditional rebinding, ``del``, ``global``, namespace tricks) leaves the builtin meaning in force.
    """
    first_bound: dict[str, int] = {}
    for stmt in tree.body:
        for name in _names_bound_by(stmt):
            first_bound.setdefault(name, stmt.lineno)
    first_use: dict[str, int] = {}
    unsafe: set[str] = set()
    for node in ast.walk(tree):
        match node:
            case ast.Name(id=name, ctx=ast.Load()):
                first_use[name] = min(first_use.get(name, node.lineno), node.lineno)
            case ast.Name(id=name, ctx=ast.Del()):
                unsafe.add(name)
            case ast.Global() | ast.Nonlocal():
                unsafe.update(node.names)
            case ast.Import() | ast.ImportFrom() if any(a.name == "__main__" for a in node.names):
                return frozenset()
            case ast.Attribute(attr="__dict__"):
                return frozenset()
    if _REBINDERS & first_use.keys():
        return frozenset()
    return frozenset(
        name
        for name, line in first_bound.items()
        if name in _BUILTIN_NAMES and name not in unsafe and line < first_use.get(name, line + 1)
    )


def _names_bound_by(stmt: ast.stmt) -> list[str]:
    match stmt:
        case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name) | ast.ClassDef(name=name):
            return [name]
        case ast.Assign(targets=targets):
            return [t.id for t in targets if isinstance(t, ast.Name)]
        case ast.AnnAssign(target=ast.Name(id=name), value=ast.expr()):
            return [name]
        case ast.Import() | ast.ImportFrom():
            return [(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"]
    return []


def _globals_of(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    body = [] if isinstance(func, ast.Lambda) else func.body
    return {name for node in _own_scope_nodes(body) if isinstance(node, ast.Global) for name in node.names}


class NameResolver(ast.NodeVisitor):
    """Resolves expressions to canonical dotted names while visiting; subclasses add the rule checks."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.shadowed = _shadowed_builtins(tree)
        self.scopes: list[_Scope] = [_Scope("module")]
        self.pending: deque[tuple[list[_Scope], list[ast.AST]]] = deque()
        self.rebound_globals = False

    def walk(self) -> None:
        self.visit(self.tree)
        done = self.visit_pending()
        if self.rebound_globals:
            # A function bound a module name via ``global``; functions seen before it get a second look.
            self.pending.extend(done)
            self.visit_pending()

    def visit_pending(self) -> list[tuple[list[_Scope], list[ast.AST]]]:
        done = []
        while self.pending:
            self.scopes, body = item = self.pending.popleft()
            done.append(item)
            for node in body:
                self.visit(node)
        return done

    # names -----------------------------------------------------------------------------------

    def lookup(self, name: str) -> str | None:
        for depth, scope in enumerate(reversed(self.scopes)):
            # A class body's names are invisible to the functions nested in it.
            if scope.kind == "class" and depth > 0:
                continue
            if name in scope.names:
                return scope.names[name]
        if name == "__builtins__":
            return "builtins"
        if name in _BUILTIN_NAMES and name not in self.shadowed:
            return f"builtins.{name}"
        return None

    def lookup_string(self, name: str) -> str | None:
        return next((s.strings[name] for s in reversed(self.scopes) if name in s.strings), None)

    def qualify(self, node: ast.AST) -> str | None:
        """The canonical dotted name an expression denotes (``sp.run`` -> ``subprocess.run``), if known."""
        match node:
            case ast.Name(id=name):
                return self.lookup(name)
            case ast.Attribute(value=value, attr=attr):
                base = self.qualify(value)
                if base and base != GLOBALS:
                    return rules.canonical_name(f"{base}.{attr}")
                return rules.canonical_name(attr) if attr in names.MODULE_ATTRS else None
            case ast.Call(func=func, args=[target, key, *_]) if self.qualify(func) == "builtins.getattr":
                owner, named = self.qualify(target), self.fold(key)
                return rules.canonical_name(f"{owner}.{named}") if owner and named else None
            case ast.Call(func=func) if self.qualify(func) in names.LOOP_GETTERS:
                return names.EVENT_LOOP
            case ast.Subscript(value=space_node, slice=key):
                space, named = self.namespace(space_node), self.fold(key)
                if space and named:
                    return self.lookup(named) if space == GLOBALS else rules.canonical_name(f"{space}.{named}")
        return None

    def fold(self, node: ast.AST) -> str | None:
        return fold_string(node, self.lookup_string)

    def namespace(self, node: ast.AST) -> str | None:
        """The module (or GLOBALS) whose namespace dict ``node`` is: ``os.__dict__``, ``vars(os)``, …"""
        match node:
            case ast.Attribute(value=value, attr="__dict__"):
                return self.sensitive(value)
            case ast.Call(func=func, args=[], keywords=[]) if self.qualify(func) in names.NAMESPACE_BUILTINS:
                return GLOBALS
            case ast.Call(func=func, args=[target]) if self.qualify(func) == "builtins.vars":
                return self.sensitive(target)
            case ast.Name(id="__builtins__"):
                return "builtins"
            case ast.Name() if self.qualify(node) == GLOBALS:
                return GLOBALS
        return None

    def sensitive(self, node: ast.AST) -> str | None:
        base = self.qualify(node)
        return base if base in names.SENSITIVE_MODULES else None

    def path_of(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.lookup_string(node.id)
        return literal_path(node, self.is_path_constructor)

    def is_path_constructor(self, func: ast.AST) -> bool:
        return self.qualify(func) in names.PATH_CONSTRUCTORS

    # visits: bindings ------------------------------------------------------------------------

    def visit_owner(self, node: ast.expr) -> None:
        """Visit an expression an alias is taken from (``o = os``); subclasses may judge it differently."""
        self.visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self.visit(target)
        self.visit_owner(node.value)
        for target in node.targets:
            self.bind(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        self.visit(node.annotation)
        if node.value is not None:
            self.visit_owner(node.value)
            self.bind(node.target, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        if isinstance(node.target, ast.Name) and isinstance(node.op, ast.Add):
            self.bind(
                node.target, ast.BinOp(left=ast.Name(id=node.target.id, ctx=ast.Load()), op=ast.Add(), right=node.value)
            )

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit_owner(node.value)
        self.bind(node.target, node.value)

    def bind(self, target: ast.expr, value: ast.expr) -> None:
        """Remember what a name now denotes; bindings only grow, so a later rebinding hides nothing."""
        if isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.Tuple | ast.List):
            for t, v in zip(target.elts, value.elts, strict=False):
                self.bind(t, v)
            return
        if not isinstance(target, ast.Name):
            return
        denoted = GLOBALS if self.namespace(value) == GLOBALS else self.qualify(value)
        if denoted:
            self.bind_name(target.id, denoted)
        text = self.fold(value)
        text = text if text is not None else self.path_of(value)
        if text is not None:
            self.scope_for(target.id).strings[target.id] = text

    def bind_name(self, name: str, denoted: str) -> None:
        scope = self.scope_for(name)
        if scope.names.get(name) is None:
            scope.names[name] = denoted
            self.rebound_globals |= scope is not self.scopes[-1]

    def scope_for(self, name: str) -> _Scope:
        """The scope an assignment to ``name`` lands in (``global`` sends it to the module)."""
        return self.scopes[0] if name in self.scopes[-1].declared_global else self.scopes[-1]

    # visits: scopes --------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for decorator in getattr(node, "decorator_list", []):
            self.visit(decorator)
        self.visit(node.args)
        if returns := getattr(node, "returns", None):
            self.visit(returns)
        scope = _Scope("function", dict.fromkeys(_local_names(node)), declared_global=_globals_of(node))
        body: list[ast.AST] = [node.body] if isinstance(node, ast.Lambda) else list(node.body)
        self.pending.append(([*self.scopes, scope], body))

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for child in (*node.decorator_list, *node.bases, *node.keywords):
            self.visit(child)
        self.scopes.append(_Scope("class"))
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()

    def visit_comprehension_scope(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        targets = (n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name))
        self.scopes.append(_Scope("function", dict.fromkeys(targets)))
        self.generic_visit(node)
        self.scopes.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_comprehension_scope
