"""Errors of the Slurm executor, under the executors' own tree (``executors.errors``).

ExecutorError
├── NodeUnreachable
│   └── SlurmUnreachable     sbatch/squeue/sinfo could not reach the controller (or the login host)
└── SlurmRefused             Slurm answered and refused (e.g. sbatch rejected the options)
"""

from __future__ import annotations

from executors.errors import ExecutorError, NodeUnreachable


class SlurmUnreachable(NodeUnreachable):
    """A Slurm command could not reach the controller (or the login host): retry, never read as an end."""


class SlurmRefused(ExecutorError):
    """Slurm answered and refused (e.g. sbatch rejected the options): retrying cannot help."""
