"""The name tables the scanner's rules match against: modules, callables and attributes, by canonical name.

Pure data; ``executors.scan.rules`` says what each rule id means and how a dotted name finds its rule.
"""

from __future__ import annotations

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
ROOTS = frozenset(
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
    {"os", "uuid", "platform", "multiprocessing", "asyncio", "_osx_support", "_aix_support", "distutils", "ctypes"}
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


# Attribute names worth a finding even when the object they are read from is unknown
# (``getattr(helper(), "system")``): process starters, import hooks and interpreter internals.
OS_EXEC_NAMES = frozenset(
    f"{verb}{kind}{path}{env}" for verb in ("exec", "spawn") for kind in "lv" for path in ("", "p") for env in ("", "e")
)
FORBIDDEN_METHODS.update(dict.fromkeys(OS_EXEC_NAMES - {"execl"}, "proc.os_exec"))
FORBIDDEN_METHODS.update({name: "proc.os_spawn" for name in OS_EXEC_NAMES if name.startswith("spawn")})
PROCESS_ATTRS = OS_EXEC_NAMES | {
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
