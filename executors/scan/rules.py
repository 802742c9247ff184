"""The code scanner's rule table and the name tables its AST visitor matches against.

Every rule lives here once; the visitor in ``executors.scan.scanner`` only decides *which* rule a node hits.
Names are canonical dotted paths (``os.system``) after the visitor has resolved aliases and imports.
"""

from __future__ import annotations

from typing import Literal

import msgspec

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

# --- name tables --------------------------------------------------------------------------------

# Importing these at all is critical: nothing a grading job needs lives in them.
FORBIDDEN_MODULES: dict[str, str] = {
    "subprocess": "proc.subprocess",
    "_posixsubprocess": "proc.subprocess",
    "pty": "proc.pty",
    "asyncio.subprocess": "proc.asyncio_subprocess",
    "multiprocessing.popen_fork": "proc.os_fork",
    "multiprocessing.popen_spawn_posix": "proc.os_spawn",
    "multiprocessing.popen_forkserver": "proc.os_fork",
    "importlib": "dyn.importlib",
    "runpy": "dyn.runpy",
    "code": "dyn.code_module",
    "codeop": "dyn.code_module",
    "ctypes": "native.ctypes",
    "_ctypes": "native.ctypes",
    "cffi": "native.cffi",
    "socket": "net.socket",
    "_socket": "net.socket",
    "webbrowser": "proc.shell_helper",
    "distutils.spawn": "proc.shell_helper",
    "pip": "proc.shell_helper",
    "ensurepip": "proc.shell_helper",
    "pydoc": "proc.shell_helper",
    "mailcap": "proc.shell_helper",
    "numpy.ctypeslib": "native.ctypes",
    "torch.utils.cpp_extension": "native.library",
    "imp": "dyn.import_system",
    "_imp": "dyn.import_system",
    "zipimport": "dyn.import_system",
    "site": "dyn.import_system",
    "_frozen_importlib": "dyn.import_system",
    "_frozen_importlib_external": "dyn.import_system",
    "_xxsubinterpreters": "dyn.subinterpreter",
    "_interpreters": "dyn.subinterpreter",
    "_xxinterpchannels": "dyn.subinterpreter",
    "_interpchannels": "dyn.subinterpreter",
    "interpreters": "dyn.subinterpreter",
    "_testcapi": "dyn.subinterpreter",
    "_testinternalcapi": "dyn.subinterpreter",
}

# Modules other spellings of which resolve to the same thing.
MODULE_ALIASES: dict[str, str] = {"posix": "os", "nt": "os", "_os": "os", "__builtin__": "builtins"}

# Modules on which a computed attribute name (getattr, vars, __dict__) is critical.
SENSITIVE_MODULES = frozenset(
    {
        "os",
        "sys",
        "builtins",
        "asyncio",
        "multiprocessing",
        "shutil",
        "pydoc",
        "platform",
        "operator",
        "asyncio.AbstractEventLoop",
        *FORBIDDEN_MODULES,
    }
)

# Modules worth re-rooting a dotted name at (see ``canonical_name``).
_ROOTS = frozenset(
    {
        "os",
        "sys",
        "builtins",
        "asyncio",
        "multiprocessing",
        "subprocess",
        "importlib",
        "ctypes",
        "socket",
        "pty",
        "runpy",
        "cffi",
    }
)

# Star-importing these puts forbidden callables under bare names.
STAR_FORBIDDEN = frozenset({"os", "builtins", "asyncio", "pydoc", "platform", *FORBIDDEN_MODULES})

# Exact callables (after alias resolution), by canonical name.
FORBIDDEN_NAMES: dict[str, str] = {
    "os.system": "proc.os_system",
    "os.popen": "proc.os_popen",
    "os.startfile": "proc.os_spawn",
    "os.fork": "proc.os_fork",
    "os.forkpty": "proc.os_fork",
    "builtins.eval": "dyn.eval",
    "builtins.exec": "dyn.exec",
    "builtins.compile": "dyn.compile",
    "builtins.__import__": "dyn.dunder_import",
    "builtins.breakpoint": "dyn.exec",
    "pydoc.pipepager": "proc.shell_helper",
    "platform.popen": "proc.shell_helper",
    "cProfile.run": "dyn.code_module",
    "cProfile.runctx": "dyn.code_module",
    "profile.run": "dyn.code_module",
    "profile.runctx": "dyn.code_module",
    "pdb.run": "dyn.code_module",
    "pdb.runeval": "dyn.code_module",
    "pdb.runctx": "dyn.code_module",
    "types.CodeType": "dyn.compile",
    "sys.modules": "indirect.sys_modules",
    "sys._getframe": "indirect.introspection",
    "sys._current_frames": "indirect.introspection",
    "gc.get_objects": "indirect.introspection",
    "gc.get_referrers": "indirect.introspection",
    "gc.get_referents": "indirect.introspection",
    "marshal.load": "dyn.pickle",
    "marshal.loads": "dyn.pickle",
    "sys.meta_path": "dyn.import_system",
    "sys.path_hooks": "dyn.import_system",
    "sys.path_importer_cache": "dyn.import_system",
    "pkgutil.resolve_name": "dyn.import_system",
    "pkgutil.get_importer": "dyn.import_system",
    "pkgutil.get_loader": "dyn.import_system",
    "pkgutil.find_loader": "dyn.import_system",
    "pkgutil.iter_importers": "dyn.import_system",
    "pkgutil.ImpImporter": "dyn.import_system",
    "pkgutil.ImpLoader": "dyn.import_system",
}

# Callables matched by prefix: os.execv, os.spawnlp, os.posix_spawnp, asyncio.create_subprocess_shell …
FORBIDDEN_PREFIXES: tuple[tuple[str, str], ...] = (
    ("os.exec", "proc.os_exec"),
    ("os.spawn", "proc.os_spawn"),
    ("os.posix_spawn", "proc.os_spawn"),
    ("os.fork", "proc.os_fork"),
    ("asyncio.create_subprocess_", "proc.asyncio_subprocess"),
)

# Method names that start programs whatever object they hang off: event loops, and os functions reached
# through a container or a helper (``[os][0].execv``). Nothing else in an ML stack is called this.
FORBIDDEN_METHODS: dict[str, str] = {
    "subprocess_exec": "proc.asyncio_subprocess",
    "subprocess_shell": "proc.asyncio_subprocess",
    "create_subprocess_exec": "proc.asyncio_subprocess",
    "create_subprocess_shell": "proc.asyncio_subprocess",
    "popen": "proc.os_popen",
    "forkpty": "proc.os_fork",
    "posix_spawn": "proc.os_spawn",
    "posix_spawnp": "proc.os_spawn",
    # Stdlib internals that start programs (multiprocessing.util, uuid, platform, asyncio, subprocess).
    "spawnv_passfds": "proc.os_spawn",
    "fork_exec": "proc.subprocess",
    "_make_subprocess_transport": "proc.asyncio_subprocess",
    "_get_command_stdout": "proc.private_helper",
    "_syscmd_file": "proc.private_helper",
    "_syscmd_ver": "proc.private_helper",
    "_syscmd_uname": "proc.private_helper",
    "_read_output": "proc.private_helper",
    "_find_build_tool": "proc.private_helper",
    "_execvpe": "proc.os_exec",
    "_spawnvef": "proc.os_spawn",
    # multiprocessing's spawn/forkserver start whatever executable, and import whatever preload, they are told.
    "set_executable": "proc.os_exec",
    "set_forkserver_preload": "dyn.import_system",
    # Loaders of native code; and the gc walks that hand out every live module without an import.
    "CDLL": "native.library",
    "PyDLL": "native.library",
    "dlopen": "native.library",
    "load_library": "native.library",
    "get_objects": "indirect.introspection",
    "get_referrers": "indirect.introspection",
    "get_referents": "indirect.introspection",
}

# Attributes that name a module whatever they hang off (``glob.os``, ``helper().os``): re-rooted there.
MODULE_ATTRS = frozenset({"os", "_os", "posix", "nt", "sys", "builtins", "__builtin__", "subprocess", "importlib"})

# Modules whose object used as a plain value (in a list, as an argument) can only be hiding a lookup.
NO_VALUE_MODULES = frozenset({"os", "sys", "builtins"})

# Attribute names that only sandbox escapes use.
INTROSPECTION_ATTRS: dict[str, str] = {
    "__subclasses__": "indirect.introspection",
    "__globals__": "indirect.introspection",
    "__code__": "indirect.introspection",
    "__loader__": "indirect.introspection",
    "__builtins__": "indirect.builtins",
    "f_builtins": "indirect.builtins",
    "f_globals": "indirect.builtins",
    "gi_frame": "indirect.introspection",
    "__self__": "indirect.introspection",
    "tb_frame": "indirect.introspection",
}

# What a call to an event-loop getter denotes, so that ``getattr(loop, name)`` is judged like a module's.
EVENT_LOOP = "asyncio.AbstractEventLoop"
LOOP_GETTERS = frozenset(
    {"asyncio.get_running_loop", "asyncio.get_event_loop", "asyncio.new_event_loop", "asyncio.events.get_event_loop"}
)

# Stdlib modules that start programs somewhere inside: their private (_-prefixed) names are off limits.
PRIVATE_HELPER_MODULES = frozenset(
    {"os", "uuid", "platform", "multiprocessing", "asyncio", "shutil", "sysconfig", "tempfile", "concurrent"}
    | {"_osx_support", "_aix_support", "distutils", "ctypes", "webbrowser"}
)
PRIVATE_ALLOWED = frozenset({"os._exit"})

# Builtin names that are lookups into a namespace.
NAMESPACE_BUILTINS = frozenset({"builtins.globals", "builtins.locals", "builtins.vars"})

# Names that run a source string when given one (timeit.timeit("...")).
RUNS_SOURCE_STRINGS = frozenset({"timeit.timeit", "timeit.repeat", "timeit.Timer"})

NETWORK_MODULES = frozenset(
    {
        "requests",
        "urllib",
        "urllib.request",
        "urllib3",
        "http.client",
        "http.server",
        "httpx",
        "aiohttp",
        "ftplib",
        "smtplib",
        "telnetlib",
        "websocket",
        "websockets",
        "paramiko",
        "asyncssh",
        "pycurl",
    }
)
# Pure helpers inside network packages: parsing a URL is not network access.
NETWORK_EXEMPT = frozenset({"urllib.parse", "urllib.error"})

SLEEPS = frozenset({"time.sleep", "asyncio.sleep"})
LONG_SLEEP_S = 3600.0

# Openers that write when given a write mode; methods that always write to their first argument.
WRITE_OPENERS = frozenset({"builtins.open", "io.open", "codecs.open"})
WRITE_METHODS = frozenset({"to_csv", "to_json", "to_parquet", "to_pickle", "to_feather", "to_excel"})
PATH_WRITE_METHODS = frozenset({"write_text", "write_bytes"})
# Module-level writers and the position of the path they write.
PATH_ARG_WRITERS: dict[str, int] = {
    "shutil.copy": 1,
    "shutil.copy2": 1,
    "shutil.copyfile": 1,
    "shutil.move": 1,
    "shutil.copytree": 1,
    "numpy.save": 0,
    "numpy.savez": 0,
    "numpy.savetxt": 0,
    "torch.save": 1,
    "joblib.dump": 1,
    "os.rename": 1,
    "os.replace": 1,
    "os.symlink": 1,
    "os.link": 1,
    "urllib.request.urlretrieve": 1,
    "torch.hub.download_url_to_file": 1,
}
PATH_CONSTRUCTORS = frozenset({"pathlib.Path", "pathlib.PosixPath", "pathlib.PurePath"})
HARMLESS_WRITE_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})


def rule_for_name(qualified: str) -> str | None:
    """The rule a reference to ``qualified`` (canonical dotted name) breaks, if any."""
    if qualified in FORBIDDEN_NAMES:
        return FORBIDDEN_NAMES[qualified]
    for prefix, rule_id in FORBIDDEN_PREFIXES:
        if qualified.startswith(prefix):
            return rule_id
    return rule_for_module(qualified) or _private_helper(qualified)


def _private_helper(qualified: str) -> str | None:
    """``uuid._get_command_stdout``, ``multiprocessing.util._run``: a private name of a process-capable module."""
    root, _, rest = qualified.partition(".")
    if root not in PRIVATE_HELPER_MODULES or qualified in PRIVATE_ALLOWED:
        return None
    private = any(part.startswith("_") and not part.startswith("__") for part in rest.split("."))
    return "proc.private_helper" if private else None


def rule_for_module(module: str) -> str | None:
    """The rule importing ``module`` (or anything under it) breaks, if any."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        rule_id = FORBIDDEN_MODULES.get(".".join(parts[:end]))
        if rule_id:
            return rule_id
    return None


def is_network_module(module: str) -> bool:
    """True for network client/server libraries; ``urllib.parse`` and friends are exempt."""
    if module in NETWORK_EXEMPT or any(module.startswith(m + ".") for m in NETWORK_EXEMPT):
        return False
    parts = module.split(".")
    return any(".".join(parts[:end]) in NETWORK_MODULES for end in range(1, len(parts) + 1))


def canonical_name(dotted: str) -> str:
    """One spelling per callable: ``posix.system``, ``glob.os.system`` and ``os.system`` are the same.

    Modules re-export the modules they import (``shutil.os``), so the name is re-rooted at the last
    component that is itself a module we care about.
    """
    parts = dotted.split(".")
    for i in range(len(parts) - 1, -1, -1):
        root = MODULE_ALIASES.get(parts[i], parts[i])
        if root in _ROOTS:
            return ".".join([root, *parts[i + 1 :]])
    return dotted


# Attribute names worth a finding even when the object they are read from is unknown
# (``getattr(helper(), "system")``): process starters, import hooks and interpreter internals.
_OS_EXEC_NAMES = frozenset(
    f"{verb}{kind}{path}{env}" for verb in ("exec", "spawn") for kind in "lv" for path in ("", "p") for env in ("", "e")
)
FORBIDDEN_METHODS.update(dict.fromkeys(_OS_EXEC_NAMES - {"execl"}, "proc.os_exec"))
FORBIDDEN_METHODS.update({name: "proc.os_spawn" for name in _OS_EXEC_NAMES if name.startswith("spawn")})
_PROCESS_ATTRS = _OS_EXEC_NAMES | {
    "system",
    "popen",
    "startfile",
    "Popen",
    "check_output",
    "check_call",
    "getoutput",
    "getstatusoutput",
    "fork",
    "forkpty",
    "posix_spawn",
    "posix_spawnp",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "__import__",
    "import_module",
}


def is_dangerous_attr(name: str) -> bool:
    """True when reading attribute ``name`` off an unknown object is a red flag by itself."""
    last = name.rsplit(".", 1)[-1]
    return last in _PROCESS_ATTRS or last in INTROSPECTION_ATTRS or last in FORBIDDEN_METHODS


def writes_outside(path: str) -> bool:
    """True for an absolute, home-relative or ``..``-climbing path (device sinks excepted)."""
    path = path.strip()
    if path in HARMLESS_WRITE_TARGETS:
        return False
    return path.startswith(("/", "~", "\\")) or ".." in path.replace("\\", "/").split("/")
