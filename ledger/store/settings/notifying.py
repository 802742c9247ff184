"""The settings group of end-of-job notifications (docs/admin-guide.md, "Notifications"): which targets
the server may reach, and how hard it tries each one."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class NotifySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``api.submit``, the users' notify route and ``executors.notify``: targets and retries."""

    # Empty by default: a server must not reach hosts its admin did not name (internal services included).
    allowed: Annotated[
        list[Annotated[str, Meta(pattern=r"^[^:/\s]+://[^/\s]+$")]],
        Meta(description="SCHEME://HOST[:PORT] globs notify targets must match (empty: no notifications)"),
    ] = []
    attempts: Annotated[int, Meta(ge=1, le=20, description="tries per target before notify.failed")] = 5
    backoff_s: Annotated[float, Meta(gt=0, le=3600, description="first wait between tries (doubling)")] = 2.0
    timeout_s: Annotated[float, Meta(gt=0, le=86_400, description="most time spent on one target")] = 300.0
    request_timeout_s: Annotated[float, Meta(gt=0, le=600, description="one try's HTTP timeout")] = 10.0
    # the server's address as users reach it: the payload's link (empty: the link is a path on the server)
    link_base: Annotated[str, Meta(description="base URL of the link in a notification")] = ""
