"""FAKE GPUs for tests: the state the fake NVML module reads (tests/fakes/nvml/pynvml.py) and a fake
``nvidia-smi`` for the wrapper's sampling. Nothing here touches a real GPU or driver."""

from __future__ import annotations

import json
from pathlib import Path

FAKES = Path(__file__).resolve().parent
NVML_PATH = FAKES / "nvml"  # put first on the server's PYTHONPATH: ``import pynvml`` finds the fake


def write_nvml_state(state: Path, utils: list[float], *, used_mib: int = 1000, total_mib: int = 81559) -> None:
    """The fake NVML's GPUs: one per utilisation given, memory as given, 250 W each."""
    gpus = [{"util": u, "used_mib": used_mib, "total_mib": total_mib, "power_w": 250.0} for u in utils]
    temporary = state.with_suffix(".tmp")
    temporary.write_text(json.dumps({"gpus": gpus}))
    temporary.replace(state)  # the server reads it at any moment: never half written


def fake_nvidia_smi(directory: Path, minors: dict[int, int], query_lines: list[str]) -> Path:
    """A FAKE ``nvidia-smi`` in ``directory``: ``-L`` lists the GPUs, the index,minor_number query maps
    index to minor, and the telemetry query prints ``query_lines`` (CSV, noheader, nounits)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    pairs = "\\n".join(f"{i}, {m}" for i, m in minors.items())
    listing = "\\n".join(f"GPU {i}: Fake GPU (UUID: GPU-0000000{i}-0000-0000-0000-000000000000)" for i in minors)
    telemetry = "\\n".join(query_lines)
    script.write_text(
        "#!/bin/sh\n# FAKE nvidia-smi (tests/fakes/gpus.py)\n"
        'case "$*" in\n'
        f'  *minor_number*) printf "{pairs}\\n";;\n'
        f'  *utilization.gpu*) printf "{telemetry}\\n";;\n'
        f'  *) printf "{listing}\\n";;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return directory
