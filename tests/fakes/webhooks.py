"""A webhook receiver: what a customer's callback endpoint is, over :class:`FakeServer`.

It takes a POST on any path; a :class:`Reply` is a 200 with ``ok`` (Standard Webhooks
receivers answer any 2xx), ``Fail(status)`` that status, ``Hang(seconds)`` holds the
request open (the sender waits for an answer that does not come), ``Disconnect()`` drops
the connection. Requests are recorded with their headers (``webhook-id`` ...) and body,
and every answer with the moment it was sent.

Behaviours come from the script (then ``default``) or, when ``answer`` is given, from
``answer(request, attempt)``, where ``attempt`` counts the requests with that request's
``webhook-id`` (1 for the first): a receiver that fails some callbacks' first attempt, or
answers some slowly, by what they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.fakes.behaviours import Behaviour, Reply
from tests.fakes.server import FakeServer, RecordedRequest, Response


@dataclass(frozen=True)
class Answered:
    """A request and when its answer (``status``) was sent (``time.monotonic()``)."""

    request: RecordedRequest
    status: int
    at_monotonic: float


class FakeWebhookReceiver(FakeServer):
    """A callback endpoint on 127.0.0.1: its URL is :attr:`hook_url`."""

    prefix = "/hooks"

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        answer: Callable[[RecordedRequest, int], Behaviour] | None = None,
    ) -> None:
        super().__init__(default=default)
        self.answer = answer
        self.answered: list[Answered] = []  # in the order the answers were sent
        self._attempts: dict[str, int] = {}

    @property
    def hook_url(self) -> str:
        return self.base_url

    def behaviour_for(self, request: RecordedRequest) -> Behaviour:
        webhook_id = request.headers.get("webhook-id", "")
        self._attempts[webhook_id] = self._attempts.get(webhook_id, 0) + 1
        if self.answer is not None:
            return self.answer(request, self._attempts[webhook_id])
        return super().behaviour_for(request)

    def reply(self, behaviour: Reply, request: RecordedRequest) -> Response:
        return self._answered(Response(200, b"ok", (("Content-Type", "text/plain"),)), request)

    def error(
        self, status: int, message: str, headers: dict[str, str], request: RecordedRequest
    ) -> Response:
        response = Response(
            status, message.encode(), (("Content-Type", "text/plain"), *headers.items())
        )
        return self._answered(response, request)

    def _answered(self, response: Response, request: RecordedRequest) -> Response:
        with self._lock:
            self.answered.append(Answered(request, response.status, time.monotonic()))
        return response

    def webhook_ids(self) -> list[str]:
        """The ``webhook-id`` of every request received, in arrival order."""
        return [r.headers.get("webhook-id", "") for r in self.requests]
