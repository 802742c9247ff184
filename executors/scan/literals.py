"""What constant expressions in a submission amount to: folded strings, numbers and file paths.

Obfuscation builds forbidden names from pieces ("sys" + "tem"); folding them back lets the rules see them.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

_MAX_FOLDED = 4096  # longer "constants" are not attribute names; stop before "a" * 10**9
_STR_METHODS = frozenset(
    {"lower", "upper", "strip", "lstrip", "rstrip", "swapcase", "title", "capitalize", "replace", "decode"}
)
_ARITHMETIC: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}


def fold_string(node: ast.AST, named: Callable[[str], str | None]) -> str | None:
    """The string a constant expression builds ("sys" + "tem", "".join([...]), "metsys"[::-1]), if any.

    ``named`` gives the string constant a variable holds, so one indirection does not hide a name.
    """
    text: str | None
    match node:
        case ast.Constant(value=str() | bytes() as value):
            text = value if isinstance(value, str) else value.decode("latin-1")
        case ast.Name(id=name):
            text = named(name)
        case ast.BinOp(left=left, op=ast.Add(), right=right):
            parts = fold_string(left, named), fold_string(right, named)
            text = parts[0] + parts[1] if parts[0] is not None and parts[1] is not None else None
        case ast.JoinedStr(values=values):
            pieces = [fold_string(v, named) for v in values]
            text = "".join(p for p in pieces if p is not None) if None not in pieces else None
        case ast.Subscript(value=value, slice=ast.Slice() as cut) if _constant_slice(cut):
            inner = fold_string(value, named)
            text = inner[_slice_of(cut)] if inner is not None else None
        case ast.Call(
            func=ast.Attribute(value=ast.Constant(value=str() as sep), attr="join"),
            args=[ast.List() | ast.Tuple() as seq],
        ):
            pieces = [fold_string(e, named) for e in seq.elts]
            text = sep.join(p for p in pieces if p is not None) if None not in pieces else None
        case ast.Call(func=ast.Name(id="chr"), args=[ast.Constant(value=int() as code)]) if 0 <= code < 0x110000:
            text = chr(code)
        case ast.Call(func=ast.Attribute(value=value, attr=method), args=args) if method in _STR_METHODS:
            inner = fold_string(value, named)
            consts = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            text = _apply_str_method(inner, method, consts) if len(consts) == len(args) else None
        case _:
            text = None
    return text if text is None or len(text) <= _MAX_FOLDED else None


def _constant_slice(cut: ast.Slice) -> bool:
    parts = (cut.lower, cut.upper, cut.step)
    return all(p is None or fold_number(p) is not None for p in parts)


def _slice_of(cut: ast.Slice) -> slice:
    def bound(p: ast.expr | None) -> int | None:
        return None if p is None else int(fold_number(p) or 0)

    step = bound(cut.step)
    return slice(bound(cut.lower), bound(cut.upper), step if step else None)


def _apply_str_method(text: str | None, method: str, args: list[str]) -> str | None:
    if text is None:
        return None
    if method == "replace":
        return text.replace(args[0], args[1]) if len(args) == 2 else None
    if method == "decode":
        return text  # bytes were already read as latin-1 by fold_string
    return str(getattr(text, method)()) if not args else None


def fold_number(node: ast.AST) -> float | None:
    """The value of a numeric constant expression (``24 * 3600``), if it is one."""
    match node:
        case ast.Constant(value=bool()):
            return None
        case ast.Constant(value=int() | float() as value):
            return float(value)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            inner = fold_number(operand)
            return -inner if inner is not None else None
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _ARITHMETIC:
            a, b = fold_number(left), fold_number(right)
            if a is None or b is None:
                return None
            try:
                return _ARITHMETIC[type(op)](a, b)
            except (ZeroDivisionError, OverflowError):
                return None
    return None


def literal_path(node: ast.AST, is_path_constructor: Callable[[ast.AST], bool]) -> str | None:
    """The path a file argument spells, with ``{}`` for the parts only known at run time."""
    match node:
        case ast.Constant(value=str() as text):
            return text
        case ast.JoinedStr(values=values):
            return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in values)
        case ast.BinOp(left=left, op=ast.Div() | ast.Add() as op, right=right):
            head = literal_path(left, is_path_constructor)
            tail = literal_path(right, is_path_constructor) or "{}"
            sep = "/" if isinstance(op, ast.Div) else ""
            return f"{head}{sep}{tail}" if head is not None else None
        case ast.Call(func=func, args=[first, *rest]) if is_path_constructor(func):
            parts = [literal_path(a, is_path_constructor) or "{}" for a in (first, *rest)]
            return "/".join(parts) if literal_path(first, is_path_constructor) is not None else None
    return None
