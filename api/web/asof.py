"""The web panels as they stood at a past ledger position, built in an as-of child (``api.asofpool``).

Each builder takes ``(views, now, plan, *args)`` and calls the panel function the live handler calls,
on a moment that is not live; the child returns the panel's JSON bytes, the event loop only sends them.
Every panel asks for the same position at once when the slider moves: a child keeps its last replays,
and the pool keeps the last documents (a past position never changes).
"""

from __future__ import annotations

from api.auth import Identity
from api.web import panels
from api.web.deps import Moment
from api.web.schemas import JobsPanel, LanesPanel, NodesPanel, QueuePanel, UsagePanel, UtilisationPanel
from projections import job_search
from projections.job_search import JobFilter
from projections.plan import Plan
from projections.views import Views


def _past(views: Views, now: int, plan: Plan) -> Moment:
    return Moment(views=views, now=now, plan=plan, live=False)


def nodes(views: Views, now: int, plan: Plan, who: Identity | None) -> NodesPanel:
    """No Slurm figures: sinfo tells the present only."""
    return panels.nodes_panel(_past(views, now, plan), who, None)


def queue(views: Views, now: int, plan: Plan, who: Identity | None, limit: int) -> QueuePanel:
    return panels.queue_panel(_past(views, now, plan), who, limit)


def jobs(views: Views, now: int, plan: Plan, flt: JobFilter, limit: int) -> JobsPanel:
    """Finished jobs from the table's indexes (as of the point), the rest from the replayed memory."""
    candidates, total = job_search.as_of_page(views, flt, 2 * limit + 10)
    return panels.jobs_panel(_past(views, now, plan), candidates, flt, limit, total)


def lanes(views: Views, now: int, plan: Plan, who: Identity | None, window_s: int, queued: int) -> LanesPanel:
    return panels.lanes_panel(_past(views, now, plan), who, window_s, queued)


def utilisation(views: Views, now: int, plan: Plan, window_s: int, buckets: int) -> UtilisationPanel:
    return panels.utilisation_panel(_past(views, now, plan), window_s, buckets)


def usage(views: Views, now: int, plan: Plan, who: Identity, window_s: int) -> UsagePanel:
    return panels.usage_panel(_past(views, now, plan), who, window_s)
