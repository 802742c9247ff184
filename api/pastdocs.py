"""The ``/api`` documents as of a past point, built in an as-of child (``api.asofpool``) by the same
functions the live handlers call; each takes ``(views, now, plan, *args)``."""

from __future__ import annotations

from api.accounts import queue_document
from api.auth import Identity
from api.dashboard import dashboard_document
from api.present import job_status
from api.schemas import ActivePage, Dashboard, QueueDocument, UsersPage
from projections.dashboard import user_rows
from projections.plan import Plan
from projections.views import Views


def dashboard(views: Views, now: int, plan: Plan, who: Identity, limits: tuple[int, int]) -> Dashboard:
    """No Slurm or disk figures: they are measured now, never as of a past point."""
    return dashboard_document(views, plan, who, now=now, limits=limits, slurm=None, disk=None)


def active_page(views: Views, now: int, plan: Plan, offset: int, limit: int) -> ActivePage:
    total, jobs = views.active_page(offset, limit)
    return ActivePage(total=total, offset=offset, limit=limit, jobs=[job_status(j, views, plan) for j in jobs])


def users_page(views: Views, now: int, plan: Plan, offset: int, limit: int) -> UsersPage:
    total, users = views.ranked_users(offset, limit)
    return UsersPage(total=total, offset=offset, limit=limit, users=user_rows(users))


def queue(views: Views, now: int, plan: Plan, who: Identity, offset: int, limit: int) -> QueueDocument:
    return queue_document(views, plan, now, who, live=False, offset=offset, limit=limit)
