"""The event catalogue: every fact the ledger records, as frozen tagged msgspec Structs.

Tags are stable wire names (``job.submitted``). New fields get defaults; field types never change.
An event kind is written in one place: its Struct, under the base of its stream (``JobEvent``,
``NodeEvent``, ``TokenEvent``, ``UserEvent``, ``FairShareEvent``). The decoder's union, the tag
table and the stream of each event are derived from the classes below, and each fold matches on
them (``ledger.domain.jobs.evolve_job``, ...).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Union

import msgspec

from ledger.domain.gpu import GpuSample, GpuSummary


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of every ledger event; a concrete event is a leaf class with a ``tag``."""

    STREAM_PREFIX: ClassVar[str] = ""

    @property
    def stream_key(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} belongs to no stream")


class JobEvent(Event, frozen=True):
    """A fact about one job; its stream is ``job-<job_id>``."""

    STREAM_PREFIX: ClassVar[str] = "job-"
    job_id: str

    @property
    def stream_key(self) -> str:
        return self.job_id


class NodeEvent(Event, frozen=True):
    """A fact about one node; its stream is ``node-<name>``."""

    STREAM_PREFIX: ClassVar[str] = "node-"
    name: str

    @property
    def stream_key(self) -> str:
        return self.name


class TokenEvent(Event, frozen=True):
    """A fact about one API token; its stream is ``token-<token_id>``."""

    STREAM_PREFIX: ClassVar[str] = "token-"
    token_id: str

    @property
    def stream_key(self) -> str:
        return self.token_id


class UserEvent(Event, frozen=True):
    """A fact about one user's standing in the queue (share, priority, caps); its stream is ``user-<user_id>``."""

    STREAM_PREFIX: ClassVar[str] = "user-"
    user_id: str

    @property
    def stream_key(self) -> str:
        return self.user_id


class FairShareEvent(Event, frozen=True):
    """A fact about the fair-share fold of the whole cluster; its one stream is ``fairshare-cluster``."""

    STREAM_PREFIX: ClassVar[str] = "fairshare-"

    @property
    def stream_key(self) -> str:
        return "cluster"


class Blob(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A content-addressed file (code, output, results) kept beside the ledger."""

    digest: str
    size: int
    truncated: bool = False


class Finding(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One observation of the code scanner."""

    rule: str
    line: int
    message: str
    severity: Literal["critical", "warning", "info"]
    path: str | None = None  # the project file it was found in (None: the single submitted file)


# --- jobs -------------------------------------------------------------------------------------


class ProjectFile(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One file of a submitted project directory (the archive's manifest)."""

    path: str  # relative POSIX path inside the project
    size: int


class Artifact(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One file a job left in its workdir (``outputs/`` or an ``artifacts:`` glob), kept as a blob."""

    path: str  # relative POSIX path inside the job's workdir
    size: int
    digest: str


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """How often a job's attempt may be tried again, and on which endings (fixed when it is submitted)."""

    retries: int
    on: list[str] = []  # finish reasons that are retried (node_lost, dispatch_failed, ...)
    exit_codes: list[int] = []  # exit codes of the job itself that are retried (reason exit_nonzero)


class After(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """What a job waits for (Slurm's afterok / afterany / afternotok): ids of jobs or arrays."""

    ok: list[str] = []  # each ended completed (an array: every task completed)
    any: list[str] = []  # each ended, however
    not_ok: list[str] = []  # each ended failed or cancelled (an array: some task did)


class JobSubmitted(JobEvent, frozen=True, tag="job.submitted"):
    user_id: str
    competition_id: str
    project_id: str
    expected_time_s: int
    code: Blob
    config: dict[str, Any] = {}
    idempotency_key: str | None = None
    token_id: str | None = None
    client_address: str | None = None
    gpus: int = 1  # GPUs the job takes, all on one node
    retry: RetryPolicy | None = None  # None: no retries
    asked_priority: int | None = None  # a priority level the job asked for (None: its user's level)
    memory: int | None = None  # bytes of memory the job asked for (None: its slots' part of the node's)
    # A task of an array (ledger.domain.arrays): the array, the task's index there and its place in
    # the array's order (0: the first, which alone counts for the rate limit), the array's width.
    array_id: str | None = None
    array_index: int | None = None
    array_task: int | None = None
    array_width: int = 0
    params: dict[str, Any] | None = None  # a sweep task's parameters
    # A project directory (None: the single file ``code``): the archive, its manifest, what runs in it.
    project: Blob | None = None
    project_files: list[ProjectFile] = []
    entrypoint: str | None = None  # the project file that runs (``code`` holds a copy, for the scanner and UI)
    args: list[str] = []  # the job command's ``{args}``
    artifact_globs: list[str] = []  # kept after the job besides ``outputs/``
    resume_from: str | None = None  # the job whose artifacts are unpacked into this one's workdir first
    after: After | None = None  # dependencies: held until they are met (ledger.domain.dependencies)


class JobScanned(JobEvent, frozen=True, tag="job.scanned"):
    verdict: Literal["approved", "warned", "rejected", "pending"]
    findings: list[Finding] = []
    scanner: Literal["static", "llm"] = "static"
    model: str | None = None


class JobQueued(JobEvent, frozen=True, tag="job.queued"):
    priority: int = 0
    reason: str = "submitted"


class JobDependenciesMet(JobEvent, frozen=True, tag="job.dependencies_met"):
    """Every dependency of a waiting job was met: it may be queued (an array's task: released)."""


class JobDispatched(JobEvent, frozen=True, tag="job.dispatched"):
    node: str
    slot: int = 0
    attempt: int = 1
    workdir: str = ""
    slots: list[int] = []  # every GPU slot the job holds (empty: just ``slot``, as before multi-GPU jobs)
    gpus_held: int | None = None  # 0 on a node without GPUs; None: the job's ``gpus``


class JobHandedOff(JobEvent, frozen=True, tag="job.handed_off"):
    """The attempt was submitted to an outside scheduler: its id there, to re-attach by."""

    attempt: int
    scheduler_id: str
    scheduler: str = "slurm"  # the kind of executor whose scheduler took it (each names its own)


class JobStarted(JobEvent, frozen=True, tag="job.started"):
    node: str
    attempt: int = 1
    pid: int = 0
    pgid: int = 0
    started_at_node: str | None = None


class JobCancelRequested(JobEvent, frozen=True, tag="job.cancel_requested"):
    by: str
    reason: str = "cancelled by user"


class JobFinished(JobEvent, frozen=True, tag="job.finished"):
    status: Literal["completed", "failed", "cancelled"]
    reason: str
    exit_code: int | None = None
    signal: int | None = None
    attempt: int = 0
    stdout: Blob | None = None
    stderr: Blob | None = None
    results: Blob | None = None
    results_file: str | None = None
    message: str | None = None


class JobArtifactsStored(JobEvent, frozen=True, tag="job.artifacts_stored"):
    """The files the job left (``outputs/`` and its ``artifacts:`` globs), stored just before it ended."""

    files: list[Artifact] = []
    bytes: int = 0
    skipped: list[str] = []  # left behind: past ARTIFACT_MAX_BYTES, not a regular file, unreadable


class JobEnvReady(JobEvent, frozen=True, tag="job.env_ready"):
    """The attempt's declared environment is ready on its node: taken from the cache or built for it."""

    digest: str  # the cache key: sha256 of the requirements (or lock), the Python version and the platform
    hit: bool
    seconds: float
    attempt: int = 0


class JobEnvFailed(JobEvent, frozen=True, tag="job.env_failed"):
    """The attempt's declared environment could not be made ready; written with the attempt's end, so the
    set-up's ``seconds`` are charged like a run (fair share, GPU-hour quota)."""

    seconds: float
    digest: str = ""  # the cache key, where the set-up got as far as computing it
    attempt: int = 0


class JobArtifactsPruned(JobEvent, frozen=True, tag="job.artifacts_pruned"):
    """Retention (ARTIFACT_RETENTION) removed the job's artifact blobs; the manifest stays in the ledger."""

    digests: list[str]
    bytes_freed: int
    reason: str
    by: str


class JobRequeued(JobEvent, frozen=True, tag="job.requeued"):
    attempt: int
    reason: str


class JobRetried(JobEvent, frozen=True, tag="job.retried"):
    """An attempt ended for a retryable reason with retries left: the job goes back to the queue."""

    attempt: int
    reason: str
    exit_code: int | None = None
    signal: int | None = None
    message: str | None = None
    stdout: Blob | None = None
    stderr: Blob | None = None


class JobPruned(JobEvent, frozen=True, tag="job.pruned"):
    """Retention removed the ended job's output blobs (console output, results); its code stays.

    ``digests`` is a list of plain strings, not ``Blob``s: the removed blobs are no longer named as
    ``"digest"`` objects, so backup and audit (which read those) see exactly the blobs still kept.
    """

    digests: list[str]
    bytes_freed: int
    reason: str
    by: str


class NotifyRequested(JobEvent, frozen=True, tag="notify.requested"):
    """The job asked to be told when it ends: its targets (its config's ``notify``, or its user's default),
    written in the submit's step. Its own tag, so a start finds the few jobs that asked by the type index."""

    targets: list[str]


class NotifyDelivered(JobEvent, frozen=True, tag="notify.delivered"):
    """A target (by its index in ``notify.requested``) took the end-of-job notification."""

    target: int
    attempts: int


class NotifyFailed(JobEvent, frozen=True, tag="notify.failed"):
    """A target refused or could not be reached within NOTIFY_ATTEMPTS / NOTIFY_TIMEOUT: no more tries."""

    target: int
    attempts: int
    error: str


class JobGpuIdle(JobEvent, frozen=True, tag="job.gpu_idle"):
    """The running attempt's GPUs stayed below ``below`` percent for ``minutes``: the samples that show
    it, and what the policy (GPU_IDLE_POLICY) does about it: ``warn``, ``cancel`` or ``requeue``."""

    attempt: int
    action: Literal["warn", "cancel", "requeue"]
    minutes: float
    below: float
    samples: list[GpuSample] = []


class NotifyIdleDelivered(JobEvent, frozen=True, tag="notify.gpu_idle_delivered"):
    """A target (by its index in ``notify.requested``) took the notification of an attempt's job.gpu_idle."""

    attempt: int
    target: int
    attempts: int


class NotifyIdleFailed(JobEvent, frozen=True, tag="notify.gpu_idle_failed"):
    """A target refused the notification of an attempt's job.gpu_idle, or could not be reached in time."""

    attempt: int
    target: int
    attempts: int
    error: str


class JobGpuSummary(JobEvent, frozen=True, tag="job.gpu_summary"):
    """The attempt's GPU use, recorded just before its end (none where no telemetry was had)."""

    attempt: int
    summary: GpuSummary
    # GPU_IDLE_CHARGE_FACTOR when it was written: fair share charges the attempt's idle GPU time at this
    # rate, and a replay charges what was charged then whatever the setting is now.
    idle_charge_factor: float = 1.0


class ArrayEvent(Event, frozen=True):
    """A fact about one job array as a whole; its stream is ``array-<array_id>``."""

    STREAM_PREFIX: ClassVar[str] = "array-"
    array_id: str

    @property
    def stream_key(self) -> str:
        return self.array_id


class ArraySubmitted(ArrayEvent, frozen=True, tag="array.submitted"):
    """An array and its tasks were accepted in one write (the tasks' ``job.submitted`` follow it)."""

    user_id: str
    spec: str  # as asked (``0-99%8``), or ``sweep`` for a sweep without one
    tasks: int
    width: int  # at most this many tasks are released and not yet ended at once
    max_running: int | None = None  # the ``%K`` asked for
    after: After | None = None  # the dependencies every task waits for


# --- nodes ------------------------------------------------------------------------------------


class NodeConfig(NodeEvent, frozen=True):
    """A node as configured; the untagged base of node.registered and node.updated."""

    host: str
    port: int = 22
    user: str = ""
    slots: int = 1
    container: str | None = None
    kind: str = "ssh"  # the executor that registered it: "local", "ssh", "slurm" (executors/registry.py)
    gpus: int | None = None  # GPUs on the node; None: one per slot (as every node was before CPU-only nodes)


class NodeRegistered(NodeConfig, frozen=True, tag="node.registered"):
    pass


class NodeUpdated(NodeConfig, frozen=True, tag="node.updated"):
    pass


class NodeUp(NodeEvent, frozen=True, tag="node.up"):
    reason: str = "probe succeeded"


class NodeDown(NodeEvent, frozen=True, tag="node.down"):
    reason: str
    consecutive_failures: int = 1


class NodeDrained(NodeEvent, frozen=True, tag="node.drained"):
    by: str
    reason: str = ""


class NodeUndrained(NodeEvent, frozen=True, tag="node.undrained"):
    by: str
    reason: str = ""


class NodeRestarting(NodeEvent, frozen=True, tag="node.restarting"):
    container: str


class NodeRestarted(NodeEvent, frozen=True, tag="node.restarted"):
    container: str
    duration_s: float
    outcome: Literal["ok", "failed", "timeout"]
    detail: str = ""


class NodeRetired(NodeEvent, frozen=True, tag="node.retired"):
    """The node is no longer in the settings: nothing is planned or dispatched onto it any more."""

    reason: str = "not in the settings"


class NodeFenceRequired(NodeEvent, frozen=True, tag="node.fence_required"):
    """A job lost with this node may still run there: its slots take no other job until ``node.fenced``.

    Written in the same step as the lost job's ``job.finished`` (``node_lost``) or ``job.requeued``, so
    the hold survives a server restart however long the node stays away."""

    job_id: str
    attempt_key: str  # the attempt's workdir name on the node (``JobState.attempt_key``)
    slots: list[int]


class NodeFenced(NodeEvent, frozen=True, tag="node.fenced"):
    """The node confirmed the lost attempt dead (the wrapper's cancel exited 0, or no workdir was there)."""

    job_id: str
    attempt_key: str


# --- tokens -----------------------------------------------------------------------------------


class TokenIssued(TokenEvent, frozen=True, tag="token.issued"):
    user_id: str
    is_admin: bool
    expires_at: str
    secret_sha256: str
    by: str


class TokenRevoked(TokenEvent, frozen=True, tag="token.revoked"):
    user_id: str
    by: str
    reason: str = ""


# --- users and the fair-share fold ---------------------------------------------------------------


class UserPolicySet(UserEvent, frozen=True, tag="user.policy_set"):
    """A user's whole policy as an admin set it: each event replaces the previous one."""

    by: str
    share: float = 1.0
    priority: int = 0  # the highest priority level the user's jobs get (and their default)
    max_active_jobs: int | None = None  # None: the global MAX_ACTIVE_JOBS_PER_USER
    max_gpus: int | None = None  # None: no cap on the GPUs the user's running jobs hold
    reason: str = ""


class UserNotifySet(UserEvent, frozen=True, tag="user.notify_set"):
    """A user's default notify targets from here on (empty: none), for jobs whose config names none."""

    targets: list[str]
    by: str


class HalfLifeSet(FairShareEvent, frozen=True, tag="fairshare.half_life_set"):
    """The usage decay's half-life from here on (the FAIRSHARE_HALF_LIFE setting, recorded at start)."""

    half_life_s: float
    by: str = "system"


def _leaves(base: type[Event]) -> list[type[Event]]:
    """Every concrete event class below ``base``, in definition order."""
    found: list[type[Event]] = []
    for cls in base.__subclasses__():
        found.extend(_leaves(cls) if cls.__subclasses__() else [cls])
    return found


EVENT_TYPES: tuple[type[Event], ...] = tuple(_leaves(Event))
AnyEvent = Event  # any concrete event: decoded through the union of EVENT_TYPES

_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Union[EVENT_TYPES])  # noqa: UP007 - a union built at run time
_encoder = msgspec.json.Encoder()
_TAGS: dict[type, str] = {cls: str(cls.__struct_config__.tag) for cls in EVENT_TYPES}
EVENT_TAGS = _TAGS  # the write path's hot loop reads these two directly, without a call per event
encode_payload = _encoder.encode


def encode_event(event: Event) -> bytes:
    """The canonical payload bytes of an event (what the hash chain covers)."""
    return _encoder.encode(event)


def decode_event(payload: bytes | str) -> Event:
    return _decoder.decode(payload)


def event_tag(event: Event) -> str:
    return _TAGS[type(event)]


def stream_of(event: Event) -> str:
    """The stream an event belongs to: ``job-<id>``, ``node-<name>``, ``token-<id>``, ``user-<id>``, ...."""
    return event.STREAM_PREFIX + event.stream_key


class Recorded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event as stored: its envelope (position, stream, version, time, actor) and the fact itself."""

    position: int
    stream: str
    version: int
    event: AnyEvent
    recorded_at: int  # microseconds since the Unix epoch, UTC
    actor: str
    idempotency_key: str | None = None
