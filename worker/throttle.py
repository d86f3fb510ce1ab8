"""Global limits per provider, shared by every worker process through Redis.

Two limits, each optional and configured per provider key in settings:

- a request **rate** (``JOBYARD_PROVIDER_RATE_LIMITS='{"openai": "500/minute"}'``), kept by
  the ``limits`` library's moving window — exact across processes, not Celery's
  per-worker ``rate_limit``;
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
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from shared.ai_models import ProviderInfo, provider_configured
from shared.settings import Settings, get_settings

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
        self.rates = {k: limits.parse(v) for k, v in settings.provider_rate_limits.items()}
        self.concurrency = dict(settings.provider_concurrency)
        self.client: redis.Redis | None = None
        self.rate_limiter: MovingWindowRateLimiter | None = None
        if self.rates or self.concurrency:
            self.client = redis.Redis.from_url(settings.redis_url)
            self._acquire_script = self.client.register_script(_ACQUIRE)
        if self.rates:
            self.rate_limiter = MovingWindowRateLimiter(storage_from_string(settings.redis_url))

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
        rate = self.rates.get(provider.key)
        limiter = self.rate_limiter
        if rate is not None and limiter is not None and not limiter.hit(rate, KEY_PREFIX, bucket):
            if semaphore_key and self.client is not None:
                self.client.zrem(semaphore_key, token)
            reset_at = limiter.get_window_stats(rate, KEY_PREFIX, bucket).reset_time
            return max(0.005, reset_at - time.time()) + random.uniform(0, 0.02)
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
