"""Outbound URLs given by users (input files, callbacks): only to public addresses.

A URL is resolved here and the request is sent to the address that was checked (the
original host name still goes in ``Host`` and TLS SNI), so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot reach an internal address.
Loopback, private, link-local, multicast, reserved and unspecified addresses are refused
unless ``JOBYARD_ALLOW_PRIVATE_URLS`` is on (development, and tests, whose receivers
listen on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from shared.errors import InvalidInput
from shared.settings import get_settings


class RefusedURL(InvalidInput):
    """The URL is not one jobyard will send a request to."""


class Unresolvable(RefusedURL):
    """The URL's host does not resolve (now: a DNS failure may pass, unlike a refusal)."""


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: ``url`` names the checked IP, ``host`` the original
    name (for ``Host`` and SNI)."""

    url: str
    host: str
    address: str


def check_syntax(url: str) -> None:
    """An absolute http(s) URL with a host and no credentials (RefusedURL otherwise)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedURL(f"{url!r} is not an absolute http(s) URL")
    if parts.username or parts.password:
        raise RefusedURL("URLs with credentials in them are not accepted")


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(url: str) -> Target:
    """The address to connect to for ``url``: its host resolved, every address checked."""
    check_syntax(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve ({exc})") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Unresolvable(f"{host} does not resolve")
    if not get_settings().allow_private_urls:
        private = [a for a in addresses if not _public(a)]
        if private:
            raise RefusedURL(
                f"{host} resolves to a non-public address ({private[0]}): loopback, private "
                "and link-local addresses are refused"
            )
    return aimed(url, addresses[0])


def aimed(url: str, address: str) -> Target:
    """The target for ``url`` at ``address``, one of its host's checked addresses."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return Target(urlunsplit(parts._replace(netloc=netloc)), parts.hostname or "", address)
