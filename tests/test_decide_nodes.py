"""Given past node events, when a node decide function runs, then these new events (or this refusal)."""

from __future__ import annotations

import pytest

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
from ledger.domain.nodes import (
    NodeState,
    decide_drain,
    decide_fence_required,
    decide_fenced,
    decide_health,
    decide_register,
    decide_restarted,
    decide_restarting,
    decide_retire,
    decide_undrain,
    evolve_node,
)

N = "gpu-node-0"
REGISTERED = NodeRegistered(name=N, host="10.0.0.1", port=22, user="gpu", slots=1, container="gpu-node-0")
DRAINED = NodeDrained(name=N, by="admin", reason="maintenance")
DOWN = NodeDown(name=N, reason="ssh timeout", consecutive_failures=3)
RESTARTING = NodeRestarting(name=N, container="gpu-node-0")
RESTARTED = NodeRestarted(name=N, container="gpu-node-0", duration_s=4.5, outcome="ok")


def given(*events: AnyEvent) -> NodeState:
    """The node state folded from ``events``."""
    state = None
    for event in events:
        state = evolve_node(state, event)
    assert state is not None
    return state


def test_register_new_node() -> None:
    """A node seen for the first time is registered as configured."""
    assert decide_register(None, REGISTERED) == [REGISTERED]


def test_register_unchanged_node_records_nothing() -> None:
    """A node whose configuration did not change adds no event at start."""
    assert decide_register(given(REGISTERED), REGISTERED) == []


def test_register_changed_node_records_update() -> None:
    """A node whose configuration changed gets a node.updated with the new settings."""
    spec = NodeRegistered(name=N, host="10.0.0.9", port=2222, user="gpu", slots=2, container="gpu-node-0")
    assert decide_register(given(REGISTERED), spec) == [
        NodeUpdated(name=N, host="10.0.0.9", port=2222, user="gpu", slots=2, container="gpu-node-0")
    ]
    assert given(REGISTERED, *decide_register(given(REGISTERED), spec)).slots == 2


def test_health_failure_marks_node_down() -> None:
    """A failed probe of an up node records node.down with its reason and failure count."""
    events = decide_health(given(REGISTERED), healthy=False, reason="ssh timeout", failures=3)
    assert events == [DOWN]
    assert given(REGISTERED, *events).status == "down"


def test_health_repeated_failure_records_nothing() -> None:
    """The same failure again is not a new fact."""
    assert decide_health(given(REGISTERED, DOWN), healthy=False, reason="ssh timeout", failures=4) == []


def test_health_new_failure_reason_is_recorded() -> None:
    """A down node failing for another reason records the new reason."""
    events = decide_health(given(REGISTERED, DOWN), healthy=False, reason="auth failed")
    assert events == [NodeDown(name=N, reason="auth failed", consecutive_failures=1)]


def test_health_recovery_marks_node_up() -> None:
    """A successful probe of a down node records node.up."""
    events = decide_health(given(REGISTERED, DOWN), healthy=True, reason="probe succeeded")
    assert events == [NodeUp(name=N, reason="probe succeeded")]
    assert given(REGISTERED, DOWN, *events).status == "up"


def test_health_of_up_node_records_nothing() -> None:
    """A successful probe of an up node adds no event."""
    assert decide_health(given(REGISTERED), healthy=True, reason="probe succeeded") == []


def test_drain_up_node() -> None:
    """Draining an up node records who drained it and why; it then reports draining."""
    events = decide_drain(given(REGISTERED), by="admin", reason="maintenance")
    assert events == [DRAINED]
    assert given(REGISTERED, *events).status == "draining"


def test_drain_twice_refused() -> None:
    """A node that is already draining cannot be drained again."""
    with pytest.raises(InvalidTransition, match="already draining"):
        decide_drain(given(REGISTERED, DRAINED), by="admin")


def test_undrain_draining_node() -> None:
    """Undraining a draining node puts it back in service."""
    events = decide_undrain(given(REGISTERED, DRAINED), by="admin")
    assert events == [NodeUndrained(name=N, by="admin")]
    assert given(REGISTERED, DRAINED, *events).status == "up"


@pytest.mark.parametrize("history", [(REGISTERED,), (REGISTERED, DRAINED, NodeUndrained(name=N, by="admin"))])
def test_undrain_of_node_not_draining_refused(history: tuple[AnyEvent, ...]) -> None:
    """A node that is not draining cannot be undrained."""
    with pytest.raises(InvalidTransition, match="is not draining"):
        decide_undrain(given(*history), by="admin")


def test_restarting_records_container() -> None:
    """An LXC restart between jobs starts with node.restarting naming the container."""
    events = decide_restarting(given(REGISTERED), container="gpu-node-0")
    assert events == [RESTARTING]
    assert given(REGISTERED, *events).status == "restarting"


def test_restarting_twice_refused() -> None:
    """A node already restarting cannot start another restart."""
    with pytest.raises(InvalidTransition, match="already restarting"):
        decide_restarting(given(REGISTERED, RESTARTING), container="gpu-node-0")


def test_restarted_ends_restart() -> None:
    """The restart's outcome ends the restarting state."""
    events = decide_restarted(given(REGISTERED, RESTARTING), RESTARTED)
    assert events == [RESTARTED]
    node = given(REGISTERED, RESTARTING, *events)
    assert (node.status, node.last_restart_outcome) == ("up", "ok")


def test_restarted_without_restart_refused() -> None:
    """An outcome for a restart that never began is refused."""
    with pytest.raises(InvalidTransition, match="is not restarting"):
        decide_restarted(given(REGISTERED), RESTARTED)


def test_a_node_left_out_of_the_settings_is_retired_once() -> None:
    """Retiring records node.retired (status 'retired'); retiring again records nothing."""
    events = decide_retire(given(REGISTERED))
    assert events == [NodeRetired(name=N, reason="not in the settings")]
    assert given(REGISTERED, *events).status == "retired"
    assert decide_retire(given(REGISTERED, *events)) == []


def test_a_retired_node_back_in_the_settings_returns_unchanged_config_included() -> None:
    """The same config seen again for a retired node is a node.updated that brings it back."""
    events = decide_register(given(REGISTERED, NodeRetired(name=N)), REGISTERED)
    assert [type(e) for e in events] == [NodeUpdated]
    assert given(REGISTERED, NodeRetired(name=N), *events).status == "up"


LOST = NodeFenceRequired(name=N, job_id="j1", attempt_key="j1", slots=[0])


def test_a_lost_attempt_holds_its_slots_until_fenced() -> None:
    """node.fence_required holds the lost attempt's slots; node.fenced for it frees them."""
    assert decide_fence_required(given(REGISTERED), job_id="j1", attempt_key="j1", slots=[0]) == [LOST]
    assert given(REGISTERED, LOST).fenced_slots == {0}
    assert decide_fenced(given(REGISTERED, LOST), attempt_key="j1") == [
        NodeFenced(name=N, job_id="j1", attempt_key="j1")
    ]
    assert given(REGISTERED, LOST, NodeFenced(name=N, job_id="j1", attempt_key="j1")).fenced_slots == set()


def test_fencing_twice_or_an_attempt_not_held_records_nothing() -> None:
    """Holding an attempt already held, or fencing one not held, adds no event."""
    assert decide_fence_required(given(REGISTERED, LOST), job_id="j1", attempt_key="j1", slots=[0]) == []
    assert decide_fenced(given(REGISTERED), attempt_key="j1") == []


def test_a_fence_outlives_health_changes() -> None:
    """A node going down and up again still holds the lost attempt's slots: only node.fenced frees them."""
    assert given(REGISTERED, LOST, DOWN, NodeUp(name=N)).fenced_slots == {0}
