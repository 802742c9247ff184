"""What code this server cannot parse names: the scanner's fallback, by tokens, for newer syntax."""

from __future__ import annotations

import io
import tokenize

# Names that, in code this server cannot parse, are refused anyway: a node running a newer Python
# could parse (and run) it. Common ML names (compile, getattr) are left out on purpose.
_UNPARSED_DANGEROUS = frozenset(
    {
        "system",
        "popen",
        "subprocess",
        "pty",
        "eval",
        "exec",
        "__import__",
        "importlib",
        "runpy",
        "ctypes",
        "cffi",
        "socket",
        "fork",
        "forkpty",
        "posix_spawn",
        "posix_spawnp",
        "spawnl",
        "spawnle",
        "spawnlp",
        "spawnv",
        "spawnve",
        "spawnvp",
        "execl",
        "execle",
        "execlp",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "__builtins__",
        "builtins",
        "create_subprocess_exec",
        "create_subprocess_shell",
        "subprocess_exec",
        "subprocess_shell",
        "marshal",
        "zipimport",
        "ctypeslib",
        "spawnv_passfds",
        "_get_command_stdout",
        "_xxsubinterpreters",
        "_interpreters",
        "get_objects",
        "get_referrers",
    }
)


def dangerous_names(code: str) -> list[tuple[int, str]]:
    """Token-level fallback for code that does not parse: (line, name) of each dangerous name."""
    findings = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.NAME and token.string in _UNPARSED_DANGEROUS:
                findings.append((token.start[0], token.string))
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass  # what was read so far is what counts; the rest cannot be tokenized either
    return findings
