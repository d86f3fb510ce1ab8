"""``webhooks.deliver``: send the webhook messages that are due (published after outbox
events became messages, and by beat every few seconds). After a round that sent anything,
the next due message within a minute gets its own delayed delivery task: a 5 s retry does
not wait for beat's next look, and a message that waited for the ones this round settled
(a batch's callback after its data points') goes out at once."""

from __future__ import annotations

from shared.messaging.publisher import publish, publish_webhook_delivery
from shared.messaging.queues import WEBHOOKS_DELIVER_TASK
from shared.webhooks.sender import deliver_due, soonest_retry
from worker.tasks.durable import durable_task

SOON_SECONDS = 60.0


@durable_task(WEBHOOKS_DELIVER_TASK)
def deliver() -> dict[str, int]:
    counts = deliver_due()
    if counts.get("more"):
        publish_webhook_delivery()  # the rest, by whichever sender is free
    elif counts.get("sent"):  # retries were scheduled, or waiting messages may be free now
        wait = soonest_retry()
        if wait is not None and wait <= SOON_SECONDS:
            publish(WEBHOOKS_DELIVER_TASK, [], countdown=wait)
    return counts
