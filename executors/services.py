"""What a runner or a pipeline stage needs from the server: the ledger, the blob store, the settings.

The composition root (``api.runtime``) builds one and hands it down; nothing below it sees the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.store.blobs import BlobStore
from ledger.store.settings import Settings
from ledger.store.writer import Ledger
from projections.views import Views


@dataclass(frozen=True, slots=True)
class Services:
    ledger: Ledger[Views]
    blobs: BlobStore
    settings: Settings
