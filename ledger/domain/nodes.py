"""The node state machine: registration, health, drain and LXC restarts. Pure functions only."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ledger.domain.errors import InvalidTransition
from ledger.domain.events import (
    AnyEvent,
    NodeDown,
    NodeDrained,
    NodeFenced,
    NodeFenceRequired,
    NodeRegistered,
    NodeRestarted,
    NodeRestarting,
    NodeRetired,
    NodeUndrained,
    NodeUp,
    NodeUpdated,
)


class Fence(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A lost attempt that may still run on the node, and the slots it held there."""

    job_id: str
    attempt_key: str
    slots: tuple[int, ...]


class NodeState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str
    host: str
    port: int
    user: str
    slots: int
    container: str | None
    kind: str
    version: int = 1
    up: bool = True
    down_reason: str | None = None
    consecutive_failures: int = 0
    gpus: int | None = None  # None: one GPU per slot
    drained: bool = False
    drain_reason: str | None = None  # what the admin said when draining (shown by ``gpuledger node list``)
    restarting: bool = False
    last_restart_outcome: str | None = None
    retired: bool = False
    fences: tuple[Fence, ...] = ()  # lost attempts not yet confirmed dead here (node.fence_required)

    @property
    def fenced_slots(self) -> set[int]:
        """Slots that take no job while a lost attempt may still run on them."""
        return {slot for fence in self.fences for slot in fence.slots}

    @property
    def has_gpus(self) -> bool:
        return self.gpus is None or self.gpus > 0

    @property
    def status(self) -> str:
        if self.retired:
            return "retired"
        if self.restarting:
            return "restarting"
        if not self.up:
            return "down"
        return "draining" if self.drained else "up"

    @property
    def usable(self) -> bool:
        """In service for new jobs: up and not draining or retired. A node restarting between jobs counts
        (the plan gives it jobs; they start once it is back, ``ready``)."""
        return self.status in ("up", "restarting")

    @property
    def ready(self) -> bool:
        """Usable and able to start a job this instant (not in the middle of a restart)."""
        return self.usable and not self.restarting


def evolve_node(state: NodeState | None, event: AnyEvent) -> NodeState:
    replace = msgspec.structs.replace
    if isinstance(event, NodeRegistered):
        return NodeState(
            name=event.name,
            host=event.host,
            port=event.port,
            user=event.user,
            slots=event.slots,
            container=event.container,
            kind=event.kind,
            gpus=event.gpus,
        )
    assert state is not None, f"{type(event).__name__} before node.registered"
    version = state.version + 1
    match event:
        case NodeUpdated():
            return replace(
                state,
                version=version,
                host=event.host,
                port=event.port,
                user=event.user,
                slots=event.slots,
                container=event.container,
                kind=event.kind,
                gpus=event.gpus,
                retired=False,  # seen in the settings again
            )
        case NodeRetired():
            return replace(state, version=version, retired=True)
        case NodeUp():
            return replace(state, version=version, up=True, down_reason=None, consecutive_failures=0)
        case NodeDown():
            return replace(
                state,
                version=version,
                up=False,
                down_reason=event.reason,
                consecutive_failures=event.consecutive_failures,
            )
        case NodeDrained():
            return replace(state, version=version, drained=True, drain_reason=event.reason or None)
        case NodeUndrained():
            return replace(state, version=version, drained=False, drain_reason=None)
        case NodeRestarting():
            return replace(state, version=version, restarting=True)
        case NodeRestarted():
            return replace(state, version=version, restarting=False, last_restart_outcome=event.outcome)
        case NodeFenceRequired():
            fence = Fence(job_id=event.job_id, attempt_key=event.attempt_key, slots=tuple(event.slots))
            return replace(state, version=version, fences=(*state.fences, fence))
        case NodeFenced():
            kept = tuple(f for f in state.fences if f.attempt_key != event.attempt_key)
            return replace(state, version=version, fences=kept)
    raise AssertionError(f"not a node event: {event!r}")


def decide_register(state: NodeState | None, spec: NodeRegistered) -> list[AnyEvent]:
    """Seen at start: register a new node, record a changed one, nothing for an unchanged one."""
    if state is None:
        return [spec]
    current = (state.host, state.port, state.user, state.slots, state.container, state.kind, state.gpus)
    wanted = (spec.host, spec.port, spec.user, spec.slots, spec.container, spec.kind, spec.gpus)
    if current == wanted and not state.retired:
        return []
    return [
        NodeUpdated(
            name=spec.name,
            host=spec.host,
            port=spec.port,
            user=spec.user,
            slots=spec.slots,
            container=spec.container,
            kind=spec.kind,
            gpus=spec.gpus,
        )
    ]


def takes(gpus: int, node_has_gpus: bool, fleet_has_gpus: bool) -> bool:
    """Whether a job asking for ``gpus`` may run on a node: a CPU-only job (0) only where there are no
    GPUs (so it is never given one); a GPU job only on a GPU node, unless no node has GPUs (a machine
    without a driver, as in development, still runs every job)."""
    if gpus == 0:
        return not node_has_gpus
    return node_has_gpus or not fleet_has_gpus


def fleet_has_gpus(nodes: Iterable[NodeState]) -> bool:
    """Whether any node of the fleet (retired ones aside, down ones included) has GPUs."""
    return any(node.has_gpus for node in nodes if not node.retired)


def decide_retire(state: NodeState, *, reason: str = "not in the settings") -> list[AnyEvent]:
    """A node the settings no longer name; retiring it twice records nothing."""
    return [] if state.retired else [NodeRetired(name=state.name, reason=reason)]


def decide_health(state: NodeState, *, healthy: bool, reason: str, failures: int = 1) -> list[AnyEvent]:
    """Only changes of health are facts; repeating the current state records nothing."""
    if healthy:
        return [] if state.up else [NodeUp(name=state.name, reason=reason)]
    if not state.up and state.down_reason == reason:
        return []
    return [NodeDown(name=state.name, reason=reason, consecutive_failures=failures)]


def decide_drain(state: NodeState, *, by: str, reason: str = "") -> list[AnyEvent]:
    if state.drained:
        raise InvalidTransition(f"node {state.name} is already draining")
    return [NodeDrained(name=state.name, by=by, reason=reason)]


def decide_undrain(state: NodeState, *, by: str, reason: str = "") -> list[AnyEvent]:
    if not state.drained:
        raise InvalidTransition(f"node {state.name} is not draining")
    return [NodeUndrained(name=state.name, by=by, reason=reason)]


def decide_restarting(state: NodeState, *, container: str) -> list[AnyEvent]:
    if state.restarting:
        raise InvalidTransition(f"node {state.name} is already restarting")
    return [NodeRestarting(name=state.name, container=container)]


def decide_restarted(state: NodeState, restarted: NodeRestarted) -> list[AnyEvent]:
    if not state.restarting:
        raise InvalidTransition(f"node {state.name} is not restarting")
    return [restarted]


def decide_fence_required(state: NodeState, *, job_id: str, attempt_key: str, slots: list[int]) -> list[AnyEvent]:
    """A lost attempt's slots are held until it is confirmed dead; holding it twice records nothing."""
    if any(f.attempt_key == attempt_key for f in state.fences):
        return []
    return [NodeFenceRequired(name=state.name, job_id=job_id, attempt_key=attempt_key, slots=slots)]


def decide_fenced(state: NodeState, *, attempt_key: str) -> list[AnyEvent]:
    """The node confirmed the attempt dead: its slots are free again (nothing if it was not held)."""
    for fence in state.fences:
        if fence.attempt_key == attempt_key:
            return [NodeFenced(name=state.name, job_id=fence.job_id, attempt_key=attempt_key)]
    return []
