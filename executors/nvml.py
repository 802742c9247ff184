"""GPU samples through NVIDIA's own NVML binding (``nvidia-ml-py``, imported as ``pynvml``), in the
server's process: the local runner's telemetry.

``pynvml`` is pure Python and loads ``libnvidia-ml.so`` only at ``nvmlInit``: a machine without the
driver gets "no telemetry" (an empty list, logged once), never an error. Tests put a fake ``pynvml``
first on the server's path (tests/fakes/pynvml.py); nothing here knows.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from ledger.domain.gpu import GpuSample

log = structlog.get_logger()
MIB = 1 << 20


class NvmlProbe:
    """Samples GPUs by NVML index; initialised on first use, and never again once it failed."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.failed = False

    def _ready(self) -> bool:
        if self.nvml is None and not self.failed:
            try:
                import pynvml  # on first use: the server starts whether or not NVML is there

                pynvml.nvmlInit()
                self.nvml = pynvml
            except Exception as e:  # no library, no driver, no device: all mean "no telemetry"
                self.failed = True
                log.warning("gpu.no_telemetry", source="nvml", error=str(e) or type(e).__name__)
        return self.nvml is not None

    def sample(self, indices: list[int]) -> list[GpuSample]:
        """One sample of each GPU (blocking: NVML calls take a few ms); [] without NVML."""
        if not indices or not self._ready():
            return []
        now = time.time()
        samples = []
        for index in indices:
            try:
                samples.append(self._one(index, now))
            except self.nvml.NVMLError as e:  # a GPU fallen off the bus is a gap, not a crash
                log.warning("gpu.sample_failed", source="nvml", index=index, error=str(e))
        return samples

    def _one(self, index: int, now: float) -> GpuSample:
        nvml = self.nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            power: float | None = round(nvml.nvmlDeviceGetPowerUsage(handle) / 1000, 1)  # mW
        except nvml.NVMLError:  # not every card reports power
            power = None
        return GpuSample(
            t=now,
            index=index,
            util=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            mem_used=int(memory.used) // MIB,
            mem_total=int(memory.total) // MIB,
            power=power,
        )
