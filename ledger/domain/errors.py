"""Errors of the ledger and the domain.

LedgerError
├── SettingsError            a setting is missing or malformed (names the setting)
├── SchemaError              the database is newer than this code, or a migration failed
│   └── NoSchema             the file holds no gpuledger schema at all (a copy without its WAL?)
├── StoreError               the database could not be read or written
│   └── LedgerUnavailable    the ledger cannot write now (disk full, I/O error); nothing was written
├── ConcurrencyConflict      expected stream version did not match; nothing written
│   └── IdempotencyConflict  same idempotency key, different payload
└── DomainError              a command is not allowed in the current state
    ├── NotFound             no such job / node / token
    ├── InvalidTransition    e.g. cancelling a finished job
    ├── LimitExceeded        rate or active-job limit (carries retry_after)
    │   └── QuotaExceeded    a daily quota is used up (carries which, used, left, resets_at)
    ├── NotAllowed           the user's policy does not allow what was asked (a priority, GPUs)
    ├── InvalidSpec          an array or sweep spec that cannot be read (names the bad part)
    └── ArchiveRefused       a project archive holds what may not be unpacked (names the member)
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error raised by gpuledger's core."""


class SettingsError(LedgerError):
    pass


class SchemaError(LedgerError):
    pass


class NoSchema(SchemaError):
    pass


class StoreError(LedgerError):
    pass


class LedgerUnavailable(StoreError):
    """A write refused by the disk, not by the rules: the same request may succeed later."""

    def __init__(self, message: str, *, full: bool = False) -> None:
        super().__init__(message)
        self.full = full  # no space left (the reserve or a postponed projection write may make room)


class ConcurrencyConflict(LedgerError):
    pass


class IdempotencyConflict(ConcurrencyConflict):
    pass


class DomainError(LedgerError):
    pass


class NotFound(DomainError):
    pass


class InvalidTransition(DomainError):
    pass


class LimitExceeded(DomainError):
    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(LimitExceeded):
    def __init__(self, message: str, retry_after: int, details: dict[str, object]) -> None:
        super().__init__(message, retry_after)
        self.details = details


class NotAllowed(DomainError):
    pass


class InvalidSpec(DomainError):
    """An ``--array`` or ``sweep:`` spec that cannot be read; the message names the bad part."""


class ArchiveRefused(DomainError):
    """A project archive that is not a plain tree of files: ``..``, an absolute path, a link leading out,
    a device. Its message names the member."""
