"""Webhooks, for any domain that sends them: signing secrets per organisation (Standard
Webhooks), messages delivered at least once with Svix's retry schedule, in order, and a
log of every attempt. A domain turns its events into messages with :func:`enqueue_all`
(a message about an execution follows the one before it; a job's closing message waits
for those of its executions), in the transaction that caused them; the sender processes
(``jobyard sender``, :mod:`shared.webhooks.sender`) send them, fairly across receivers,
each receiver behind its circuit breaker (:mod:`shared.webhooks.receivers`)."""

from shared.webhooks.messages import NewMessage, enqueue, enqueue_all

__all__ = ["NewMessage", "enqueue", "enqueue_all"]
