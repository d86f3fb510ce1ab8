"""A webhook attempt on the wire: the receiver's address looked up (off the loop, reused
for a while), the signed POST, its answer or its error, within the send timeout; and the
lanes that keep at most ``JOBYARD_WEBHOOK_RECEIVER_CONCURRENCY`` requests in flight per
receiver (:mod:`shared.webhooks.sender` takes the messages and records the outcomes)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from shared.netguard import RefusedURL, Target, Unresolvable, aimed, check_syntax, resolve
from shared.settings import get_settings

log = logging.getLogger(__name__)

MAX_LOGGED_BODY = 1024
RESOLVED_FOR = 30.0  # seconds an address is reused for
UNRESOLVED_FOR = 5.0  # seconds a failed look-up is
AIMS_KEPT = 10_000  # URLs whose aim (address, Host, SNI) is kept at once


@dataclass(frozen=True)
class Send:
    """One attempt to make: a message taken, signed, its attempt logged."""

    delivery_id: uuid.UUID  # the attempt's row, written before the request leaves
    message_id: uuid.UUID
    attempt: int
    url: str
    receiver: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Result:
    """What became of an attempt: the receiver's answer, or why there was none."""

    send: Send
    status_code: int | None
    response_body: str | None
    error: str | None
    latency_ms: int
    permanent: bool = False  # an address we will not send to: no more attempts

    @property
    def receiver_failed(self) -> bool:
        """No usable answer, the receiver's fault or its network's: what opens a breaker
        (a refused address is ours, and a 4xx is an answer)."""
        code = self.status_code
        if code is None:
            return not self.permanent
        return code >= 500 or code == 429


class Resolver:
    """Addresses per receiver, looked up off the loop (on threads of its own, so a slow
    resolver never holds up anything else), one look-up per receiver at a time, reused
    for a while: thousands of messages to a host that does not resolve cost a look-up
    every few seconds, not one each. What a URL's requests need (its checked address,
    ``Host``, SNI) is worked out once per look-up, not per request."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")
        self._locks: dict[str, asyncio.Lock] = {}
        self._known: dict[str, tuple[float, Target | RefusedURL]] = {}
        self._aims: dict[str, tuple[float, _Aim]] = {}

    async def aim(self, url: str, receiver: str) -> _Aim:
        cached = self._aims.get(url)
        if cached is not None and cached[0] >= time.monotonic():
            return cached[1]
        check_syntax(url)
        until, found = await self._resolved(receiver)
        if isinstance(found, RefusedURL):
            raise found
        aim = _Aim.of(url, found.address)
        if len(self._aims) >= AIMS_KEPT:  # many distinct URLs: start over, not grow
            self._aims.clear()
        self._aims[url] = (until, aim)
        return aim

    async def _resolved(self, receiver: str) -> tuple[float, Target | RefusedURL]:
        lock = self._locks.setdefault(receiver, asyncio.Lock())
        async with lock:
            known = self._known.get(receiver)
            if known is None or known[0] < time.monotonic():
                try:
                    found: Target | RefusedURL = await asyncio.get_running_loop().run_in_executor(
                        self._pool, resolve, receiver + "/"
                    )
                    ttl = RESOLVED_FOR
                except RefusedURL as exc:
                    found, ttl = exc, UNRESOLVED_FOR
                known = (time.monotonic() + ttl, found)
                self._known[receiver] = known
        return known

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class _Aim:
    """Where a URL's requests go: ``url`` names the checked address, ``host`` is the
    ``Host`` header, ``server_hostname`` the name TLS checks (https only)."""

    url: str
    host: str
    server_hostname: str | None

    @classmethod
    def of(cls, url: str, address: str) -> _Aim:
        target, parts = aimed(url, address), urlsplit(url)
        host = f"{target.host}:{parts.port}" if parts.port else target.host
        return cls(target.url, host, target.host if parts.scheme == "https" else None)


async def post(
    session: aiohttp.ClientSession, resolver: Resolver, send: Send, timeout: float
) -> Result:
    """One attempt, the address look-up included, ended within ``timeout``: an attempt
    older than that without an outcome is one whose sender stopped."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            return await _attempt(session, resolver, send, started)
    except TimeoutError:
        error = f"TimeoutError: no answer within {timeout:g} s"
        return Result(send, None, None, error, _elapsed_ms(started))


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def _attempt(
    session: aiohttp.ClientSession, resolver: Resolver, send: Send, started: float
) -> Result:
    try:
        aim = await resolver.aim(send.url, send.receiver)
    except Unresolvable as exc:  # may resolve later: retried, and counted by the breaker
        return Result(send, None, None, exc.message, _elapsed_ms(started))
    except RefusedURL as exc:
        return Result(send, None, None, exc.message, _elapsed_ms(started), permanent=True)
    try:
        async with session.post(
            aim.url,
            data=send.body.encode(),
            headers={**send.headers, "host": aim.host},
            server_hostname=aim.server_hostname,
            allow_redirects=False,
        ) as response:
            head = await response.content.read(MAX_LOGGED_BODY)
            return Result(
                send, response.status, head.decode(errors="replace"), None, _elapsed_ms(started)
            )
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return Result(
            send, None, None, f"{type(exc).__name__}: {exc}".strip(), _elapsed_ms(started)
        )


class Lanes:
    """Sends, per receiver at most ``JOBYARD_WEBHOOK_RECEIVER_CONCURRENCY`` requests at
    once. Each receiver has up to that many lanes (a task each, sending one request after
    another); the messages taken ahead wait their turn in the receiver's queue, as data
    (their time runs from their own request's start), and a lane that ends one request
    starts the next: no task, no semaphore wait per message."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        resolver: Resolver,
        ended: Callable[[Result], None],
    ) -> None:
        settings = get_settings()
        self.bound = settings.webhook_receiver_concurrency
        self.timeout = settings.webhook_timeout_seconds
        self._session, self._resolver, self._ended = session, resolver, ended
        self._lanes: dict[str, int] = {}  # lanes open per receiver
        self._queues: dict[str, deque[Send]] = {}  # messages waiting for a lane
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Nothing being sent, nothing waiting its turn."""
        return not self._tasks

    def submit(self, send: Send) -> None:
        receiver = send.receiver
        lanes = self._lanes.get(receiver, 0)
        if lanes < self.bound:
            self._lanes[receiver] = lanes + 1
            task = asyncio.create_task(self._lane(send))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._queues.setdefault(receiver, deque()).append(send)

    async def drained(self) -> None:
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _lane(self, send: Send) -> None:
        receiver = send.receiver
        try:
            while True:
                self._ended(await self._post(send))
                queue = self._queues.get(receiver)
                if not queue:
                    break
                send = queue.popleft()
                if not queue:
                    del self._queues[receiver]
        finally:
            self._lanes[receiver] -= 1
            if not self._lanes[receiver]:
                del self._lanes[receiver]

    async def _post(self, send: Send) -> Result:
        try:
            return await post(self._session, self._resolver, send, self.timeout)
        except Exception as exc:  # not an answer but a fault of ours: logged, tried again
            log.exception("webhooks: attempt %d of %s", send.attempt, send.message_id)
            return Result(send, None, None, f"{type(exc).__name__}: {exc}", 0)


# Every attempt is bounded by post() (the look-up included); aiohttp's own timers would
# be a second pair per request.
NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout()
