"""Standard Webhooks signatures checked as a receiver would, written out from the
specification (https://www.standardwebhooks.com/), not with the library that signs them
(``standardwebhooks``; ``svix``'s Python ``Webhook.verify`` wraps that same library, so
it would not be a second opinion).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; each signature is the
base64 of its HMAC-SHA256 with the secret's key (the base64 after ``whsec_``); the header
holds ``v1,<signature>`` entries separated by spaces; a timestamp more than five minutes
off is refused (replays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

TOLERANCE_SECONDS = 5 * 60


class SignatureRefused(Exception):
    """The request is not one the secret's owner signed (or it is too old or too new)."""


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64>``: the signature of ``body`` with ``secret``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Refuse (``SignatureRefused``) unless one of the request's signatures is ``secret``'s
    over this body, id and timestamp, and the timestamp is within five minutes of now."""
    lower = {k.lower(): v for k, v in headers.items()}
    webhook_id = lower.get("webhook-id")
    timestamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (webhook_id and timestamp and signatures):
        raise SignatureRefused("a webhook-id, webhook-timestamp or webhook-signature is missing")
    if not timestamp.isdigit():
        raise SignatureRefused(f"webhook-timestamp {timestamp!r} is not Unix seconds")
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureRefused(f"webhook-timestamp {timestamp} is more than 5 minutes off")
    expected = signature(secret, webhook_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures.split(" ")):
        raise SignatureRefused("no signature by this secret matches")


def is_signed_by(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    try:
        verify(secret, headers, body)
    except SignatureRefused:
        return False
    return True
