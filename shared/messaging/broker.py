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


# A key jobyard leaves in the broker. Redis without persistence forgets every message on a
# restart (as does a FLUSHALL, or a failover to an empty replica), and nothing else says
# so: the executions handed out before look "in the broker" to the database for ever. The
# mark's absence is the sign. (On a brand-new broker it is absent too: whatever the
# database thinks is in the broker is handed out again, and a duplicate finds nothing to
# claim.)
BROKER_MARK = "jobyard:broker-mark"


def broker_was_emptied() -> bool:
    """Whether the broker lost its data since the last look; leaves the mark for the next."""
    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)
    try:
        return bool(client.set(BROKER_MARK, "1", nx=True))
    finally:
        client.close()
