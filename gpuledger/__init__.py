"""The gpuledger Python SDK: submit jobs, wait for them, follow their logs, fetch their results.

from gpuledger import Client
with Client() as client:                     # GPULEDGER_URL / GPULEDGER_TOKEN or the login file
    job = client.submit(Path("solution.py"), Path("config.yaml"))
    for chunk in job.logs(follow=True):
        print(chunk.text, end="")
    print(job.wait().status, job.results().results)
"""

from gpuledger.aio import AsyncClient, AsyncJob
from gpuledger.client import Client, Job
from gpuledger.errors import (
    ApiError,
    AuthError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    DigestMismatch,
    Forbidden,
    GpuledgerError,
    JobFailed,
    NotFound,
    NotGpuledger,
    PayloadTooLarge,
    ProjectTooLarge,
    RateLimited,
    ServerError,
)
from gpuledger.models import (
    ArrayStatus,
    ArraySubmitted,
    ArtifactInfo,
    ArtifactList,
    BulkCancel,
    JobResults,
    JobStatus,
    LedgerEvent,
    LogChunk,
    NodeInfo,
    QuotaStatus,
    Submitted,
    WhoAmI,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "ArrayStatus",
    "ArraySubmitted",
    "ArtifactInfo",
    "ArtifactList",
    "AsyncClient",
    "AsyncJob",
    "AuthError",
    "BadRequest",
    "BulkCancel",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DigestMismatch",
    "Forbidden",
    "GpuledgerError",
    "Job",
    "JobFailed",
    "JobResults",
    "JobStatus",
    "LedgerEvent",
    "LogChunk",
    "NodeInfo",
    "NotFound",
    "NotGpuledger",
    "PayloadTooLarge",
    "ProjectTooLarge",
    "QuotaStatus",
    "RateLimited",
    "ServerError",
    "Submitted",
    "WhoAmI",
    "__version__",
]
