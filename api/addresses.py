"""Whether an address is a trusted proxy: apart from ``api.limits`` so that ``serve`` can ask before
the API (and Litestar) is imported, while the port is not yet bound."""

from __future__ import annotations

import ipaddress


def is_trusted_proxy(address: str, trusted: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)
