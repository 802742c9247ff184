"""Job arrays and sweeps: reading a Slurm-style ``--array`` spec, expanding a ``sweep:``, naming the
tasks, and the fold of an array's progress from its tasks' changes (pure: no clock, no I/O).

An array is one submission: its tasks are jobs whose ids share the array id's first 20 characters
(``task_id``), so one range of the job table's primary key holds an array's tasks in index order.
A task waits *held* (submitted, not queued) until the placement step releases it; at most the
array's ``width`` tasks are released and not yet ended at any time (docs/design.md, "Arrays").
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ledger.domain.errors import InvalidSpec
from ledger.domain.jobs import JobState

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = 20  # characters an array's id and its tasks' ids share (100 bits: 48 of time, 52 random)
MAX_INDEX = 4_000_000  # Slurm's MaxArraySize is at most 4,000,001
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


class ArraySpec(msgspec.Struct, frozen=True, kw_only=True):
    """What ``--array`` asks: the task indices (sorted, distinct) and at most how many run at once."""

    indices: list[int]
    max_running: int | None = None  # None: no ``%K``


def array_id_from(ulid: str) -> str:
    """The array's id: a ULID whose last six characters are zero, so no task id equals it."""
    return ulid[:PREFIX] + "0" * (26 - PREFIX)


def task_id(array_id: str, ordinal: int) -> str:
    """The job id of the array's ``ordinal``-th task (0-based): ids sort in index order."""
    number, digits = ordinal + 1, []
    for _ in range(26 - PREFIX):
        number, digit = divmod(number, 32)
        digits.append(CROCKFORD[digit])
    return array_id[:PREFIX] + "".join(reversed(digits))


def is_array_id(text: str) -> bool:
    return len(text) == 26 and text.endswith("0" * (26 - PREFIX))


def parse_array_spec(text: str, *, max_tasks: int, default_count: int | None = None) -> ArraySpec:
    """``0-99%8``, ``1,3,5``, ``0-20:5``, or their mix; ``%K`` alone with ``default_count`` (a sweep's
    size) gives indices 0..count-1. Each bad part is named in the error."""
    spec, _, limit = str(text).strip().partition("%")
    max_running = _max_running(limit) if _ else None
    if not spec.strip():
        if default_count is None:
            raise InvalidSpec(f"Invalid array spec {text!r}: no task indices (e.g. 0-99%8, 1,3,5 or 0-20:5)")
        indices = list(range(default_count))
    else:
        indices = sorted({i for part in spec.split(",") for i in _indices(part.strip(), text)})
    if len(indices) > max_tasks:
        raise InvalidSpec(f"Invalid array spec {text!r}: {len(indices)} tasks, at most {max_tasks} (ARRAY_MAX_TASKS)")
    if default_count is not None and len(indices) != default_count:
        raise InvalidSpec(f"Invalid array spec {text!r}: {len(indices)} indices for a sweep of {default_count}")
    return ArraySpec(indices=indices, max_running=max_running)


def _max_running(limit: str) -> int:
    if not limit.strip().isdigit() or int(limit) < 1:
        raise InvalidSpec(f"Invalid array spec: %{limit} must be %K with K a whole number of at least 1")
    return int(limit)


def _indices(part: str, text: str) -> range:
    found = _RANGE.match(part)
    if found is None:
        raise InvalidSpec(f"Invalid array spec {text!r}: cannot read {part!r} (use N, N-M or N-M:STEP)")
    first, last, step = int(found[1]), int(found[2] or found[1]), int(found[3] or 1)
    if last < first or step < 1:
        raise InvalidSpec(f"Invalid array spec {text!r}: {part!r} is an empty range")
    if last > MAX_INDEX:
        raise InvalidSpec(f"Invalid array spec {text!r}: index {last} is above {MAX_INDEX}")
    return range(first, last + 1, step)


def expand_sweep(sweep: object, *, max_tasks: int) -> list[dict[str, Any]]:
    """A mapping of parameter lists, as their product (names sorted, the last name varying fastest),
    or an explicit list of parameter mappings, kept in its order."""
    if isinstance(sweep, Mapping):
        names = sorted(str(name) for name in sweep)
        for name in names:
            _check_name(name)
            if not isinstance(sweep[name], list) or not sweep[name]:
                raise InvalidSpec(f"Invalid field sweep: {name} must be a non-empty list of values")
            for value in sweep[name]:
                _check_value(name, value)
        size = 1
        for name in names:
            size *= len(sweep[name])
        _check_size(size, max_tasks)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*(sweep[n] for n in names))]
    if isinstance(sweep, list) and sweep:
        _check_size(len(sweep), max_tasks)
        for i, params in enumerate(sweep):
            if not isinstance(params, Mapping):
                raise InvalidSpec(f"Invalid field sweep: item {i} must be a mapping of parameters")
            for name, value in params.items():
                _check_name(str(name))
                _check_value(str(name), value)
        return [{str(k): v for k, v in params.items()} for params in sweep]
    raise InvalidSpec("Invalid field sweep: a mapping of parameter lists or a list of parameter mappings")


def _check_name(name: str) -> None:
    if not PARAM_NAME.match(name):
        raise InvalidSpec(f"Invalid field sweep: parameter name {name!r} must be a word (letters, digits, _)")


def _check_value(name: str, value: object) -> None:
    """A string parameter goes into the environment as it is: no NUL byte (execve refuses it)."""
    if isinstance(value, str) and "\x00" in value:
        raise InvalidSpec(f"Invalid field sweep: a value of {name} holds a NUL character")


def _check_size(size: int, max_tasks: int) -> None:
    if size > max_tasks:
        raise InvalidSpec(f"Invalid field sweep: {size} parameter sets, at most {max_tasks} (ARRAY_MAX_TASKS)")


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """A task's parameters as environment variables: strings as they are, anything else as JSON."""
    return {
        f"GPULEDGER_PARAM_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in params.items()
    }


def array_env(job: JobState) -> dict[str, str]:
    """The variables a task sees (Slurm's name too, so Slurm scripts port unchanged); none for a job."""
    if job.array_id is None:
        return {}
    index = str(job.array_index)
    env = {"GPULEDGER_ARRAY_ID": job.array_id, "GPULEDGER_ARRAY_TASK_ID": index, "SLURM_ARRAY_TASK_ID": index}
    return {**env, **param_env(job.params or {})}


# --- the fold of an array's progress -------------------------------------------------------------


class ArrayProgress(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An array with tasks not yet ended: how many, and which wait held, in index order from ``head``
    (releasing the next task moves ``head``: no copy of the rest)."""

    array_id: str
    user_id: str
    width: int
    active: int = 0  # tasks not yet ended, held ones included
    held: tuple[str, ...] = ()
    head: int = 0

    @property
    def waiting(self) -> tuple[str, ...]:
        return self.held[self.head :]

    @property
    def released(self) -> int:
        """Tasks let into the queue (or beyond) and not yet ended."""
        return self.active - (len(self.held) - self.head)

    def to_release(self) -> list[str]:
        """The held tasks to queue now, in index order, so that at most ``width`` are released."""
        room = max(0, self.width - self.released)
        return list(self.held[self.head : self.head + room])


def is_held(job: JobState) -> bool:
    """A task submitted (and scanned) but not yet let into the queue (nor waiting on dependencies)."""
    waiting = job.after is not None and not job.dependencies_met
    return job.array_id is not None and job.status == "pending" and job.phase == "submitted" and not waiting


def track_task(progress: ArrayProgress | None, before: JobState | None, after: JobState) -> ArrayProgress | None:
    """One task's change folded into its array's progress; None once no task is active or held."""
    assert after.array_id is not None
    if progress is None:
        progress = ArrayProgress(array_id=after.array_id, user_id=after.user_id, width=after.array_width)
    was_active, was_held = before is not None and before.is_active, before is not None and is_held(before)
    active = progress.active + int(after.is_active) - int(was_active)
    held, head = progress.held, progress.head
    if was_held and not is_held(after):
        if held[head] == after.job_id:
            head += 1
        else:
            held, head = tuple(t for t in held[head:] if t != after.job_id), 0
    elif is_held(after) and not was_held:
        held, head = _insert(held[head:], after.job_id) if head else _insert(held, after.job_id), 0
    if head == len(held):
        held, head = (), 0
    if active == 0 and not held:
        return None
    return msgspec.structs.replace(progress, active=active, held=held, head=head)


def _insert(held: tuple[str, ...], job_id: str) -> tuple[str, ...]:
    if not held or held[-1] < job_id:  # tasks arrive in index order: the common case is an append
        return (*held, job_id)
    return tuple(sorted((*held, job_id)))


def progress_of(tasks: Iterable[JobState]) -> ArrayProgress | None:
    """The progress folded from the tasks' current states alone (what a load from the tables derives)."""
    progress = None
    for task in sorted(tasks, key=lambda t: t.job_id):
        progress = track_task(progress, None, task)
    return progress


def counts_of(tasks: Iterable[JobState]) -> dict[str, int]:
    """An array's tasks by status (held tasks count as ``pending``)."""
    counts = dict.fromkeys(("pending", "running", "completed", "failed", "cancelled"), 0)
    for task in tasks:
        counts[task.status] += 1
    return counts
