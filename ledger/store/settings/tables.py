"""The settings written as TOML tables: ``[[nodes]]``, ``[slurm]`` and ``[replica]``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ledger.store.settings.units import parse_bytes

Positive = Annotated[float, Meta(gt=0)]


class NodeSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One GPU node reached over SSH through the jump host."""

    name: str
    host: str
    port: int = 22
    user: str | None = None
    slots: int = 1
    container: str | None = None
    memory: int | str | None = None  # memory for the node's jobs in all, bytes or "64G" (None: JOB_MEMORY_SHARE)

    def __post_init__(self) -> None:
        # A size written as text ("48G") has no msgspec constraint: it is parsed here.
        try:
            memory = None if self.memory is None else parse_bytes(self.memory)
        except ValueError as e:
            raise msgspec.ValidationError(f"{e} - at `$.nodes.memory`") from None
        if memory is not None and memory <= 0:
            raise msgspec.ValidationError("must be positive - at `$.nodes.memory`")

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_bytes(self.memory)


class SlurmSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[slurm]`` table: hand jobs to a Slurm cluster instead of running them on our own nodes."""

    via: Literal["local", "ssh"] = "local"  # where sbatch/squeue/scancel run: this host, or login_host
    login_host: str | None = None
    login_port: int = 22
    login_user: str | None = None
    partition: str | None = None
    sbatch_options: list[str] = []
    python: str = "python3"  # the interpreter the batch script runs the wrapper with, on the compute node
    conf: str | None = None  # SLURM_CONF for sbatch/squeue/sinfo/scancel; None: Slurm's own lookup
    poll_interval_s: Positive = 1.0
    # GPUs' worth of jobs in Slurm's queue at once (the rest wait here)
    max_gpus_handed_off: Annotated[int, Meta(ge=1)] = 256

    def __post_init__(self) -> None:
        # Two fields together: no msgspec constraint can say it.
        if self.via == "ssh" and not self.login_host:
            raise msgspec.ValidationError("via = 'ssh' needs login_host - at `$.slurm.login_host`")


# s3:// takes a bucket name (S3's rules: 3-63 of a-z 0-9 . -) and an optional prefix; no query: the
# endpoint, region and addressing style are keys of their own
REPLICA_URL = "^(file:///|sftp://|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?#]*)?$)"


class ReplicaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[replica]`` table: Litestream streams the ledger's WAL to ``url``, and the blobs follow."""

    url: Annotated[
        str, Meta(pattern=REPLICA_URL, description="file:///path, sftp://user@host:port/path or s3://bucket/path")
    ]
    sync_interval_s: Positive = 0.25  # Litestream's sync-interval: the bulk of the lag
    blob_interval_s: Positive = 0.25  # how often new blobs are copied to the target
    lag_s: Positive = 1.0  # REPLICA_LAG_S: the promise /readyz checks the measured lag against
    key_file: str | None = None  # sftp: the private key (default: SSH_KEY_FILE)
    known_hosts: str | None = None  # sftp: the target's host key (default: SSH_KNOWN_HOSTS)
    # s3: an S3-compatible store's URL (MinIO, Ceph, a moto server), default AWS; credentials come from
    # the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), as Litestream reads them
    endpoint: Annotated[str, Meta(pattern="^https?://[^/?#]+/?$")] | None = None
    region: str | None = None  # s3: the bucket's region (default: AWS_REGION, else us-east-1)
    path_style: bool | None = None  # s3: bucket in the path, not the host name (default: on with an endpoint)
