"""FAKE NVML, for tests only: a stand-in for NVIDIA's ``pynvml`` (nvidia-ml-py) with the few calls
executors/nvml.py makes. A test server gets it by ``PYTHONPATH=tests/fakes/nvml:<repo>`` (see
tests/fakes/gpus.py), so ``import pynvml`` in the server finds this file first.

The GPUs are read from the JSON file named by ``FAKE_NVML_STATE`` at every call, so a test changes
what the "GPUs" report while the server runs: ``{"gpus": [{"util": 80, "used_mib": 1000,
"total_mib": 81559, "power_w": 250.0}, ...]}`` (``power_w`` null: the card reports no power). No
file, or no variable: ``nvmlInit`` fails as it does on a machine without the driver.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

MIB = 1 << 20
# The names below are the real binding's (camelCase, NVMLError), so the server code cannot tell.


class NVMLError(Exception):
    pass


def _gpus() -> list[dict[str, Any]]:
    try:
        with open(os.environ["FAKE_NVML_STATE"]) as f:
            return list(json.load(f)["gpus"])
    except (KeyError, OSError, ValueError) as e:
        raise NVMLError(f"fake NVML: no state ({e!r})") from None


def nvmlInit() -> None:
    _gpus()


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if not 0 <= index < len(_gpus()):
        raise NVMLError(f"fake NVML: no GPU {index}")
    return index


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    return SimpleNamespace(gpu=_gpus()[handle]["util"], memory=0)


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    gpu = _gpus()[handle]
    return SimpleNamespace(used=gpu["used_mib"] * MIB, total=gpu["total_mib"] * MIB, free=0)


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    power = _gpus()[handle].get("power_w")
    if power is None:
        raise NVMLError("fake NVML: not supported")
    return int(power * 1000)
