"""Who the client is: the address rate limits, lockout, logs and `last_used_ip` key on.

By default the socket's peer address, and `X-Forwarded-For` is ignored: anyone can
write that header. Only when the peer is one of the trusted proxies
(`TENANTRY_TRUSTED_PROXIES`) is the header read, from the right: each trusted proxy
appended the address it received the request from, so the client is the right-most
address that is not itself a trusted proxy (the entries to its left are whatever the
client claimed). An unparsable entry stops the walk: a proxy we trust wrote something
we cannot read, and the last address read (a trusted proxy's) is used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

import falcon

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Parse IPs and CIDRs (`10.0.0.1`, `10.1.0.0/16`, `fd00::/8`); ValueError on anything else."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


@lru_cache(maxsize=4096)  # parsing an address was ~2 % of a GET's CPU; clients repeat
def _address(text: str | None) -> Address | None:
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:1.2.3.4 is 1.2.3.4 (a dual-stack socket)
    return address


def _trusted(address: Address, trusted: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def resolve(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str | None:
    """The client's address: `peer`, or behind trusted proxies the right-most untrusted
    address of `forwarded_for` (None when the peer has no IP address, e.g. a Unix socket)."""
    client = _address(peer)
    if client is None or not trusted or not forwarded_for or not _trusted(client, trusted):
        return str(client) if client else None
    for entry in reversed(forwarded_for.split(",")):
        hop = _address(entry)
        if hop is None:
            break  # unreadable: keep the last address we could trust
        client = hop
        if not _trusted(hop, trusted):
            break
    return str(client)


def is_loopback(address: str | None) -> bool:
    found = _address(address)
    return found is not None and found.is_loopback


def client_address(req: falcon.Request) -> str | None:
    """The client of `req`, as RequestIdAndMetrics resolved it (api/pipeline.py)."""
    return getattr(req.context, "client_ip", None) or str(_address(req.remote_addr) or "") or None
