"""The settings group the declared-environment set-up reads (docs/admin-guide.md, "Declared environments")."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from ledger.store.settings.running import NoLimit0


class EnvSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``executors.environment``: building a project's requirements into a cached venv on the node."""

    # "" : uv's own default (PyPI); with ENV_FIND_LINKS set and no index URL, the set-up is offline
    index_url: Annotated[str, Meta(description="package index the set-up installs from ('' : uv's default)")] = ""
    find_links: Annotated[str, Meta(description="a wheelhouse directory or URL on the node ('' : none)")] = ""
    cache_max_bytes: Annotated[
        NoLimit0, Meta(description="bytes of cached environments per node before LRU eviction (0: no limit)")
    ] = 20 * 1024**3
    # "": beside the node's Python (the server's venv has it), else on the node's PATH
    uv: Annotated[str, Meta(description="the uv executable on the nodes ('' : found beside python or on PATH)")] = ""
    setup_timeout_s: Annotated[float, Meta(gt=0, description="seconds an environment's set-up may take")] = 1800.0
