"""Wire schemas of the array endpoints (``api.controllers.arrays``); never the ledger's event classes."""

from __future__ import annotations

from typing import Any

import msgspec


class ArrayAccepted(msgspec.Struct, kw_only=True):
    array_id: str
    tasks: int
    width: int  # at most this many tasks are released (queued or running) at once
    message: str
    warnings: list[str] = []


class ArrayTask(msgspec.Struct, kw_only=True):
    job_id: str
    index: int
    status: str
    phase: str
    reason: str | None = None
    exit_code: int | None = None
    params: dict[str, Any] | None = None


class ArrayStatus(msgspec.Struct, kw_only=True):
    array_id: str
    user_id: str
    tasks: int
    width: int
    counts: dict[str, int]  # tasks by status: pending (held ones included), running, completed, failed, cancelled
    done: bool  # every task has ended
    task_list: list[ArrayTask] = []


class BulkCancelAnswer(msgspec.Struct, kw_only=True):
    message: str
    cancelled: int  # jobs whose cancel this request recorded
    job_ids: list[str] = []
