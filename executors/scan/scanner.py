"""Static code scanner: one pass over a submission's AST that resolves every name through its imports,
aliases and scopes, then matches the resolved names against the rule table in ``executors.scan.rules``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Literal

import msgspec

from executors.scan import names, rules
from executors.scan.bindings import GLOBALS, NameResolver
from executors.scan.literals import fold_number
from executors.scan.loading import (
    LITERAL_METHODS,
    LITERAL_TRANSFORMS,
    UNPICKLE_BYTES,
    CodeLoading,
    code_kind,
    file_name_of,
    is_pickle_payload,
)
from executors.scan.unparsed import dangerous_names
from ledger.domain.events import Finding

Verdict = Literal["approved", "warned", "rejected"]


class ScanReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the scanner concluded about one submission."""

    verdict: Verdict
    findings: list[Finding] = []
    scanner: Literal["static", "llm"] = "static"
    model: str | None = None


def scan_static(code: str) -> ScanReport:
    """Scan ``code`` with the static rules; a syntax error is no finding (the job fails by itself)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: null bytes in the source
        findings = [_finding("scan.unparsed_dangerous_name", line, name) for line, name in dangerous_names(code)]
        return ScanReport(verdict=verdict_for(findings), findings=findings)
    except RecursionError:
        tree = None
    try:
        findings = _Visitor(tree).run() if tree else []
    except RecursionError:
        tree = None
    if tree is None:
        # Code nested past what we can walk is not run: the depth itself is the red flag.
        findings = [_finding("scan.unscannable", 1)]
    return ScanReport(verdict=verdict_for(findings), findings=findings)


def verdict_for(findings: Iterable[Finding]) -> Verdict:
    """Rejected on any critical finding, warned on any warning, approved otherwise."""
    severities = {f.severity for f in findings}
    if "critical" in severities:
        return "rejected"
    return "warned" if "warning" in severities else "approved"


def format_findings(findings: Iterable[Finding]) -> str:
    """``line 3: os.system executes a shell command [proc.os_system]; …`` for error messages."""
    return "; ".join(f"{f.path + ' ' if f.path else ''}line {f.line}: {f.message} [{f.rule}]" for f in findings)


def _finding(rule_id: str, line: int, detail: str | None = None) -> Finding:
    rule = rules.RULES[rule_id]
    message = f"{rule.message} ({detail})" if detail else rule.message
    return Finding(rule=rule.id, line=line, message=message, severity=rule.severity)


_NAMESPACE_METHODS = frozenset({"get", "pop", "setdefault", "__getitem__"})
_BY_NAME = frozenset({"builtins.getattr", "builtins.setattr", "builtins.delattr"})
# Callables whose first argument is an owner of attributes, not a value being handed around.
_OWNER_FIRST = _BY_NAME | {"builtins.hasattr"}
_GETATTRIBUTE = frozenset({"__getattribute__", "__getattr__"})


class _Visitor(NameResolver):
    """Matches every resolved name, call and literal against the rule table."""

    def __init__(self, tree: ast.Module) -> None:
        super().__init__(tree)
        self.found: dict[tuple[str, int], Finding] = {}
        self.loading = CodeLoading()
        self.literal_names: set[str] = set()  # names bound to data built only from literals
        self.file_names: dict[str, str] = {}  # name -> the file name of the path it holds (``x.pth``)

    def run(self) -> list[Finding]:
        self.walk()
        for line, detail in self.loading.findings():
            self.found.setdefault(("dyn.written_code", line), _finding("dyn.written_code", line, detail))
        return sorted(self.found.values(), key=lambda f: (f.line, f.rule))

    def report(self, rule_id: str, node: ast.AST, detail: str | None = None) -> None:
        line = getattr(node, "lineno", 1)
        self.found.setdefault((rule_id, line), _finding(rule_id, line, detail))

    def bind(self, target: ast.expr, value: ast.expr) -> None:
        super().bind(target, value)
        if not isinstance(target, ast.Name):
            return
        if self.from_literals(value):
            self.literal_names.add(target.id)
        if code_kind(name := file_name_of(value, self.file_name)):
            self.file_names[target.id] = name or ""

    def file_name(self, name: str) -> str | None:
        return self.file_names.get(name) or self.lookup_string(name)

    def from_literals(self, node: ast.expr) -> bool:
        """True for data built only from constants in the source (``zlib.decompress(b"...")``).

        Only pure transforms count: bytes read from a file or a queue are data, never a payload.
        """
        match node:
            case ast.Constant(value=str() | bytes()):
                return True
            case ast.Name(id=name):
                return name in self.literal_names or self.lookup_string(name) is not None
            case ast.BinOp(left=left, op=ast.Add(), right=right):
                return self.from_literals(left) and self.from_literals(right)
            case ast.Call(func=ast.Attribute(attr="fromhex"), args=[first]):
                return self.from_literals(first)  # bytes.fromhex("..."): the literal is the argument
            case ast.Call(func=ast.Attribute(value=value, attr=attr)) if attr in LITERAL_METHODS:
                return self.from_literals(value)  # data.replace(b"\r", b"") is still the data
            case ast.Call(func=func, args=[first, *_]) if self.qualify(func) in LITERAL_TRANSFORMS:
                return self.from_literals(first)
        return False

    def check_reference(self, node: ast.expr) -> str | None:
        qualified = self.qualify(node)
        if qualified and qualified != GLOBALS:
            self.loading.note_reference(node, qualified)
        rule_id = rules.rule_for_name(qualified) if qualified and qualified != GLOBALS else None
        if rule_id and qualified:
            spelled = ast.unparse(node)
            self.report(
                rule_id, node, None if spelled == qualified.removeprefix("builtins.") else f"{spelled} is {qualified}"
            )
        return rule_id

    def check_attr_name(self, node: ast.AST, base: str | None, attr: str, obfuscated: bool) -> None:
        """An attribute reached by name (getattr, a namespace lookup): resolve it, or judge the name."""
        rule_id = rules.rule_for_name(rules.canonical_name(f"{base}.{attr}")) if base else None
        rule_id = rule_id or names.INTROSPECTION_ATTRS.get(attr) or names.FORBIDDEN_METHODS.get(attr)
        if rule_id:
            self.report(rule_id, node, f"{base or '…'}.{attr} by name")
        elif base is None and (
            rules.is_dangerous_attr(attr) or (obfuscated and f"builtins.{attr}" in names.FORBIDDEN_NAMES)
        ):
            # The object is unknown, but nobody spells a process starter's name by accident.
            self.report("indirect.computed_attr", node, f"name {attr!r}")

    # visits: references ----------------------------------------------------------------------

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str | bytes):
            if isinstance(node.value, str):
                self.loading.note_literal(node.value, node.lineno)
            if is_pickle_payload(node.value):
                self.report("dyn.pickle", node, "a pickle that calls a function, as a literal")

    def visit_Name(self, node: ast.Name) -> None:
        self.check_name(node, as_value=True)

    def check_name(self, node: ast.Name, as_value: bool) -> None:
        """A name read; ``as_value`` unless it is only the owner of an attribute or a getattr target."""
        if not isinstance(node.ctx, ast.Load):
            return
        if node.id.startswith("__") and node.id in names.INTROSPECTION_ATTRS:
            self.report(names.INTROSPECTION_ATTRS[node.id], node)
        self.check_reference(node)
        if as_value and self.lookup(node.id) in names.NO_VALUE_MODULES:
            self.report("indirect.module_value", node, node.id)

    def visit_owner(self, node: ast.expr) -> None:
        """Visit an expression whose attributes are read, or which an alias is taken from."""
        if isinstance(node, ast.Name):
            self.check_name(node, as_value=False)
        else:
            self.visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_reference(node)
        rule_id = names.INTROSPECTION_ATTRS.get(node.attr) or names.FORBIDDEN_METHODS.get(node.attr)
        if rule_id:
            self.report(rule_id, node, f".{node.attr}")
        if node.attr == "__dict__" and self.sensitive(node.value):
            self.report("indirect.computed_attr", node, ast.unparse(node))
        self.visit_owner(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        space = self.namespace(node.value)
        if space is None:
            self.generic_visit(node)
            return
        self.check_namespace_key(node, space, node.slice)
        self.visit(node.slice)
        self.visit_namespace_parts(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        callee = self.qualify(node.func)
        self.check_call(node, callee)
        self.check_write(node, callee)
        self.check_handed_over(node)
        if self.visit_namespace_call(node):
            return
        if callee in _OWNER_FIRST and node.args:
            self.visit(node.func)
            self.visit_owner(node.args[0])
            for child in (*node.args[1:], *node.keywords):
                self.visit(child)
        else:
            self.generic_visit(node)

    # checks ----------------------------------------------------------------------------------

    def check_call(self, node: ast.Call, callee: str | None) -> None:
        """Calls that are dangerous by what they are given: names, source strings, durations."""
        if callee in _BY_NAME and len(node.args) >= 2:
            self.check_getattr(node, node.args[0], node.args[1])
        elif isinstance(node.func, ast.Attribute) and node.func.attr in _GETATTRIBUTE and node.args:
            # os.__getattribute__("system"), object.__getattribute__(os, "system")
            owner, key = (node.func.value, node.args[0]) if len(node.args) == 1 else node.args[:2]
            self.check_getattr(node, owner, key)
        elif callee in ("operator.attrgetter", "operator.methodcaller"):
            for arg in node.args:
                if (attr := self.fold(arg)) is not None:
                    self.check_attr_name(node, None, attr, obfuscated=not isinstance(arg, ast.Constant))
        elif callee in names.RUNS_SOURCE_STRINGS and self.passes_source(node):
            self.report("dyn.code_module", node, f"{callee} with a source string")
        elif callee in names.SLEEPS:
            seconds = _argument(node, 0, "delay", "secs", "seconds")
            value = fold_number(seconds) if seconds else None
            if value is not None and value > names.LONG_SLEEP_S:
                self.report("time.long_sleep", node, f"{value:g} s")
        elif callee in UNPICKLE_BYTES and node.args and self.from_literals(node.args[0]):
            self.report("dyn.pickle", node, f"{callee} of data built from literals")
        elif callee == "builtins.vars" and node.args and self.sensitive(node.args[0]):
            self.report("indirect.computed_attr", node, ast.unparse(node))

    # checks ----------------------------------------------------------------------------------

    def check_getattr(self, node: ast.Call, target: ast.expr, key: ast.expr) -> None:
        base = self.qualify(target)
        base = None if base == GLOBALS else base
        attr = self.fold(key)
        if attr is not None:
            self.check_attr_name(node, base, attr, obfuscated=not isinstance(key, ast.Constant))
        elif base in names.SENSITIVE_MODULES or (base and rules.rule_for_name(base)):
            self.report("indirect.computed_attr", node, f"getattr({ast.unparse(target)}, {ast.unparse(key)})")

    def check_namespace_key(self, node: ast.AST, space: str, key: ast.expr) -> None:
        attr = self.fold(key)
        if attr is None:
            computed = "indirect.globals" if space == GLOBALS else "indirect.computed_attr"
            self.report(computed, node, f"{space.strip('<>')}[{ast.unparse(key)}]")
        elif space == GLOBALS:
            target = self.lookup(attr)
            rule_id = (rules.rule_for_name(target) if target else None) or names.INTROSPECTION_ATTRS.get(attr)
            if rule_id:
                self.report(rule_id, node, f"globals()[{attr!r}]")
        else:
            self.check_attr_name(node, space, attr, obfuscated=not isinstance(key, ast.Constant))

    def visit_namespace_call(self, node: ast.Call) -> bool:
        """``vars(os).get(name)`` and friends are lookups like ``vars(os)[name]``."""
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr in _NAMESPACE_METHODS and node.args):
            return False
        space = self.namespace(func.value)
        if space is None:
            return False
        self.check_namespace_key(node, space, node.args[0])
        for child in (*node.args, *node.keywords):
            self.visit(child)
        self.visit_namespace_parts(func.value)
        return True

    def visit_namespace_parts(self, space_node: ast.expr) -> None:
        """Visit what a namespace expression is made of, without judging the namespace itself again."""
        match space_node:
            case ast.Attribute(value=value):
                self.visit(value)
            case ast.Call(args=args):
                for arg in args:
                    self.visit(arg)
            case _:
                self.visit(space_node)

    def passes_source(self, node: ast.Call) -> bool:
        source = _argument(node, 0, "stmt")
        return source is not None and (self.fold(source) is not None or isinstance(source, ast.JoinedStr | ast.BinOp))

    def check_handed_over(self, node: ast.Call) -> None:
        """``Process(target=os.system)``, ``pool.map(subprocess.run, …)``: a process starter as a value."""
        for arg in (*node.args, *(k.value for k in node.keywords)):
            if not isinstance(arg, ast.Name | ast.Attribute):
                continue
            qualified = self.qualify(arg)
            rule_id = rules.rule_for_name(qualified) if qualified and qualified != GLOBALS else None
            if rule_id and rule_id.startswith("proc."):
                self.report(
                    "proc.multiprocessing_shell", node, f"{ast.unparse(arg)} passed to {ast.unparse(node.func)}"
                )

    def check_write(self, node: ast.Call, callee: str | None) -> None:
        path_node = self.written_path(node, callee)
        if path_node is None:
            return
        name = file_name_of(path_node, self.file_name)
        if kind := code_kind(name):
            self.loading.writes.append((kind, node.lineno, name or ""))
        path = self.path_of(path_node)
        if path is not None and rules.writes_outside(path):
            self.report("io.write_outside", node, repr(path))

    def written_path(self, node: ast.Call, callee: str | None) -> ast.expr | None:
        func = node.func
        method = func.attr if isinstance(func, ast.Attribute) else None
        if callee in names.WRITE_OPENERS:
            return _argument(node, 0, "file") if self.writes_mode(_argument(node, 1, "mode")) else None
        if isinstance(func, ast.Attribute) and method == "open" and self.path_of(func.value) is not None:
            return func.value if self.writes_mode(_argument(node, 0, "mode")) else None
        if isinstance(func, ast.Attribute) and method in names.PATH_WRITE_METHODS:
            return func.value
        if method in ("rename", "replace") and len(node.args) == 1 and not node.keywords:
            return node.args[0]  # Path.rename(target); str.replace takes two
        if method in names.WRITE_METHODS:
            return _argument(node, 0, "path_or_buf", "path")
        if callee in names.PATH_ARG_WRITERS:
            return _argument(node, names.PATH_ARG_WRITERS[callee], "dst", "file", "f")
        return None

    def writes_mode(self, mode: ast.expr | None) -> bool:
        text = self.fold(mode) if mode is not None else "r"
        return text is not None and bool(set(text) & set("wax+"))

    # visits: imports -------------------------------------------------------------------------

    def note_import(self, node: ast.Import | ast.ImportFrom) -> None:
        nested = any(scope.kind == "function" for scope in self.scopes)
        self.loading.imports.append((node.lineno, nested))

    def visit_Import(self, node: ast.Import) -> None:
        self.note_import(node)
        for alias in node.names:
            module = rules.canonical_name(alias.name)
            self.check_module(node, module, f"import {alias.name}")
            head = alias.name.split(".")[0]
            self.bind_name(alias.asname or head, module if alias.asname else rules.canonical_name(head))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.note_import(node)
        if node.level or not node.module:
            return  # relative imports name the submission's own files
        module = rules.canonical_name(node.module)
        for alias in node.names:
            spelled = f"from {node.module} import {alias.name}"
            if alias.name == "*":
                if module in names.STAR_FORBIDDEN or rules.rule_for_module(module):
                    self.report("indirect.star_import", node, spelled)
                continue
            full = rules.canonical_name(f"{module}.{alias.name}")
            self.check_module(node, full, spelled)
            self.bind_name(alias.asname or alias.name, full)

    def check_module(self, node: ast.stmt, name: str, spelled: str) -> None:
        last = name.rsplit(".", 1)[-1]
        rule_id = rules.rule_for_name(name) or names.INTROSPECTION_ATTRS.get(last) or names.FORBIDDEN_METHODS.get(last)
        if rule_id:
            self.report(rule_id, node, spelled)
        elif rules.is_network_module(name):
            self.report("net.library", node, spelled)


def _argument(node: ast.Call, position: int, *names: str) -> ast.expr | None:
    """A call's argument by position or keyword, if given plainly."""
    if len(node.args) > position and not isinstance(node.args[position], ast.Starred):
        return node.args[position]
    return next((k.value for k in node.keywords if k.arg in names), None)
