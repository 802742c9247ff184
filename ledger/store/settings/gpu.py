"""The settings group the GPU telemetry and the idle-GPU policy read (docs/admin-guide.md, "GPU telemetry")."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class GpuSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read by ``executors.gpu_watch`` (sampling, the idle policy) and the GPU series store."""

    sample_s: Annotated[float, Meta(gt=0, le=3600, description="seconds between GPU samples of a job")] = 10.0
    idle_policy: Annotated[
        Literal["off", "warn", "cancel", "requeue"], Meta(description="what an idle GPU job gets")
    ] = "warn"
    # A float, so tests (and impatient sites) can say a fraction of a minute.
    idle_minutes: Annotated[float, Meta(gt=0, description="minutes below GPU_IDLE_UTIL before a job is idle")] = 30.0
    idle_util: Annotated[float, Meta(ge=0, le=100, description="utilisation percent below which a GPU is idle")] = 5.0
    # above 1: held-but-idle GPU time weighs more in fair share (recorded with each summary, so replayable)
    idle_charge_factor: Annotated[
        float, Meta(ge=1, le=100, description="rate at which held-but-idle GPU time counts against fair share")
    ] = 1.0
    series_points: Annotated[
        int, Meta(ge=10, le=100000, description="GPU samples kept per job (older ones thinned)")
    ] = 2000
