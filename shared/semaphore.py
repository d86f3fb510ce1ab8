"""A counting semaphore shared by every process through Redis, whose holders expire.

The holders of a semaphore are the members of one sorted set, each scored with the time
its hold expires. Taking a slot first drops the expired holders, then adds itself if fewer
than the limit remain, in one script (atomic in Redis). A process killed while holding a
slot gives it back when its hold expires, never later: a hold lasts at most the lease
its taker asked for.
"""

from __future__ import annotations

import time
import uuid

import redis

# KEYS[1]: the holders. ARGV: limit, token, now (ms), the token's expiry (ms), the set's
# expiry (ms). Returns 1 when the token now holds a slot, else 0.
ACQUIRE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


class RedisSemaphore:
    """At most ``limit`` holders of ``key`` at once, each for at most ``lease_seconds``."""

    def __init__(self, client: redis.Redis, key: str, limit: int, lease_seconds: float) -> None:
        self.client = client
        self.key = key
        self.limit = limit
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._acquire = client.register_script(ACQUIRE_SCRIPT)

    def try_acquire(self) -> str | None:
        """A token holding a slot, or None when every slot is held (redis errors pass)."""
        token = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        taken = self._acquire(
            keys=[self.key],
            args=[self.limit, token, now_ms, now_ms + self.lease_ms, self.lease_ms],
        )
        return token if taken else None

    def release(self, token: str) -> None:
        self.client.zrem(self.key, token)
