"""Routes that load code the scanner never saw: pickle payloads in the source, and written modules.

The visitor records facts while it walks (what files are written, where imports run, whether the
interpreter's own directories are named); ``CodeLoading.findings`` judges them once the walk is done,
because a write and the import that loads it may come in either order of the walk.
"""

from __future__ import annotations

import ast
import base64
import binascii
import pickletools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

# Opcodes by which a pickle calls or builds something by name; plain data pickles never need them
# in a literal, and a literal that unpickles to a call is the payload of a pickle bypass.
_CALLING_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"})
_CALLING_BYTES = (b"c", b"\x93", b"i", b"o", b"R", b"\x81", b"\x92")  # the opcodes above, as bytes
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]{16,}|[A-Za-z0-9_\-=\s]{16,}")
_HEX = re.compile(rb"(?:[0-9a-fA-F]{2}\s*){8,}")
_MIN_PAYLOAD = 8  # the shortest calling pickle, b"cos\nx\n)R.", is 10 bytes

# Unpicklers of bytes (not files): given data built from literals, they run a payload from the source.
UNPICKLE_BYTES = frozenset(
    {"pickle.loads", "_pickle.loads", "pickle.Unpickler", "_pickle.Unpickler", "dill.loads", "cloudpickle.loads"}
)

# Pure functions of bytes: what they return from a literal is still a literal.
LITERAL_TRANSFORMS = frozenset(
    {f"base64.{name}" for name in ("b64decode", "urlsafe_b64decode", "b32decode", "b16decode", "b85decode")}
    | {"base64.a85decode", "base64.decodebytes", "binascii.a2b_base64", "binascii.unhexlify", "binascii.a2b_hex"}
    | {"zlib.decompress", "bz2.decompress", "lzma.decompress", "gzip.decompress", "codecs.decode"}
    | {"builtins.bytes", "builtins.bytearray", "builtins.bytes.fromhex", "io.BytesIO"}
)
LITERAL_METHODS = frozenset({"encode", "decode", "fromhex", "replace", "strip", "translate"})

CodeKind = Literal["module", "native", "pth"]
_SUFFIXES: dict[str, CodeKind] = {
    ".py": "module",
    ".pyc": "module",
    ".pyo": "module",
    ".pyw": "module",
    ".so": "native",
    ".pyd": "native",
    ".dylib": "native",
    ".pth": "pth",
}
# Where the interpreter's site directories are found; a .pth file is only run from one of those.
# ``sys.path`` is left out: ``if here not in sys.path`` is common in research code that saves .pth checkpoints.
SITE_LOCATORS = ("sys.prefix", "sys.base_prefix", "sys.exec_prefix", "sys.base_exec_prefix", "sysconfig.", "site.")
_SITE_WORDS = ("site-packages", "dist-packages")
_STARTUP_NAMES = ("sitecustomize", "usercustomize")


def calls_in_pickle(data: bytes) -> bool:
    """True when ``data`` is a whole pickle stream that calls or builds something by name."""
    if len(data) < _MIN_PAYLOAD or not data.rstrip().endswith(b".") or not any(b in data for b in _CALLING_BYTES):
        return False  # cheap refusals first: parsing a long literal as opcodes is the slow part
    try:
        names = {op.name for op, _, _ in pickletools.genops(data)}
    except (ValueError, KeyError, IndexError, UnicodeDecodeError, EOFError):
        return False
    return bool(names & _CALLING_OPCODES)


def is_pickle_payload(value: str | bytes) -> bool:
    """A literal that is, or base64/hex-encodes, a pickle that calls something."""
    data = value.encode("latin-1", "replace") if isinstance(value, str) else value
    if calls_in_pickle(data):
        return True
    decoded: list[bytes] = []
    if _HEX.fullmatch(data):
        decoded.append(bytes.fromhex(data.decode("ascii")))
    if _BASE64.fullmatch(data):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded.append(decode(data + b"=" * (-len(data.strip()) % 4)))
            except (binascii.Error, ValueError):
                continue
    return any(calls_in_pickle(d) for d in decoded)


def code_kind(file_name: str | None) -> CodeKind | None:
    """What a written file is to Python, by its name: a module, a native library, a .pth file, or data."""
    if file_name is None:
        return None
    name = file_name.strip().lower()
    suffix = name[name.rfind(".") :] if "." in name else ""
    return _SUFFIXES.get(suffix)


def file_name_of(node: ast.expr, named: Callable[[str], str | None]) -> str | None:
    """The last literal piece of a path expression (``out / "model.pth"`` -> ``model.pth``), if any."""
    match node:
        case ast.Constant(value=str() as text):
            return text
        case ast.Name(id=name):
            return named(name)
        case ast.JoinedStr(values=[*_, ast.Constant(value=str() as text)]):
            return text
        case ast.BinOp(op=ast.Div() | ast.Add(), right=right):
            return file_name_of(right, named)
        case ast.Call(func=ast.Attribute(attr="with_suffix" | "with_name"), args=[arg]):
            return file_name_of(arg, named)
        case ast.Call(args=[*_, last]):
            return file_name_of(last, named)  # Path(a, "x.py"), os.path.join(a, "x.py")
    return None


@dataclass
class CodeLoading:
    """What a submission does that could load unscanned code; judged after the walk."""

    writes: list[tuple[CodeKind, int, str]] = field(default_factory=list)
    # (line, inside a function): an import in a function may run after any write.
    imports: list[tuple[int, bool]] = field(default_factory=list)
    site_named_at: int | None = None
    sys_path_at: int | None = None

    def note_reference(self, node: ast.expr, qualified: str) -> None:
        line = getattr(node, "lineno", 1)
        if qualified.startswith("sys.path"):
            self.sys_path_at = self.sys_path_at or line
        if qualified.startswith(SITE_LOCATORS) or qualified.endswith((".__file__", ".__path__")):
            self.site_named_at = self.site_named_at or line

    def note_literal(self, text: str, line: int) -> None:
        if any(word in text for word in _SITE_WORDS):
            self.site_named_at = self.site_named_at or line

    def findings(self) -> list[tuple[int, str]]:
        """(line, detail) for every written file that the job can then load."""
        found = []
        for kind, line, name in self.writes:
            if self.loads(kind, line, name):
                found.append((line, f"writes {name}"))
        return found

    def loads(self, kind: CodeKind, line: int, name: str) -> bool:
        if kind == "native" or any(n in name.lower() for n in _STARTUP_NAMES):
            return True  # LD_PRELOAD, ctypes or a fresh interpreter's start-up load these
        if self.site_named_at is not None:
            return True  # a module or .pth next to the installed packages
        if kind == "pth":
            return False  # elsewhere a .pth file is a torch checkpoint, and Python never reads it
        later_import = any(at > line or nested for at, nested in self.imports)
        return later_import or self.sys_path_at is not None
