"""What a job did with its GPUs: samples, the summary kept with its end, and the idle verdict.

Pure: samples come in as values (from NVML on the server, or ``nvidia-smi`` through the wrapper on a
node) and every number here is computed from them, so a replay of the ledger shows the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

IDLE_EVIDENCE = 12  # samples an idle verdict carries at most (evenly spread over its window)


class GpuSample(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """One GPU of a job at one moment (``t``: Unix seconds); memory in MiB, power in W where known."""

    t: float
    index: int
    util: float
    mem_used: int
    mem_total: int
    power: float | None = None


class GpuSummary(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An attempt's GPU use, with its end: utilisation, memory, and GPU-seconds held vs used."""

    gpus: int
    samples: int
    mean_util: float
    peak_util: float
    peak_mem_mib: int
    card_mem_mib: int
    held_gpu_s: float
    used_gpu_s: float  # held time weighted by each GPU's mean utilisation


def summarise(samples: Sequence[GpuSample], *, gpus: int, held_s: float) -> GpuSummary | None:
    """The attempt's summary; None without samples (no telemetry) or without GPUs held."""
    if not samples or gpus <= 0:
        return None
    by_gpu: dict[int, list[float]] = {}
    for s in samples:
        by_gpu.setdefault(s.index, []).append(s.util)
    means = [sum(utils) / len(utils) for utils in by_gpu.values()]
    # A held GPU never sampled was not seen used: it adds 0 to the used time.
    used = min(sum(means), 100.0 * gpus) / 100 * max(0.0, held_s)
    return GpuSummary(
        gpus=gpus,
        samples=len(samples),
        mean_util=round(sum(s.util for s in samples) / len(samples), 2),
        peak_util=max(s.util for s in samples),
        peak_mem_mib=max(s.mem_used for s in samples),
        card_mem_mib=max(s.mem_total for s in samples),
        held_gpu_s=round(gpus * max(0.0, held_s), 3),
        used_gpu_s=round(used, 3),
    )


def idle_evidence(samples: Sequence[GpuSample], *, window_s: float, below: float) -> list[GpuSample] | None:
    """The samples that show every GPU of the job below ``below`` percent for the last ``window_s``
    seconds (the job watched at least that long), thinned to ``IDLE_EVIDENCE``; None while it is not idle."""
    if not samples:
        return None
    last = max(s.t for s in samples)
    if last - min(s.t for s in samples) < window_s:
        return None  # not watched long enough to say
    recent = [s for s in samples if s.t >= last - window_s]
    if any(s.util >= below for s in recent):
        return None
    step = max(1, -(-len(recent) // IDLE_EVIDENCE))
    return recent[::step]


def idle_message(action: str, minutes: float, below: float) -> str:
    """The job's ``message`` once flagged: what was seen and what the policy does about it."""
    seen = f"GPU idle: below {below:g}% utilisation for {minutes:g} min"
    then = {"warn": "warning only", "cancel": "cancelled (gpu_idle)", "requeue": "requeued (gpu_idle)"}
    return f"{seen}; {then.get(action, action)}"
