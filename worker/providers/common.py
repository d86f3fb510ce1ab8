"""What the real providers share: the prompt that carries language and country, the
client cache (per process and event loop), and sources."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from shared.settings import Settings
from worker.providers.base import AiRequest, Source

log = logging.getLogger(__name__)

T = TypeVar("T")

_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()
_COUNTRY_CODE = re.compile(r"^[A-Za-z]{2}$")


def system_prompt(request: AiRequest) -> str:
    """The system instruction every chat provider sends: the query's language and country."""
    return (
        f"Answer in language {request.language} for a user in country {request.country}. "
        "Answer the question directly, as you would for that user."
    )


def fingerprint(secret: str | None) -> str:
    """A short, non-reversible stand-in for a credential (cache keys, logs)."""
    if not secret:
        return "-"
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _loop_id() -> str:
    try:
        return str(id(asyncio.get_running_loop()))
    except RuntimeError:
        return "-"


def shared_client(key: tuple[str, ...], factory: Callable[[], T]) -> T:
    """The client for ``key`` in this process and event loop, made by ``factory`` on first
    use.

    Providers key their clients by (vendor, key fingerprint, base URL, timeout), so every
    model of a vendor and every execution of a worker share one client and its connection
    pool. An async client belongs to the event loop it first ran on, so the loop is part
    of the key (a worker has one loop for its life; a test may have several). Creation is
    serialised, so two threads asking at once still make a single client.
    """
    key = (*key, str(os.getpid()), _loop_id())  # a forked child never reuses its sockets
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = factory()
                _clients[key] = client
    return client


def forget_clients() -> None:
    """Forget every cached client without closing it (settings changed; tests)."""
    with _clients_lock:
        _clients.clear()


async def aclose_clients() -> None:
    """Close and forget the clients of the running event loop (a worker stopping, the end
    of a test session): an async client must be closed on its own loop."""
    loop = _loop_id()
    with _clients_lock:
        mine = {k: c for k, c in _clients.items() if k[-1] == loop}
        for k in mine:
            del _clients[k]
    for client in mine.values():
        for name in ("aclose", "close"):
            close = getattr(client, name, None)
            if callable(close):
                try:
                    result = close()
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # closing is best effort
                    log.debug("closing %r failed", client, exc_info=True)
                break


def connection_limits(settings: Settings) -> Any:
    """Connection pool limits sized to the calls a process holds in flight: a pool smaller
    than that makes requests wait for a connection as if the vendor were slow."""
    import httpx2

    size = settings.provider_max_connections
    return httpx2.Limits(max_connections=size, max_keepalive_connections=size)


def domain_of(url: str | None) -> str:
    """The host of ``url`` without ``www.`` (empty when there is none)."""
    if not url:
        return ""
    host = urlsplit(url).hostname or ""
    return host.removeprefix("www.")


def web_source(url: Any, title: Any = None) -> Source | None:
    """A source for an http(s) ``url`` (None for anything else)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url.lower().startswith(("http://", "https://")) or not domain_of(url):
        return None
    return Source(url=url, domain=domain_of(url), title=title if isinstance(title, str) else None)


def distinct(sources: Iterable[Source | None]) -> list[Source]:
    """The sources in order, each page once (the first occurrence, which keeps its title;
    a later one fills in a missing title)."""
    found: dict[str, Source] = {}
    for source in sources:
        if source is None:
            continue
        key = source.url or source.redirect_url or source.domain
        seen = found.get(key)
        if seen is None:
            found[key] = source
        elif seen.title is None and source.title:
            found[key] = replace(seen, title=source.title)
    return list(found.values())


def country_code(request: AiRequest) -> str | None:
    """The query's country as an ISO 3166-1 alpha-2 code, the form search tools take."""
    country = (request.country or "").strip()
    return country.upper() if _COUNTRY_CODE.match(country) else None


def approximate_location(request: AiRequest) -> dict[str, str]:
    """The ``user_location`` OpenAI's and Anthropic's search tools take. Without a country
    the tools assume the US, so an unknown country sends only the type."""
    location = {"type": "approximate"}
    code = country_code(request)
    if code:
        location["country"] = code
    return location


def count(value: Any) -> int:
    """A token count from a vendor payload (None and junk count as 0)."""
    return value if isinstance(value, int) and value > 0 else 0
