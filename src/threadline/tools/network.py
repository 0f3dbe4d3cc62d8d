"""Which hosts a server-side tool may reach: public addresses, and the non-public ones an operator allowed.

A URL given in a request (an MCP server's) must not become a way into the server's own network.
Its host name and every address that name resolves to are checked; a host that is loopback,
private, link-local, unspecified, multicast or reserved is refused unless an entry of
`allowed_hosts` covers it. An entry is a host name (matched exactly, ignoring case), an address,
or a CIDR range, and covers nothing else.

`check_host` is the check made when a request names the URL. `check_address` is the same rule
for one address, for the moment a connection is opened: a DNS answer that changed since, or a
redirect, cannot lead anywhere the first check would have refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from threadline.errors import APIError, invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AllowedHosts:
    """`allowed_hosts` parsed once: host names (lower case) and networks."""

    names: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: list[str]) -> AllowedHosts:
        names: set[str] = set()
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.add(entry.strip().lower())
        return cls(frozenset(names), tuple(networks))

    def covers_name(self, host: str) -> bool:
        return host.lower() in self.names

    def covers_address(self, address: IPAddress) -> bool:
        return any(address.version == network.version and address in network for network in self.networks)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # ::ffff:127.0.0.1 reaches 127.0.0.1: judge it as the IPv4 address it carries.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """Whether an address is a public one, that any host may use."""
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


def _kind(address: IPAddress) -> str:
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def check_address(host: str, address: str, allowed: AllowedHosts, param: str | None = None) -> None:
    """Refuse (a 400) a connection to `address`, which `host` resolved to, unless it is public
    or `allowed` covers the host name or the address."""
    parsed = _address(address.split("%", 1)[0])
    if parsed is None:
        raise invalid(f"The host '{host}' resolved to '{address}', which is not an IP address.", param)
    if is_public(parsed) or allowed.covers_name(host) or allowed.covers_address(parsed):
        return
    where = f"'{host}'" if _address(host) is not None else f"'{host}' (which resolves to {parsed})"
    raise invalid(
        f"The host {where} is a {_kind(parsed)} address, which this server does not allow tools to reach. "
        "An operator can allow it in [tools.mcp] allowed_hosts.",
        param,
    )


def url_host(url: str, param: str | None = None) -> tuple[str, int]:
    """The host and port of an http(s) URL; a 400 for any other URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise invalid(f"'{url}' is not a valid URL.", param) from None
    if parts.scheme not in ("http", "https"):
        raise invalid(f"The URL '{url}' must use http or https.", param)
    if not parts.hostname:
        raise invalid(f"The URL '{url}' has no host.", param)
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int, param: str | None = None) -> list[str]:
    """Every address `host` resolves to (the host itself when it is an address); a 400 when it
    does not resolve. DNS runs off the event loop."""
    if _address(host.split("%", 1)[0]) is not None:
        return [host]
    loop = asyncio.get_running_loop()
    try:
        answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise invalid(f"The host '{host}' could not be resolved.", param) from None
    addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    if not addresses:
        raise invalid(f"The host '{host}' could not be resolved.", param)
    return addresses


async def check_host(url: str, allowed_hosts: list[str] | AllowedHosts, param: str | None = None) -> None:
    """Refuse (a 400 with `param`) a URL that is not http(s), has no host, or whose host name or
    any of its addresses is not public and not covered by `allowed_hosts`. A name that does not
    resolve passes: it names a server that cannot be reached, which its connection finds (every
    connection checks the addresses it is about to use)."""
    allowed = allowed_hosts if isinstance(allowed_hosts, AllowedHosts) else AllowedHosts.parse(allowed_hosts)
    host, port = url_host(url, param)
    try:
        addresses = await resolve(host, port, param)
    except APIError:
        return
    for address in addresses:
        check_address(host, address, allowed, param)

