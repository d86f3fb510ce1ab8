"""The recovery sweep's last actions, for the dashboard's operations page: each sweep's
summary (what it released, failed, handed out again...) pushed on a short Redis list.

Redis, not a table: a sweep runs every few seconds, the record is only for looking at,
and a list capped at :data:`KEPT` entries costs one round trip per sweep and never grows.
Losing it (a Redis restart) loses nothing the engine needs. The summaries hold counts
only, no tenant's ids.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import redis

from shared.settings import get_settings

log = logging.getLogger(__name__)

KEY = "jobyard:recovery-sweeps"
KEPT = 50


def _client() -> redis.Redis:
    return redis.Redis.from_url(
        get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2
    )


def record(summary: dict[str, int], at: datetime) -> None:
    """Keep ``summary`` as the latest sweep's (a failure is logged: the sweep goes on)."""
    entry = json.dumps({"at": at.isoformat(), **summary})
    client = _client()
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.lpush(KEY, entry)
            pipe.ltrim(KEY, 0, KEPT - 1)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("recovery sweep: its summary was not recorded: %s", exc)
    finally:
        client.close()


def recent(limit: int = 20) -> list[dict[str, Any]]:
    """The latest sweeps' summaries, newest first (empty when Redis cannot be read)."""
    client = _client()
    try:
        entries = client.lrange(KEY, 0, limit - 1)
    except redis.RedisError as exc:
        log.warning("recovery sweep summaries unavailable: %s", exc)
        return []
    finally:
        client.close()
    return [json.loads(entry) for entry in entries]
