"""What the real providers share: the prompt that carries language and country, the
per-process SDK client cache, and citation clean-up."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from worker.providers.base import AiRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()


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


def shared_client(key: tuple[str, ...], factory: Callable[[], T]) -> T:
    """The client for ``key`` in this process, made by ``factory`` on first use.

    Providers key their clients by (vendor, key fingerprint, base URL, timeout), so every
    model of a vendor and every worker thread share one client and its connection pool
    (the SDK clients are thread-safe). Creation is serialised, so two threads asking
    at once still make a single client.
    """
    key = (*key, str(os.getpid()))  # a forked child never reuses its parent's sockets
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = factory()
                _clients[key] = client
    return client


def close_clients() -> None:
    """Close and forget every cached client (tests, and settings that changed)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        close = getattr(client, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing is best effort
                log.debug("closing %r failed", client, exc_info=True)


def unique_urls(urls: Iterable[Any]) -> list[str]:
    """The http(s) URLs among ``urls``, stripped, first occurrence kept, in order."""
    seen: set[str] = set()
    result = []
    for url in urls:
        if not isinstance(url, str):
            continue
        url = url.strip()
        if url.lower().startswith(("http://", "https://")) and url not in seen:
            seen.add(url)
            result.append(url)
    return result
