"""The submit config (YAML or JSON): parsed with bounds, typed, each bad field named in a 400.

The config may be read before its sender is known (old clients put the token in it), so the parser
is bounded: a flat mapping of at most ``MAX_FIELDS`` fields, nesting at most ``MAX_DEPTH`` levels,
no anchors or aliases, and numbers of at most ``MAX_DIGITS`` digits, all checked on the composed
node tree before any Python value is built.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec
import yaml

from api.errors import BadRequest
from ledger.domain.clock import DURATION_HELP, duration_s
from ledger.domain.dependencies import parse_after
from ledger.domain.errors import DomainError
from ledger.domain.events import After
from ledger.domain.retries import MAX_RETRIES
from ledger.domain.shares import MAX_PRIORITY, MIN_PRIORITY, PRIORITY_LEVELS
from ledger.store.settings import parse_bytes

COMPETITION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The mapping, a field's value, and two levels inside it (a sweep: lists of values, or a list of mappings).
MAX_DEPTH = 4
MAX_FIELDS = 32
MAX_DIGITS = 30
INT_TAG = "tag:yaml.org,2002:int"
KNOWN_FIELDS = (
    "competition_id",
    "project_id",
    "user_id",
    "expected_time",
    "token",
    "gpus",
    "retries",
    "retry_on_exit_codes",
    "priority",
    "memory",
    "notify",
    "array",
    "sweep",
    "entrypoint",
    "args",
    "artifacts",
    "resume_from",
    "after",
)
MAX_RETRY_EXIT_CODES = 16
REQUIRED_FIELDS = ("competition_id", "project_id", "expected_time")  # user_id: the token's user by default
CLOSE_ENOUGH = 0.8  # difflib ratio from which an unknown field is taken for a typo of a known one (gpu: gpus)


class JobConfig(msgspec.Struct, frozen=True, kw_only=True):
    competition_id: str
    project_id: str
    user_id: str | None  # None: the token's user
    expected_time: int
    token: str | None = None
    gpus: int = 1
    retries: int | None = None  # None: the server's RETRIES
    retry_on_exit_codes: list[int] = []
    priority: int | None = None  # a level asked for (None: the user's own)
    memory: int | None = None  # bytes asked for (None: the job's slots' part of its node's memory)
    notify: list[str] | None = None  # targets told when the job ends (None: the user's default; []: none)
    array: str | None = None  # a job array's spec (``0-99%8``): read by ``api.arrays``
    sweep: Any = None  # a sweep's parameter lists or sets, as written: read by ``api.arrays``
    entrypoint: str | None = None  # a project's file that runs
    args: list[str] = []
    artifacts: list[str] = []  # globs kept after the job besides outputs/
    resume_from: str | None = None
    after: After | None = None  # dependencies (ledger.domain.dependencies)
    warnings: list[str] = []

    def sanitized(self) -> dict[str, Any]:
        """What the ledger keeps: never the token."""
        return {
            "competition_id": self.competition_id,
            "project_id": self.project_id,
            "user_id": self.user_id,
            "expected_time": self.expected_time,
            **({"gpus": self.gpus} if self.gpus != 1 else {}),  # one GPU keeps the shape older jobs have
            **({"retries": self.retries} if self.retries is not None else {}),
            **({"retry_on_exit_codes": self.retry_on_exit_codes} if self.retry_on_exit_codes else {}),
            **({"priority": self.priority} if self.priority is not None else {}),
            **({"memory": self.memory} if self.memory is not None else {}),
            **{k: v for k, v in self.project_fields().items() if v},
            **({"after": msgspec.to_builtins(self.after)} if self.after is not None else {}),
        }

    def project_fields(self) -> dict[str, Any]:
        return {
            "entrypoint": self.entrypoint,
            "args": self.args,
            "artifacts": self.artifacts,
            "resume_from": self.resume_from,
        }


class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """PyYAML's safe loader that refuses aliases and nesting deeper than ``MAX_DEPTH``.

    The depth is checked while composing, so a deeply nested document never reaches recursion.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise BadRequest("Invalid YAML format: anchors and aliases are not accepted in a config")
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise BadRequest("Invalid YAML format: anchors and aliases are not accepted in a config")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise BadRequest(f"Invalid YAML format: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_tree(root: yaml.Node | None) -> None:
    if not isinstance(root, yaml.MappingNode):
        raise BadRequest("Invalid YAML format: the config must be a mapping of fields")
    if len(root.value) > MAX_FIELDS:
        raise BadRequest(f"Invalid YAML format: at most {MAX_FIELDS} fields")
    for key, value in root.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else "?"
        if isinstance(key, yaml.ScalarNode) and (len(key.value) > 128 or key.tag == INT_TAG):
            raise BadRequest("Invalid YAML format: field names are words of at most 128 characters")
        if isinstance(value, yaml.ScalarNode) and value.tag == INT_TAG and len(value.value) > MAX_DIGITS:
            raise BadRequest(f"Invalid field {name}: a number of at most {MAX_DIGITS} digits")


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's complaint and where, in one line (no "<unicode string>" marks)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{error.problem}{where}"
    if isinstance(error, yaml.reader.ReaderError):
        return f"unacceptable character at position {error.position}"
    return str(error).splitlines()[0]


def _load(text: str) -> dict[str, Any]:
    # JSON is read by the same parser: YAML 1.2 is a superset.
    loader = None
    try:
        loader = BoundedLoader(text)
        root = loader.get_single_node()
        _check_tree(root)
        data = loader.construct_document(root)
    except yaml.YAMLError as e:
        raise BadRequest(f"Invalid YAML format: {_yaml_problem(e)}") from e
    except (ValueError, OverflowError) as e:  # e.g. a timestamp like 2024-13-45 or a huge float
        raise BadRequest(f"Invalid YAML format: a value cannot be read ({e})") from e
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise BadRequest("Invalid YAML format: the config must be a mapping of fields")
    return data


def _text_field(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"Invalid field {name}: must be a string")
    text = str(value).strip()
    if not text:
        raise BadRequest(f"Invalid field {name}: must not be empty")
    if len(text) > 128 or any(ord(c) < 32 for c in text):
        raise BadRequest(f"Invalid field {name}: at most 128 printable characters")
    return text


def _gpus_field(data: dict[str, Any], largest_node: int, cpu_slots: bool) -> int:
    gpus = data.get("gpus", 1)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise BadRequest("Invalid field gpus: must be a whole number of GPUs (0 for a CPU-only job)")
    if gpus == 0 and not cpu_slots:
        raise BadRequest("Invalid field gpus: 0 (CPU-only) needs a node without GPUs, and every node has GPUs")
    if gpus > largest_node:
        raise BadRequest(f"Invalid field gpus: {gpus} GPUs is more than the largest node has ({largest_node})")
    return gpus


def _retries_field(data: dict[str, Any]) -> int | None:
    retries = data.get("retries")
    if retries is None:
        return None
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise BadRequest(f"Invalid field retries: must be an integer between 0 and {MAX_RETRIES}")
    return retries


def _exit_codes_field(data: dict[str, Any]) -> list[int]:
    codes = data.get("retry_on_exit_codes")
    if codes is None:
        return []
    if not isinstance(codes, list) or len(codes) > MAX_RETRY_EXIT_CODES:
        raise BadRequest(f"Invalid field retry_on_exit_codes: must be a list of at most {MAX_RETRY_EXIT_CODES} codes")
    if any(isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255 for code in codes):
        raise BadRequest("Invalid field retry_on_exit_codes: each code must be an integer between 1 and 255")
    return sorted(set(codes))


def _priority_field(data: dict[str, Any]) -> int | None:
    """``low``, ``normal``, ``high`` or a whole level; whether the user may ask for it is the ledger's check."""
    value = data.get("priority")
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in PRIORITY_LEVELS:
        return PRIORITY_LEVELS[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and MIN_PRIORITY <= value <= MAX_PRIORITY:
        return value
    raise BadRequest(
        f"Invalid field priority: use low, normal, high or a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}"
    )


MIN_MEMORY = 16 << 20  # below this not even the interpreter starts: a typo, said at submit


def _memory_field(data: dict[str, Any], largest_memory: int | None) -> int | None:
    """``memory: 8G`` (or bytes), at most what the largest node gives its jobs."""
    value = data.get("memory")
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("not a size")
        memory = parse_bytes(value)
    except ValueError:
        raise BadRequest("Invalid field memory: use bytes or a size like 512M or 8G") from None
    if memory < MIN_MEMORY:
        raise BadRequest(f"Invalid field memory: at least {MIN_MEMORY >> 20}M")
    if largest_memory is not None and memory > largest_memory:
        raise BadRequest(
            f"Invalid field memory: {_mib(memory)} is more than the largest node gives a job ({_mib(largest_memory)})"
        )
    return memory


def _notify_field(data: dict[str, Any]) -> list[str] | None:
    """A URL or a list of URLs (the targets themselves are checked against the server's settings later)."""
    value = data.get("notify")
    if value is None:
        return None
    targets = [value] if isinstance(value, str) else value
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise BadRequest("Invalid field notify: must be a URL or a list of URLs")
    return targets


def _array_field(data: dict[str, Any]) -> str | None:
    value = data.get("array")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest("Invalid field array: a spec like 0-99%8, 1,3,5 or 0-20:5")
    return str(value)


def _after_field(data: dict[str, Any]) -> After | None:
    try:
        return parse_after(data.get("after"))
    except DomainError as e:
        raise BadRequest(str(e)) from None


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def _expected_time_field(data: dict[str, Any], max_expected_time: int) -> int:
    expected = data["expected_time"]
    if isinstance(expected, bool) or not isinstance(expected, int | str):
        raise BadRequest(f"Invalid field expected_time: must be {DURATION_HELP}")
    try:
        seconds = duration_s(expected)
    except ValueError as e:
        raise BadRequest(f"Invalid field expected_time: {e}") from None
    if not 1 <= seconds <= max_expected_time:
        raise BadRequest(f"Invalid field expected_time: must be between 1 and {max_expected_time} seconds")
    return seconds


MAX_LIST = 64  # entries of args and artifacts
PATH_TEXT = re.compile(r"^[^\x00-\x1f]{1,1024}$")


def _list_field(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if value is None:
        return []
    if isinstance(value, str) and name == "artifacts":
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise BadRequest(f"Invalid field {name}: must be a list of at most {MAX_LIST} strings")
    if any(isinstance(v, bool) or not isinstance(v, str | int | float) for v in value):
        raise BadRequest(f"Invalid field {name}: each entry must be a string")
    texts = [str(v) for v in value]
    if any(not PATH_TEXT.match(t) for t in texts):
        raise BadRequest(f"Invalid field {name}: entries of 1 to 1024 printable characters")
    return texts


def _entrypoint_field(data: dict[str, Any]) -> str | None:
    value = data.get("entrypoint")
    if value is None:
        return None
    if not isinstance(value, str) or not PATH_TEXT.match(value):
        raise BadRequest("Invalid field entrypoint: a path inside the project, like train.py")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if value.startswith("/") or ".." in parts or not parts:
        raise BadRequest(f"Invalid field entrypoint: {value!r} must be a relative path inside the project")
    return "/".join(parts)


def _unknown_fields(data: dict[str, Any]) -> list[str]:
    """Warnings for fields nobody reads; a 400 for one that looks like a typo of a known field, which
    would otherwise be silently ignored (``gpu: 2`` running on one GPU)."""
    unknown = sorted(str(k) for k in data if k not in KNOWN_FIELDS)
    for name in unknown:
        close = difflib.get_close_matches(name, KNOWN_FIELDS, n=1, cutoff=CLOSE_ENOUGH)
        if close:
            raise BadRequest(f"Unknown config field {name}: did you mean `{close[0]}`?")
    return [f"Unknown config field ignored: {name}" for name in unknown]


def parse_config(
    raw: bytes,
    *,
    max_expected_time: int,
    largest_node: int = 1,
    cpu_slots: bool = False,
    largest_memory: int | None = None,
) -> JobConfig:
    """``largest_node``: the GPUs of the biggest node a job can be placed on (a job never spans nodes);
    ``cpu_slots``: some node has slots without GPUs, where ``gpus: 0`` jobs run; ``largest_memory``:
    the most memory a job may ask for (None: not known here, not checked)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"Invalid YAML format: config is not UTF-8 ({e.reason} at byte {e.start})") from e
    data = _load(text)
    for name in REQUIRED_FIELDS:
        if name not in data or data[name] is None:
            raise BadRequest(f"Missing required field: {name}")
    competition_id = _text_field(data, "competition_id")
    if not COMPETITION_ID.match(competition_id):
        raise BadRequest(
            "Invalid field competition_id: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 128)"
        )
    expected = _expected_time_field(data, max_expected_time)
    token = data.get("token")
    if token is not None and not isinstance(token, str):
        raise BadRequest("Invalid field token: must be a string")
    warnings = _unknown_fields(data)
    return JobConfig(
        competition_id=competition_id,
        project_id=_text_field(data, "project_id"),
        user_id=_text_field(data, "user_id") if data.get("user_id") is not None else None,
        expected_time=expected,
        token=token,
        gpus=_gpus_field(data, largest_node, cpu_slots),
        retries=_retries_field(data),
        retry_on_exit_codes=_exit_codes_field(data),
        priority=_priority_field(data),
        memory=_memory_field(data, largest_memory),
        notify=_notify_field(data),
        array=_array_field(data),
        sweep=data.get("sweep"),
        entrypoint=_entrypoint_field(data),
        args=_list_field(data, "args"),
        artifacts=_list_field(data, "artifacts"),
        resume_from=_text_field(data, "resume_from") if data.get("resume_from") is not None else None,
        after=_after_field(data),
        warnings=warnings,
    )
