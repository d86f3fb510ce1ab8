"""Global limits per provider, shared by every worker process through Redis.

Two limits, each optional and configured per provider key in settings:

- a request **rate** (``JOBYARD_PROVIDER_RATE_LIMITS='{"openai": "500/minute"}'``, in the
  ``limits`` notation), kept across processes as evenly spaced calls (GCRA: each call
  gets the next free slot, ``window / amount`` after the previous one, on Redis's clock).
  A moving window would grant a burst of ``amount`` permits the moment it rolls over, and
  the few milliseconds between a permit and its request reaching the provider would then
  show as more than ``amount`` calls inside one window *at the provider*, which is where
  the limit is enforced. Slots are spaced 10% wider than the rate for the same reason:
  a request's first call from a process (SDK set-up, a new connection) can trail its
  permit by tens of milliseconds, and the provider must still never see more than the
  rate in any window. The price is a ceiling of about 91% of the configured rate;
- a **concurrency** cap (``JOBYARD_PROVIDER_CONCURRENCY='{"openai": 50}'``): a semaphore
  whose holders expire after the lease length, so a killed worker's slots come back.

Buckets are per provider *and* per API key (a fingerprint of it), so two deployments, or
two keys of one provider, never share a budget. A throttled call waits (in the event loop,
holding nothing); it never spends an execution's attempt.

A permit is good only while it is fresh. Calls are spaced on Redis's clock, but what the
provider sees is when each request arrives; a call that starts late after its permit
(its coroutine waited behind others in a busy loop) arrives closer to the next call than
the spacing. The margin tolerates a lateness of ``(SPACING_MARGIN - 1) x window / 2``; a
call that could not start within that takes a new slot instead (the old one is wasted),
so the limit holds at the provider by construction, not by luck.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import limits
import redis.asyncio as aioredis

from shared.ai_models import ProviderInfo, provider_configured
from shared.metrics import THROTTLE_WAIT_SECONDS, THROTTLE_WAITS
from shared.semaphore import ACQUIRE_SCRIPT
from shared.settings import Settings, get_settings

# GCRA: KEYS[1] holds the theoretical arrival time (TAT, microseconds on Redis's clock).
# A call may go when TAT <= now; it then moves TAT one interval (ARGV[1] us) further.
# Returns 0 (go) or the microseconds to wait.
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat > now then return tat - now end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor(interval / 1000) + 1000)
return 0
"""

# Take a slot if fewer than ARGV[1] live holders; holders expire at their score (ms).
_ACQUIRE = ACQUIRE_SCRIPT

KEY_PREFIX = "jobyard:throttle"
SPACING_MARGIN = 1.10  # see the module docstring


@dataclass
class Permit:
    """Permission to make one call now; release it when the call is over."""

    semaphore_key: str | None
    token: str
    client: aioredis.Redis | None
    fresh_for: float = float("inf")  # seconds after the grant the call must have started
    granted_at: float = field(default_factory=time.monotonic)

    def fresh(self) -> bool:
        """Whether the call can still start on time (see the module docstring)."""
        return time.monotonic() - self.granted_at <= self.fresh_for

    async def release(self) -> None:
        if self.semaphore_key and self.client is not None:
            await self.client.zrem(self.semaphore_key, self.token)


# The permit of a provider with no limit configured: nothing to take, nothing to give back.
UNLIMITED = Permit(None, "unlimited", None)


class ProviderThrottle:
    """Rate and concurrency limits for outgoing provider calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        parsed = {k: limits.parse(v) for k, v in settings.provider_rate_limits.items()}
        # Microseconds between two calls of a provider (its rate, parsed by `limits`).
        self.intervals_us = {
            key: int(item.get_expiry() * 1_000_000 * SPACING_MARGIN / item.amount)
            for key, item in parsed.items()
        }
        self.freshness = {
            key: item.get_expiry() * (SPACING_MARGIN - 1) / 2 for key, item in parsed.items()
        }
        self.concurrency = dict(settings.provider_concurrency)
        self._clients: dict[int, tuple[aioredis.Redis, object, object]] = {}

    def _redis(self) -> tuple[aioredis.Redis, object, object] | None:
        """This event loop's client and scripts (an asyncio client belongs to one loop)."""
        if not self.intervals_us and not self.concurrency:
            return None
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is None:
            client = aioredis.Redis.from_url(self.settings.redis_url)
            entry = (client, client.register_script(_ACQUIRE), client.register_script(_RATE))
            self._clients[id(loop)] = entry
        return entry

    def bucket(self, provider: ProviderInfo) -> str:
        """``provider:fingerprint`` — the budget a call draws on."""
        if provider_configured(provider, self.settings):
            attribute = provider.setting.lower().removeprefix("jobyard_")
            secret = str(getattr(self.settings, attribute))
            return f"{provider.key}:{hashlib.sha256(secret.encode()).hexdigest()[:12]}"
        return f"{provider.key}:simulated"

    async def try_acquire(self, provider: ProviderInfo) -> Permit | float:
        """A permit, or the seconds to wait before asking again."""
        redis_entry = self._redis()
        if redis_entry is None:
            return UNLIMITED
        token = uuid.uuid4().hex
        client, acquire_script, rate_script = redis_entry
        semaphore_key = None
        bucket = self.bucket(provider)
        cap = self.concurrency.get(provider.key)
        if cap is not None:
            semaphore_key = f"{KEY_PREFIX}:concurrency:{bucket}"
            now_ms = int(time.time() * 1000)
            ttl_ms = self.settings.lease_seconds * 1000
            taken = await acquire_script(  # type: ignore[operator]
                keys=[semaphore_key], args=[cap, token, now_ms, now_ms + ttl_ms, ttl_ms]
            )
            if not taken:
                return random.uniform(0.02, 0.2)  # a slot frees when a call ends
        interval = self.intervals_us.get(provider.key)
        if interval is not None:
            wait_us = int(
                await rate_script(  # type: ignore[operator]
                    keys=[f"{KEY_PREFIX}:rate:{bucket}"], args=[interval]
                )
            )
            if wait_us:
                if semaphore_key:
                    await client.zrem(semaphore_key, token)
                return wait_us / 1_000_000
        return Permit(semaphore_key, token, client, self.freshness.get(provider.key, float("inf")))

    async def acquire(self, provider: ProviderInfo, max_wait: float) -> Permit | float:
        """Wait for a permit up to ``max_wait`` seconds; else the seconds still to wait."""
        deadline = time.monotonic() + max_wait
        while True:
            outcome = await self.try_acquire(provider)
            if isinstance(outcome, Permit):
                return outcome
            if time.monotonic() + outcome > deadline:
                THROTTLE_WAITS.labels(provider.key, "deferred").inc()
                return outcome
            THROTTLE_WAITS.labels(provider.key, "waited").inc()
            THROTTLE_WAIT_SECONDS.labels(provider.key).inc(outcome)
            await asyncio.sleep(outcome)


@lru_cache(maxsize=1)
def provider_throttle() -> ProviderThrottle:
    """This process's throttle."""
    return ProviderThrottle(get_settings())
