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
two keys of one provider, never share a budget. A throttled call waits; it never spends an
execution's attempt (see :mod:`worker.runner`).
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

import limits
import redis

from shared.ai_models import ProviderInfo, provider_configured
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
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""

KEY_PREFIX = "jobyard:throttle"
SPACING_MARGIN = 1.10  # see the module docstring


@dataclass
class Permit:
    """Permission to make one call; release it when the call is over."""

    semaphore_key: str | None
    token: str
    client: redis.Redis | None

    def release(self) -> None:
        if self.semaphore_key and self.client is not None:
            self.client.zrem(self.semaphore_key, self.token)


class ProviderThrottle:
    """Rate and concurrency limits for outgoing provider calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Microseconds between two calls of a provider (its rate, parsed by `limits`).
        self.intervals_us = {
            key: int(item.get_expiry() * 1_000_000 * SPACING_MARGIN / item.amount)
            for key, item in (
                (k, limits.parse(v)) for k, v in settings.provider_rate_limits.items()
            )
        }
        self.concurrency = dict(settings.provider_concurrency)
        self.client: redis.Redis | None = None
        if self.intervals_us or self.concurrency:
            self.client = redis.Redis.from_url(settings.redis_url)
            self._acquire_script = self.client.register_script(_ACQUIRE)
            self._rate_script = self.client.register_script(_RATE)

    def bucket(self, provider: ProviderInfo) -> str:
        """``provider:fingerprint`` — the budget a call draws on."""
        if provider_configured(provider, self.settings):
            attribute = provider.setting.lower().removeprefix("jobyard_")
            secret = str(getattr(self.settings, attribute))
            return f"{provider.key}:{hashlib.sha256(secret.encode()).hexdigest()[:12]}"
        return f"{provider.key}:simulated"

    def try_acquire(self, provider: ProviderInfo) -> Permit | float:
        """A permit, or the seconds to wait before asking again."""
        token = uuid.uuid4().hex
        semaphore_key = None
        bucket = self.bucket(provider)
        cap = self.concurrency.get(provider.key)
        if cap is not None and self.client is not None:
            semaphore_key = f"{KEY_PREFIX}:concurrency:{bucket}"
            now_ms = int(time.time() * 1000)
            ttl_ms = self.settings.lease_seconds * 1000
            taken = self._acquire_script(
                keys=[semaphore_key], args=[cap, token, now_ms, now_ms + ttl_ms, ttl_ms]
            )
            if not taken:
                return random.uniform(0.02, 0.2)  # a slot frees when a call ends
        interval = self.intervals_us.get(provider.key)
        if interval is not None and self.client is not None:
            wait_us = int(self._rate_script(keys=[f"{KEY_PREFIX}:rate:{bucket}"], args=[interval]))
            if wait_us:
                if semaphore_key:
                    self.client.zrem(semaphore_key, token)
                return wait_us / 1_000_000
        return Permit(semaphore_key, token, self.client)

    def acquire(self, provider: ProviderInfo, max_wait: float) -> Permit | float:
        """Wait here for a permit up to ``max_wait`` seconds; else the seconds still to wait."""
        deadline = time.monotonic() + max_wait
        while True:
            outcome = self.try_acquire(provider)
            if isinstance(outcome, Permit):
                return outcome
            if time.monotonic() + outcome > deadline:
                return outcome
            time.sleep(outcome)


@lru_cache(maxsize=1)
def provider_throttle() -> ProviderThrottle:
    """This process's throttle."""
    return ProviderThrottle(get_settings())
