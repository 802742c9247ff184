"""Errors of the executors: what can go wrong between the server and a node.

    ExecutorError
    ├── NodeLost                 the node stayed unreachable past NODE_LOST_AFTER (the runner gives up)
    ├── NodeUnreachable          connection refused, dropped, reset or timed out; the session is gone
    │   ├── CommandTimedOut      a command outlived its timeout (node hung, or the command is slow)
    │   └── StreamBroken         a job's follow stream ended or garbled before its exit status came
    ├── HostKeyRejected          the host key is unknown (not in SSH_KNOWN_HOSTS) or changed
    ├── AuthenticationFailed     the host refused our key (SSH_KEY_FILE)
    ├── RemoteCommandFailed      the command ran and exited non-zero (carries exit_status, stderr)
    ├── ReplicaError             the [replica] target cannot be used (bad url, no host key, unreachable)
    ├── RemoteFileError          an SFTP transfer failed: no permission, disk full, ...
    │   ├── RemoteFileMissing    no such file or directory
    │   └── RemoteFileTooLarge   the file is bigger than the caller's cap
    ├── JobFileUnreadable        a path the job owns (its results file) is there but cannot be read
    ├── EnvSetupFailed           the job's declared environment could not be built (the job fails)
    └── NotifyError              one try of an end-of-job notification failed (tried again, bounded)
        └── NotifyRefused        the target answered that it never will take it (a 4xx): not tried again

``NodeUnreachable`` is transient: reconnecting may help, and a job on that node keeps running.
``HostKeyRejected`` and ``AuthenticationFailed`` are configuration problems: retrying cannot help.
A connection failure is never reported as an exit status.
"""

from __future__ import annotations


class ExecutorError(Exception):
    """Base of every error raised by an executor."""


class NodeLost(ExecutorError):
    """The node stayed unreachable past NODE_LOST_AFTER."""


class NodeUnreachable(ExecutorError):
    """The node (or the jump host in front of it) could not be reached, or the connection dropped."""


class CommandTimedOut(NodeUnreachable):
    """The command did not finish within its timeout; the connection itself may still be up."""


class StreamBroken(NodeUnreachable):
    """The follow stream of a job ended, or sent what cannot be read, before the job's exit status."""


class HostKeyRejected(ExecutorError):
    """The host's key is not the one pinned in the known_hosts file."""

    def __init__(self, host: str, port: int, known_hosts: str, *, changed: bool) -> None:
        self.host, self.port, self.known_hosts, self.changed = host, port, known_hosts, changed
        if changed:
            why = f"does not match the key pinned in SSH_KNOWN_HOSTS ({known_hosts}): host key changed"
        else:
            why = f"is not in SSH_KNOWN_HOSTS ({known_hosts}): unknown host"
        super().__init__(f"host key of {host} port {port} {why}")


class AuthenticationFailed(ExecutorError):
    """The host did not accept our key."""


class RemoteCommandFailed(ExecutorError):
    """A remote command exited with a non-zero status."""

    def __init__(self, command: str, exit_status: int, stderr: bytes) -> None:
        self.command, self.exit_status, self.stderr = command, exit_status, stderr
        tail = stderr[-500:].decode(errors="replace").strip()
        super().__init__(f"remote command exited {exit_status}: {command!r}" + (f": {tail}" if tail else ""))


class RemoteFileError(ExecutorError):
    """An SFTP transfer failed for a reason other than the connection."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class RemoteFileMissing(RemoteFileError):
    """The remote path does not exist."""


class RemoteFileTooLarge(RemoteFileError):
    """The remote file exceeds the size the caller is willing to fetch."""

    def __init__(self, path: str, size: int, max_bytes: int) -> None:
        self.size, self.max_bytes = size, max_bytes
        super().__init__(path, f"{size} bytes is more than the limit of {max_bytes}")


class ReplicaError(ExecutorError):
    """The replica target cannot be configured or reached (the server keeps serving without it)."""


class JobFileUnreadable(ExecutorError):
    """A job-owned path is a socket, FIFO, directory, symlink, or unreadable: the job's doing, never the
    platform's (the job ends ``results_unreadable``, charged, not retried)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class EnvSetupFailed(ExecutorError):
    """uv could not build the job's declared environment: the job ends ``failed``, ``env_setup_failed``,
    charged for the ``seconds`` the set-up took (``digest``: its cache key, where it got that far)."""

    def __init__(self, message: str, *, seconds: float, digest: str = "") -> None:
        self.seconds, self.digest = seconds, digest
        super().__init__(message)


class NotifyError(ExecutorError):
    """One try of a notification failed: the target was unreachable, timed out or answered an error."""

    tries = 0  # once the tries are over: how many there were


class NotifyRefused(NotifyError):
    """The target refused the notification for good (a 4xx other than 408 and 429): no more tries."""
