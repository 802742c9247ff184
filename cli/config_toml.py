"""``gpuledger config show --toml``: the effective settings as a TOML file that can be pasted back,
each value with where it came from (default, file or env) as a comment."""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.items import Table

from ledger.store.settings import SECRET_SETTINGS, Settings


def settings_toml(settings: Settings, sources: dict[str, str]) -> str:
    """Plain values first, tables last (TOML puts a key after a table into that table). A setting with no
    value (None) is written commented out: TOML has no null."""
    values: dict[str, Any] = {name: value for name, value in settings.redacted().items() if not name.startswith("_")}
    document = tomlkit.document()
    document.add(tomlkit.comment("gpuledger settings: each value says where it came from (default, file, env)"))
    tables = {name: value for name, value in values.items() if _is_table(value)}
    for name, value in values.items():
        if name in tables:
            continue
        source = sources.get(name, "default")
        if name in SECRET_SETTINGS:
            state = "set" if value else "not set"
            document.add(tomlkit.comment(f"{name}: {state} ({source}; secrets come from the environment only)"))
        elif value is None:
            document.add(tomlkit.comment(f"{name} = (not set)  # {source}"))
        else:
            item = tomlkit.item(value)
            item.comment(source)
            document.add(name, item)
    for name, value in tables.items():
        document.add(tomlkit.nl())
        document.add(tomlkit.comment(f"{name}: {sources.get(name, 'default')}"))
        document.add(name, _table(value) if isinstance(value, dict) else _array_of_tables(value))
    return tomlkit.dumps(document)


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and bool(value) and isinstance(value[0], dict))


def _table(value: dict[str, Any]) -> Table:
    table = tomlkit.table()
    for key, inner in value.items():
        if inner is None:
            table.add(tomlkit.comment(f"{key} = (not set)"))
        else:
            table.add(key, inner)
    return table


def _array_of_tables(rows: list[dict[str, Any]]) -> Any:
    array = tomlkit.aot()
    for row in rows:
        array.append(_table(row))
    return array
