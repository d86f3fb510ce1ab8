"""A webhook receiver: what a customer's callback endpoint is, over :class:`FakeServer`.

It takes a POST on any path; a :class:`Reply` is a 200 with ``ok`` (Standard Webhooks
receivers answer any 2xx), ``Fail(status)`` that status, ``Hang(seconds)`` holds the
request open (the sender waits for an answer that does not come), ``Disconnect()`` drops
the connection. Requests are recorded with their headers (``webhook-id`` ...) and body.
"""

from __future__ import annotations

from tests.fakes.behaviours import Reply
from tests.fakes.server import FakeServer, RecordedRequest, Response


class FakeWebhookReceiver(FakeServer):
    """A callback endpoint on 127.0.0.1: its URL is :attr:`hook_url`."""

    prefix = "/hooks"

    @property
    def hook_url(self) -> str:
        return self.base_url

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        return Response(200, b"ok", (("Content-Type", "text/plain"),))

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        return Response(
            status, message.encode(), (("Content-Type", "text/plain"), *headers.items())
        )

    def webhook_ids(self) -> list[str]:
        """The ``webhook-id`` of every request received, in arrival order."""
        return [r.headers.get("webhook-id", "") for r in self.requests]
