"""The server's settings: one typed object of groups, one per reader (``docs/admin-guide.md``,
"Settings by reader"), read from the flat names users write."""

from ledger.settings.load import ENV_PREFIX, NOT_SETTINGS, SETTING_NAMES, load_settings, setting_sources
from ledger.settings.model import FLAT, SECRET_SETTINGS, TABLES, Settings, flat_values, from_flat
from ledger.settings.running import LxcSettings, RunnerSettings, SandboxSettings, SshSettings
from ledger.settings.serving import (
    FairshareSettings,
    HttpSettings,
    QueueSettings,
    ReadsSettings,
    ScannerSettings,
    StorageSettings,
)
from ledger.settings.tables import NodeSpec, ReplicaSettings, SlurmSettings
from ledger.settings.units import parse_bytes, parse_duration

__all__ = [
    "ENV_PREFIX",
    "FLAT",
    "NOT_SETTINGS",
    "SECRET_SETTINGS",
    "SETTING_NAMES",
    "TABLES",
    "FairshareSettings",
    "HttpSettings",
    "LxcSettings",
    "NodeSpec",
    "QueueSettings",
    "ReadsSettings",
    "ReplicaSettings",
    "RunnerSettings",
    "SandboxSettings",
    "ScannerSettings",
    "Settings",
    "SlurmSettings",
    "SshSettings",
    "StorageSettings",
    "flat_values",
    "from_flat",
    "load_settings",
    "parse_bytes",
    "parse_duration",
    "setting_sources",
]
