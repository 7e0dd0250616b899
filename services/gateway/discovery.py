"""Turning a routes-file target into replica addresses.

An IP address is one replica. A host name is every address it resolves to: a Kubernetes
headless Service answers with one A/AAAA record per ready pod, so re-resolving it periodically
follows scale-out, scale-in and rollouts without a restart.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from services.gateway.routes_file import Target

Resolver = Callable[[Target], list[tuple[str, int]]]


def resolve(target: Target) -> list[tuple[str, int]]:
    """Addresses of ``target``, sorted so an unchanged answer compares equal; raises OSError."""
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        pass
    else:
        return [(target.host, target.port)]
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    return sorted({(str(info[4][0]), target.port) for info in infos})
