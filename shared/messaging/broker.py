"""Read-only looks at the broker that the recovery sweep needs."""

from __future__ import annotations

import redis

from shared.settings import get_settings

# kombu's Redis transport keeps one list per priority step; the default step is the bare
# queue name, the others carry this separator and the priority.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)


def queue_depth(queue: str) -> int:
    """Messages waiting in ``queue`` (not counting those a worker has prefetched)."""
    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)
    try:
        keys = [queue, *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS)]
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            return sum(int(n) for n in pipe.execute())
    finally:
        client.close()
