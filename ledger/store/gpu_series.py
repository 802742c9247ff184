"""A job's GPU samples over time, beside the ledger: one JSON-lines file per job under ``JOBS_DIR/gpu``.

Not events: a sample every ``GPU_SAMPLE_S`` per GPU would swamp the log, and only the summary and the
idle verdicts (which carry their own samples) need replaying. Bounded at ``GPU_SERIES_POINTS`` lines:
past it every other line is dropped, so a long job keeps its whole span at a coarser step.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from ledger.domain.gpu import GpuSample


class SeriesPoint(GpuSample, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """A sample with the attempt it was taken in (a retried job's file holds every attempt)."""

    attempt: int = 1


_decoder = msgspec.json.Decoder(SeriesPoint)
_encoder = msgspec.json.Encoder()


class GpuSeries:
    """Appends and reads the per-job files; callers on the event loop run these in a thread."""

    def __init__(self, jobs_dir: str | Path, max_points: int) -> None:
        self.root = Path(jobs_dir) / "gpu"
        self.max_points = max_points

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.jsonl"

    def append(self, job_id: str, attempt: int, samples: list[GpuSample]) -> None:
        if not samples:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [_encoder.encode(SeriesPoint(**msgspec.structs.asdict(s), attempt=attempt)) + b"\n" for s in samples]
        with self.path(job_id).open("ab") as handle:
            handle.writelines(lines)
        points = self.read(job_id)
        if len(points) > self.max_points:
            self._thin(job_id, points)

    def _thin(self, job_id: str, points: list[SeriesPoint]) -> None:
        """Keep every other moment (all GPUs of a moment together), written aside and renamed in."""
        moments = sorted({p.t for p in points})
        kept = set(moments[::2]) | {moments[-1]}
        temporary = self.path(job_id).with_suffix(".tmp")
        temporary.write_bytes(b"".join(_encoder.encode(p) + b"\n" for p in points if p.t in kept))
        os.replace(temporary, self.path(job_id))

    def read(self, job_id: str, attempt: int | None = None) -> list[SeriesPoint]:
        """The job's points, oldest first (one attempt's with ``attempt``); [] when it has none."""
        try:
            raw = self.path(job_id).read_bytes()
        except FileNotFoundError:
            return []
        points = []
        for line in raw.splitlines():
            try:  # a line cut by a crash mid-write is skipped, never fatal
                point = _decoder.decode(line)
            except msgspec.DecodeError:
                continue
            if attempt is None or point.attempt == attempt:
                points.append(point)
        return points

    def remove(self, job_id: str) -> None:
        self.path(job_id).unlink(missing_ok=True)
