"""The worker's Redis transport: kombu's own, minus one way a lost connection kills it.

When the broker connection drops, kombu tears the connection down while work still uses
its channel: restoring the unacknowledged messages, or acking a task that just finished
in a pool thread. The channel then builds a Redis client from a connection that is gone
and fails with ``AttributeError: 'NoneType' object has no attribute 'client'`` (or
``'hostname'``; kombu issues #582 and #970 show the same in other paths). kombu's handlers
expect a *connection* error there, which they log and recover from; an AttributeError
instead stops the worker with "Unrecoverable error". Seen here when a test restarted Redis
in the middle of a job.

This channel raises the connection error the situation is. Nothing is lost by it: a
restore that cannot run leaves the messages in Redis' unacked set (redelivered after the
visibility timeout and dropped by the claim), and the executions behind them are leased
to this live worker or found again by the recovery sweep. Used by the worker only
(``broker_transport`` in :mod:`worker.celery_app`); producers use kombu's transport as is.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
