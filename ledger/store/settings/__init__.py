"""The server's settings: one typed object of groups, one per reader (``docs/admin-guide.md``,
"Settings by reader"), read from the flat names users write."""

from ledger.store.settings.environments import EnvSettings
from ledger.store.settings.gpu import GpuSettings
from ledger.store.settings.load import ENV_PREFIX, NOT_SETTINGS, SETTING_NAMES, load_settings, setting_sources
from ledger.store.settings.model import FLAT, SECRET_SETTINGS, TABLES, Settings, flat_values, from_flat
from ledger.store.settings.notifying import NotifySettings
from ledger.store.settings.running import LxcSettings, RunnerSettings, SandboxSettings, SshSettings
from ledger.store.settings.serving import (
    FairshareSettings,
    HttpSettings,
    QueueSettings,
    ReadsSettings,
    ScannerSettings,
    StorageSettings,
)
from ledger.store.settings.tables import NodeSpec, ReplicaSettings, SlurmSettings
from ledger.store.settings.units import parse_bytes, parse_duration

__all__ = [
    "ENV_PREFIX",
    "FLAT",
    "NOT_SETTINGS",
    "SECRET_SETTINGS",
    "SETTING_NAMES",
    "TABLES",
    "EnvSettings",
    "FairshareSettings",
    "GpuSettings",
    "HttpSettings",
    "LxcSettings",
    "NodeSpec",
    "NotifySettings",
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
