"""Webhooks, for any domain that sends them: signing secrets per organisation (Standard
Webhooks), messages delivered at least once with Svix's retry schedule, and a log of every
attempt. A domain turns its events into messages with :func:`enqueue`; the ``webhooks``
queue sends them (:func:`shared.webhooks.sender.deliver_due`)."""

from shared.webhooks.messages import enqueue

__all__ = ["enqueue"]
