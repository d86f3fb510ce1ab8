"""How a failed provider call becomes a :class:`ProviderError`: one policy for every vendor.

Each provider unpacks its SDK's exception (status, headers, body) and hands it to the
functions here, so what is retried, and after how long, is decided in one place:

=====================================================  ==========  ==========================
failure                                                retryable   retry_after
=====================================================  ==========  ==========================
timeout (no response within provider_timeout_seconds)  yes         None (worker's backoff)
connection refused / reset / dropped, DNS, TLS         yes         None
HTTP 429 (rate limited)                                yes         Retry-After / retry-after-ms
HTTP 429 on a per-day quota (OpenAI RPD, Gemini        yes         at least an hour
``...PerDay...`` quota id)
HTTP 429 with code ``insufficient_quota`` (billing)    no          --
HTTP 408, 409 (request timeout, lock conflict)         yes         Retry-After if sent
HTTP 5xx, 529 and ``overloaded_error`` at any status   yes         Retry-After if sent
other HTTP 4xx (400 bad request, 401/403 key, 404...)  no          --
``x-should-retry: true|false`` header (OpenAI,         as the      --
Anthropic): the vendor's explicit verdict wins         header says
content refusal / safety block / content filter        no          --
well-formed answer with no text in it                  no          --
malformed body (not JSON, not the vendor's shape)      yes         None (see malformed_body)
=====================================================  ==========  ==========================

``retry_after`` comes from ``retry-after-ms`` (milliseconds, OpenAI/Anthropic), else
``Retry-After`` (delay-seconds or an HTTP-date), else a ``google.rpc.RetryInfo`` detail in
the error body (Gemini's ``retryDelay: "37s"``). The worker waits at least that long.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any

import aiohttp
import httpx

from worker.providers.base import ProviderError, Served

try:  # the SDKs' own HTTP stack (a fork of httpx with its own exception classes)
    import httpx2

    _TIMEOUTS: tuple[type[BaseException], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
    _TRANSPORT: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
    _BAD_URL: tuple[type[BaseException], ...] = (
        httpx.UnsupportedProtocol,
        httpx.InvalidURL,
        httpx2.UnsupportedProtocol,
        httpx2.InvalidURL,
    )
except ImportError:  # pragma: no cover - httpx2 comes with the SDKs
    _TIMEOUTS = (httpx.TimeoutException,)
    _TRANSPORT = (httpx.TransportError,)
    _BAD_URL = (httpx.UnsupportedProtocol, httpx.InvalidURL)

# aiohttp: the transport of the async clients (and google-genai's own choice when present).
_TIMEOUTS += (asyncio.TimeoutError, aiohttp.ServerTimeoutError)
_TRANSPORT += (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, *_TIMEOUTS)
_BAD_URL += (aiohttp.InvalidURL,)

MAX_MESSAGE_CHARS = 300
DAILY_QUOTA_WAIT_SECONDS = 3600.0
RETRYABLE_4XX = frozenset({408, 409, 429})
# Error codes that mean "retrying cannot help" although the status alone says it might.
PERMANENT_CODES = frozenset({"insufficient_quota"})
# Error codes (types) that mean "try again later" whatever the status.
TRANSIENT_CODES = frozenset({"overloaded_error", "rate_limit_error"})


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and every 5xx (529 "overloaded" included)."""
    return status in RETRYABLE_4XX or status >= 500


def _lower(headers: Mapping[str, str] | Any | None) -> dict[str, str]:
    if headers is None:
        return {}
    try:
        return {str(k).lower(): str(v) for k, v in headers.items()}
    except AttributeError:
        return {}


def retry_after_seconds(
    headers: Mapping[str, str] | Any | None, body: Any = None, *, now: datetime | None = None
) -> float | None:
    """The vendor's requested wait in seconds (see the module docstring), or None."""
    lowered = _lower(headers)
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after", "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return _rpc_retry_delay(body)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _rpc_retry_delay(body: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` ("37s", "1.5s") from a Google error body."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def error_message(body: Any, fallback: str = "") -> str:
    """The human message of an error body in any of the vendors' envelopes."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if body.get("message"):
            return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()
    return fallback


def error_code(body: Any) -> str | None:
    """The machine code of an error body (OpenAI ``code``, Anthropic ``type``)."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error", body)
    if not isinstance(error, Mapping):
        return None
    codes = [error.get(key) for key in ("code", "type", "status")]
    codes = [c for c in codes if isinstance(c, str) and c]
    for code in codes:
        if code in PERMANENT_CODES or code in TRANSIENT_CODES:
            return code
    return codes[0] if codes else None


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def http_error(
    provider: str,
    status: int,
    *,
    message: str = "",
    headers: Mapping[str, str] | Any | None = None,
    body: Any = None,
    code: str | None = None,
) -> ProviderError:
    """The ProviderError for an HTTP error response (status >= 400, or a 2xx/3xx that is
    not the success the contract promises)."""
    lowered = _lower(headers)
    code = code or error_code(body)
    retryable = is_retryable_status(status)
    if code in TRANSIENT_CODES:
        retryable = True
    if code in PERMANENT_CODES:
        retryable = False
    should_retry = lowered.get("x-should-retry", "").strip().lower()
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    wait = retry_after_seconds(lowered, body) if retryable else None
    if status == 429 and retryable and is_daily_quota(message, body):
        # A day's quota is spent: asking again within seconds only burns attempts.
        wait = max(wait or 0.0, DAILY_QUOTA_WAIT_SECONDS)
    text = _clip(message or error_message(body) or f"HTTP {status}")
    parts = [f"{provider}: HTTP {status}"]
    if code:
        parts.append(f"({code})")
    summary = " ".join(parts) + f": {text}"
    if wait is not None:
        summary += f" (retry after {wait:g}s)"
    return ProviderError(summary, retryable=retryable, retry_after=wait)


_PER_DAY = re.compile(r"per ?day|\(RPD\)|\(TPD\)", re.IGNORECASE)


def is_daily_quota(message: str, body: Any) -> bool:
    """Whether a 429 is a per-day quota (OpenAI's "requests per day (RPD)", Gemini's
    ``QuotaFailure`` quota id ``...PerDay...``) rather than a per-minute limit."""
    return bool(_PER_DAY.search(message or "") or _PER_DAY.search(json.dumps(body, default=str)))


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a network-level failure (httpx, the SDKs' httpx2, aiohttp)."""
    return isinstance(exc, _TRANSPORT)


def transport_error(provider: str, exc: BaseException, timeout: float) -> ProviderError:
    """A timeout or connection failure: retryable, except a URL that can never work."""
    if isinstance(exc, _TIMEOUTS):
        return timeout_error(provider, timeout)
    if isinstance(exc, _BAD_URL):
        return ProviderError(
            f"{provider}: invalid endpoint URL: {_clip(str(exc))}", retryable=False
        )
    return connection_error(provider, exc)


def timeout_error(provider: str, timeout: float) -> ProviderError:
    return ProviderError(
        f"{provider}: no response within {timeout:g}s (timeout)", retryable=True, retry_after=None
    )


def connection_error(provider: str, exc: BaseException) -> ProviderError:
    cause = exc.__cause__ or exc.__context__ or exc
    detail = str(cause) or type(cause).__name__
    return ProviderError(f"{provider}: connection failed: {_clip(detail)}", retryable=True)


def malformed_body(provider: str, detail: str) -> ProviderError:
    """A 2xx whose body is not JSON or not the vendor's shape.

    Retryable, on purpose: the vendors' APIs are schema-stable, so a body that does not
    parse is nearly always a transport-level accident (a response truncated by a proxy, an
    HTML error page from a load balancer or captive gateway served with status 200, a
    half-written body during an incident), which a later attempt does not meet. The cost
    is bounded by ``max_attempts``, and the error is kept if every attempt meets it.
    """
    return ProviderError(f"{provider}: malformed response: {_clip(detail)}", retryable=True)


def empty_answer(provider: str, detail: str = "") -> ProviderError:
    """A well-formed answer with no text: the model did answer, with nothing; asking the
    same question again is no more likely to help than a refusal."""
    message = f"{provider}: empty answer"
    if detail:
        message += f" ({_clip(detail)})"
    return ProviderError(message, retryable=False)


def truncated(
    provider: str, reason: str, served: Served | None, *, retryable: bool = False
) -> ProviderError:
    """The vendor stopped before the answer was complete (the output token cap, a paused
    tool loop): never stored as a success. A cut at the token cap would be cut again, so
    it fails; a paused turn is asked again."""
    return ProviderError(
        f"{provider}: the answer is incomplete ({reason}); an incomplete answer is not stored",
        retryable=retryable,
        served=served,
    )


def refused(provider: str, detail: str) -> ProviderError:
    """The model (or the vendor's safety system) declined: deterministic, not retried."""
    return ProviderError(f"{provider}: refused to answer: {_clip(detail)}", retryable=False)


def body_of(response: Any) -> Any:
    """The JSON body of an httpx/httpx2 response (its text when not JSON; None if unread)."""
    try:
        return response.json()
    except (ValueError, AttributeError, json.JSONDecodeError):
        try:
            return response.text
        except Exception:
            return None


def _dropped_connection(exc: BaseException) -> BaseException | None:
    """The aiohttp connection failure behind an SDK "timeout", if that is what it was.

    The SDKs' aiohttp transport reports every aiohttp connection error (refused, reset,
    server disconnected) as a connect timeout; the cause chain keeps the real one.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
            cause, asyncio.TimeoutError
        ):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


@contextmanager
def sdk_errors(provider: str, sdk: ModuleType, timeout: float) -> Iterator[None]:
    """Turn the exceptions of a Stainless-generated SDK into :class:`ProviderError`.

    The OpenAI and Anthropic SDKs share one generated exception hierarchy
    (``APIResponseValidationError``, ``APIStatusError``, ``APITimeoutError``,
    ``APIConnectionError``), so one mapping serves both: ``with sdk_errors(name, openai,
    timeout): ...``.
    """
    try:
        yield
    except sdk.APIResponseValidationError as exc:
        raise malformed_body(provider, exc.message) from exc
    except sdk.APIStatusError as exc:
        raise http_error(
            provider,
            exc.status_code,
            message=error_message(exc.body, exc.message),
            headers=exc.response.headers,
            body=exc.body,
        ) from exc
    except sdk.APITimeoutError as exc:  # before APIConnectionError, its base class
        dropped = _dropped_connection(exc)
        if dropped is not None:
            raise connection_error(provider, dropped) from exc
        raise timeout_error(provider, timeout) from exc
    except sdk.APIConnectionError as exc:
        raise connection_error(provider, exc) from exc
    except json.JSONDecodeError as exc:
        raise malformed_body(provider, f"the body is not JSON ({exc})") from exc
    except getattr(sdk, "OpenAIError", ()) as exc:
        # Raised before any request left: the SDK's Vertex provider could not get Google
        # credentials (a metadata server or token endpoint hiccup is worth another try).
        raise ProviderError(f"{provider}: {exc}", retryable=True) from exc
