"""The one failure policy (worker.providers.errors), independent of any vendor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.providers.errors import (
    error_message,
    http_error,
    is_retryable_status,
    malformed_body,
    retry_after_seconds,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "12"}, None, 12.0),
        ({"retry-after": "0.25"}, None, 0.25),
        ({"Retry-After": "-5"}, None, 0.0),
        ({"Retry-After": "Thu, 01 Jan 2026 12:00:45 GMT"}, None, 45.0),
        ({"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}, None, 0.0),  # in the past
        ({"Retry-After": "soon"}, None, None),
        ({"retry-after-ms": "1500", "Retry-After": "2"}, None, 1.5),  # ms is more precise
        ({"retry-after-ms": "junk", "Retry-After": "2"}, None, 2.0),
        ({}, None, None),
        (None, None, None),
        (
            {},
            {
                "error": {
                    "code": 429,
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.Help"},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
                    ],
                }
            },
            37.0,
        ),
        (
            {"Retry-After": "3"},
            {"error": {"details": [{"@type": "x.RetryInfo", "retryDelay": "9s"}]}},
            3.0,
        ),
    ],
)
def test_retry_after_seconds(
    headers: dict[str, str] | None, body: object, expected: float | None
) -> None:
    assert retry_after_seconds(headers, body, now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (529, True),
    ],
)
def test_status_classification(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
    assert http_error("v", status).retryable is retryable


def test_overloaded_is_retryable_whatever_the_status() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert http_error("anthropic", 400, body=body).retryable is True


def test_x_should_retry_is_the_vendors_verdict() -> None:
    assert http_error("v", 500, headers={"X-Should-Retry": "false"}).retryable is False
    assert http_error("v", 400, headers={"x-should-retry": "true"}).retryable is True


def test_no_retry_after_on_a_permanent_error() -> None:
    error = http_error("v", 400, headers={"Retry-After": "10"})
    assert error.retryable is False and error.retry_after is None


def test_messages_are_clear_and_bounded() -> None:
    error = http_error(
        "openai",
        429,
        body={"message": "x" * 1000, "code": "rate_limit_exceeded"},
        headers={"Retry-After": "2"},
    )
    text = str(error)
    assert text.startswith("openai: HTTP 429 (rate_limit_exceeded): xxx")
    assert text.endswith("(retry after 2s)")
    assert len(text) < 400
    assert malformed_body("v", "bad").retryable is True


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"message": "nested"}}, "nested"),
        ({"error": "flat"}, "flat"),
        ({"message": "top"}, "top"),
        ("  plain text  ", "plain text"),
        (None, "fallback"),
        ({"error": {}}, "fallback"),
    ],
)
def test_error_message(body: object, expected: str) -> None:
    assert error_message(body, "fallback") == expected
