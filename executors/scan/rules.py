"""The code scanner's rule table, and how a canonical dotted name finds the rule it breaks.

Every rule lives here once; the visitor in ``executors.scan.scanner`` only decides *which* rule a node hits.
Names are canonical dotted paths (``os.system``) after the visitor has resolved aliases and imports.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from executors.scan import names

Severity = Literal["critical", "warning", "info"]


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """One thing the scanner looks for: a stable id, how bad it is, what to say and why it matters."""

    id: str
    severity: Severity
    message: str
    why: str


def _critical(rule_id: str, message: str, why: str) -> Rule:
    return Rule(id=rule_id, severity="critical", message=message, why=why)


def _warning(rule_id: str, message: str, why: str) -> Rule:
    return Rule(id=rule_id, severity="warning", message=message, why=why)


_SHELL = "a job may only run Python on its GPU; a child process escapes every limit we enforce"
_DYNAMIC = "code built at run time cannot be scanned, so it could do anything the scanner forbids"
_LOADED = "code the job loads at run time from data or files it wrote was never scanned"
_INDIRECT = "reaching a forbidden callable by a computed or aliased name is the usual way past a scanner"

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        _critical("proc.os_system", "os.system executes a shell command", _SHELL),
        _critical("proc.os_popen", "os.popen executes a shell command", _SHELL),
        _critical("proc.os_exec", "os.exec* replaces the job with another program", _SHELL),
        _critical("proc.os_spawn", "os.spawn*/posix_spawn* starts another program", _SHELL),
        _critical("proc.os_fork", "os.fork* creates a process outside the job's control", _SHELL),
        _critical("proc.subprocess", "subprocess starts other programs", _SHELL),
        _critical("proc.pty", "pty spawns programs on a pseudo-terminal", _SHELL),
        _critical("proc.asyncio_subprocess", "asyncio subprocess APIs start other programs", _SHELL),
        _critical(
            "proc.multiprocessing_shell",
            "a process-starting callable is handed to another API (multiprocessing, threads, callbacks)",
            _SHELL,
        ),
        _critical("proc.shell_helper", "a library helper that runs a shell command", _SHELL),
        _critical(
            "proc.private_helper",
            "a private (_-prefixed) helper of a stdlib module that can start programs",
            "private helpers such as uuid._get_command_stdout run commands behind the public API's back",
        ),
        _critical("dyn.eval", "eval runs code built at run time", _DYNAMIC),
        _critical("dyn.exec", "exec runs code built at run time", _DYNAMIC),
        _critical("dyn.compile", "compile builds code objects at run time", _DYNAMIC),
        _critical("dyn.dunder_import", "__import__ imports modules by computed name", _DYNAMIC),
        _critical("dyn.importlib", "importlib imports modules by computed name", _DYNAMIC),
        _critical("dyn.runpy", "runpy runs other modules or files as code", _DYNAMIC),
        _critical("dyn.code_module", "code/codeop/profilers/timeit run source strings as code", _DYNAMIC),
        _critical("dyn.pickle", "unpickles data built into the code, or unmarshals code objects", _LOADED),
        _critical(
            "dyn.written_code",
            "writes a Python module, native library or site .pth file that it can then load",
            _LOADED,
        ),
        _critical("dyn.import_system", "imp/zipimport/site/pkgutil loaders or sys import hooks", _LOADED),
        _critical("dyn.subinterpreter", "subinterpreters run source strings as code", _DYNAMIC),
        _critical("native.ctypes", "ctypes calls native code directly", "native calls bypass Python entirely"),
        _critical("native.cffi", "cffi calls native code directly", "native calls bypass Python entirely"),
        _critical(
            "native.library",
            "loads a native library or compiles native code at run time",
            "native calls bypass Python entirely",
        ),
        _critical("scan.unscannable", "code nested too deeply to scan", "what cannot be scanned is not run"),
        _critical(
            "scan.unparsed_dangerous_name",
            "code that does not parse here names a process, code or native API",
            "a node's newer Python may run what this server's parser cannot read",
        ),
        _critical("net.socket", "raw socket access", "raw sockets can open shells and exfiltrate data"),
        _critical(
            "indirect.star_import",
            "star import from a module with process or code execution",
            "it brings forbidden callables in under their bare names",
        ),
        _critical(
            "indirect.computed_attr",
            "getattr/vars/__dict__ with a computed name on a sensitive module or builtins",
            _INDIRECT,
        ),
        _critical("indirect.module_value", "os/sys/builtins module passed around as a value", _INDIRECT),
        _critical("indirect.builtins", "__builtins__ or frame builtins access", _INDIRECT),
        _critical("indirect.sys_modules", "sys.modules lookup", _INDIRECT),
        _critical("indirect.globals", "globals()/locals()/vars() lookup with a computed name", _INDIRECT),
        _critical(
            "indirect.introspection",
            "interpreter internals (__subclasses__, __globals__, __code__, …)",
            "walking object internals reaches os and builtins without importing them",
        ),
        _warning(
            "io.write_outside",
            "writes a file outside the job's workdir",
            "jobs share nodes; they must keep their files in their own workdir",
        ),
        _warning(
            "net.library",
            "imports a network library",
            "jobs should not need the network; downloads and uploads are worth a look",
        ),
        _warning(
            "time.long_sleep", "sleeps for more than an hour", "a sleeping job holds a GPU that others are waiting for"
        ),
    )
}


def rule_for_name(qualified: str) -> str | None:
    """The rule a reference to ``qualified`` (canonical dotted name) breaks, if any."""
    if qualified in names.FORBIDDEN_NAMES:
        return names.FORBIDDEN_NAMES[qualified]
    for prefix, rule_id in names.FORBIDDEN_PREFIXES:
        if qualified.startswith(prefix):
            return rule_id
    return rule_for_module(qualified) or _private_helper(qualified)


def _private_helper(qualified: str) -> str | None:
    """``uuid._get_command_stdout``, ``multiprocessing.util._run``: a private name of a process-capable module."""
    root, _, rest = qualified.partition(".")
    if root not in names.PRIVATE_HELPER_MODULES or qualified in names.PRIVATE_ALLOWED:
        return None
    private = any(part.startswith("_") and not part.startswith("__") for part in rest.split("."))
    return "proc.private_helper" if private else None


def rule_for_module(module: str) -> str | None:
    """The rule importing ``module`` (or anything under it) breaks, if any."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        rule_id = names.FORBIDDEN_MODULES.get(".".join(parts[:end]))
        if rule_id:
            return rule_id
    return None


def is_network_module(module: str) -> bool:
    """True for network client/server libraries; ``urllib.parse`` and friends are exempt."""
    if module in names.NETWORK_EXEMPT or any(module.startswith(m + ".") for m in names.NETWORK_EXEMPT):
        return False
    parts = module.split(".")
    return any(".".join(parts[:end]) in names.NETWORK_MODULES for end in range(1, len(parts) + 1))


def canonical_name(dotted: str) -> str:
    """One spelling per callable: ``posix.system``, ``glob.os.system`` and ``os.system`` are the same.

    Modules re-export the modules they import (``shutil.os``), so the name is re-rooted at the last
    component that is itself a module we care about.
    """
    parts = dotted.split(".")
    for i in range(len(parts) - 1, -1, -1):
        root = names.MODULE_ALIASES.get(parts[i], parts[i])
        if root in names.ROOTS:
            return ".".join([root, *parts[i + 1 :]])
    return dotted


def is_dangerous_attr(name: str) -> bool:
    """True when reading attribute ``name`` off an unknown object is a red flag by itself."""
    last = name.rsplit(".", 1)[-1]
    return last in names.PROCESS_ATTRS or last in names.INTROSPECTION_ATTRS or last in names.FORBIDDEN_METHODS


def writes_outside(path: str) -> bool:
    """True for an absolute, home-relative or ``..``-climbing path (device sinks excepted)."""
    path = path.strip()
    if path in names.HARMLESS_WRITE_TARGETS:
        return False
    return path.startswith(("/", "~", "\\")) or ".." in path.replace("\\", "/").split("/")
