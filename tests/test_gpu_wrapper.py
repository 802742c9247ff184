"""The wrapper's GPU sampling on a node (SSH and Slurm): a FAKE nvidia-smi on PATH, the real wrapper."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.gpus import fake_nvidia_smi
from wrapper_jobs import PY, prepare_workdir

from executors.gpu_watch import wrapper_source
from executors.protocol import GPU_NAME, FrameDecoder, SandboxSpec, decode_exit_status, job_spec_bytes
from executors.transport import LocalTransport

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("require_sandbox")]
# index -> minor, deliberately not the identity: the job holds index 1, which is /dev/nvidia3
MINORS = {0: 2, 1: 3}
QUERY = ["0, 91, 30000, 81559, 310.5", "1, 37, 12288, 81559, [N/A]"]


def test_the_wrapper_samples_only_the_jobs_gpus_into_gpu_json(tmp_path: Path) -> None:
    """The wrapper samples only the job's GPU with nvidia-smi into gpu.json; the server reads them back."""
    spec = SandboxSpec(readonly_paths=[sys.prefix, sys.base_prefix], gpu_indices=[1])
    workdir = tmp_path / "job"
    prepare_workdir(workdir, b"", job_spec_bytes("sleep 0.6", 30.0, 0.5, {}, spec, gpu_sample_s=0.1))
    env = {"PATH": f"{fake_nvidia_smi(tmp_path / 'bin', MINORS, QUERY)}:/usr/bin:/bin"}
    wrapper = [PY, "-I", "-S", str(workdir / "wrapper.py")]
    subprocess.run([*wrapper, "launch", str(workdir)], check=True, capture_output=True, timeout=30, env=env)
    done = subprocess.run([*wrapper, "follow", str(workdir), "0", "0"], capture_output=True, timeout=30, env=env)
    assert decode_exit_status(FrameDecoder().feed(done.stdout)[-1].payload).exit_code == 0
    samples = json.loads((workdir / GPU_NAME).read_text())["samples"]
    assert len(samples) >= 3  # every 0.1 s over a 0.6 s job
    assert {(s["index"], s["util"], s["mem_used"], s["mem_total"]) for s in samples} == {(1, 37.0, 12288, 81559)}
    assert all("power" not in s for s in samples)
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    read = asyncio.run(wrapper_source(LocalTransport("node-test", python=PY), str(workdir))())
    assert [(s.index, s.util, s.mem_used, s.power) for s in read] == [(1, 37.0, 12288, None)] * len(samples)
