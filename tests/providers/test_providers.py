"""Every real provider against its vendor's fake: answers, citations, and each failure's
classification (retryable or not, and the wait the vendor asked for)."""

from __future__ import annotations

import re
import time

import pytest

from tests.fakes import (
    Disconnect,
    Empty,
    Fail,
    Hang,
    Malformed,
    RateLimited,
    Raw,
    Refusal,
    Reply,
)
from tests.providers.conftest import API_KEY, Harness, call
from worker.providers.base import ProviderError, WebSearch

CITATIONS = ("https://www.example.com/crm-guide", "https://reviews.example.org/best-crm")


def failure(vendor: Harness) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        vendor.ask()
    return caught.value


def test_success_gives_text_and_citations(vendor: Harness) -> None:
    vendor.fake.script([Reply("Acme CRM is the usual pick.", citations=CITATIONS)])
    answer = vendor.ask()
    assert answer.text == "Acme CRM is the usual pick."
    if vendor.vendor.searches:
        assert answer.citations == list(CITATIONS)
        assert answer.web_search is WebSearch.ON
    else:  # DeepSeek: no search API, and the answer says so
        assert answer.citations == []
        assert answer.web_search is WebSearch.UNAVAILABLE
    assert answer.provider == vendor.vendor.provider_name
    assert answer.model == vendor.vendor.model
    assert answer.simulated is False


def test_answer_without_citations(vendor: Harness) -> None:
    vendor.fake.script([Reply("No sources here.")])
    assert vendor.ask().citations == []


def test_language_and_country_reach_the_vendor(vendor: Harness) -> None:
    vendor.ask(language="de", country="AT", query="bestes CRM")
    (received,) = vendor.fake.requests
    locale = vendor.vendor.locale_text(received)
    assert re.search(r"\blanguage de\b", locale), locale
    assert re.search(r"\bcountry AT\b", locale), locale
    assert "bestes CRM" in received.body.decode()


def test_the_credential_is_sent(vendor: Harness) -> None:
    vendor.ask()
    (received,) = vendor.fake.requests
    if vendor.vendor.id == "search-endpoint":  # no credential setting for the endpoint
        assert received.api_key is None
    else:
        assert received.api_key == API_KEY


def test_429_is_retryable_after_retry_after_seconds(vendor: Harness) -> None:
    vendor.fake.script([RateLimited(retry_after="7")])
    error = failure(vendor)
    assert error.retryable is True
    assert error.retry_after == 7.0
    assert "429" in str(error)
    assert len(vendor.fake.requests) == 1  # the SDK did not retry on its own


def test_429_retry_after_ms(vendor: Harness) -> None:
    vendor.fake.script([RateLimited(retry_after=None, retry_after_ms="1500")])
    error = failure(vendor)
    assert error.retryable is True
    assert error.retry_after == 1.5


def test_429_without_a_wait_is_retryable_with_backoff(vendor: Harness) -> None:
    vendor.fake.script([RateLimited(retry_after=None)])
    error = failure(vendor)
    assert error.retryable is True
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retryable(vendor: Harness, status: int) -> None:
    vendor.fake.script([Fail(status, "upstream exploded")])
    error = failure(vendor)
    assert error.retryable is True
    assert error.retry_after is None
    assert str(status) in str(error) and "upstream exploded" in str(error)
    assert len(vendor.fake.requests) == 1


def test_5xx_with_retry_after_is_honoured(vendor: Harness) -> None:
    vendor.fake.script([Fail(503, "maintenance", headers={"Retry-After": "30"})])
    error = failure(vendor)
    assert error.retryable is True
    assert error.retry_after == 30.0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_4xx_is_not_retryable(vendor: Harness, status: int) -> None:
    vendor.fake.script([Fail(status, "you did something wrong")])
    error = failure(vendor)
    assert error.retryable is False
    assert error.retry_after is None
    assert str(status) in str(error) and "you did something wrong" in str(error)


def test_timeout_is_retryable_and_quick(vendor: Harness) -> None:
    vendor.set_timeout(0.5)
    vendor.fake.script([Hang(seconds=5)])
    started = time.monotonic()
    error = failure(vendor)
    elapsed = time.monotonic() - started
    assert error.retryable is True
    assert "timeout" in str(error)
    assert 0.4 < elapsed < 2.0, elapsed  # one attempt, cut at the configured timeout
    assert len(vendor.fake.requests) == 1


def test_a_slow_answer_within_the_timeout_succeeds(vendor: Harness) -> None:
    vendor.set_timeout(2)
    vendor.fake.script([Hang(seconds=0.1, then=Reply("late but fine"))])
    assert vendor.ask().text == "late but fine"


def test_dropped_connection_is_retryable(vendor: Harness) -> None:
    vendor.fake.script([Disconnect()])
    error = failure(vendor)
    assert error.retryable is True
    assert "connection" in str(error)


def test_connection_refused_is_retryable(vendor: Harness) -> None:
    with vendor.vendor.make_fake() as gone:
        vendor.use(gone)
    error = failure(vendor)  # nothing listens there any more
    assert error.retryable is True
    assert "connection" in str(error)


def test_malformed_body_is_retryable(vendor: Harness) -> None:
    """Our choice (see worker.providers.errors.malformed_body): a body that does not parse
    is a transport accident, which a later attempt does not meet."""
    vendor.fake.script([Malformed(b'{"truncated": ')])
    error = failure(vendor)
    assert error.retryable is True
    assert "malformed" in str(error)


def test_html_page_with_status_200_is_malformed(vendor: Harness) -> None:
    vendor.fake.script(
        [Malformed(b"<html><body>Bad gateway</body></html>", content_type="text/html")]
    )
    error = failure(vendor)
    assert error.retryable is True
    assert "malformed" in str(error)


def test_json_of_the_wrong_shape_is_malformed(vendor: Harness) -> None:
    vendor.fake.script([Raw(200, {"unexpected": True})])
    error = failure(vendor)
    assert error.retryable is True
    assert "malformed" in str(error)


def test_empty_answer_is_not_retryable(vendor: Harness) -> None:
    vendor.fake.script([Empty()])
    error = failure(vendor)
    assert error.retryable is False
    assert "empty answer" in str(error)


def test_refusal_is_not_retryable(vendor: Harness) -> None:
    vendor.fake.script([Refusal("I can't help with that request.")])
    error = failure(vendor)
    assert error.retryable is False
    assert "refused" in str(error)


def test_retry_after_an_error_then_success(vendor: Harness) -> None:
    """The provider keeps no state from a failed call: the worker's retry just works."""
    vendor.fake.script([Fail(500), RateLimited(), Reply("third time lucky")])
    provider = vendor.provider()
    for _ in range(2):
        with pytest.raises(ProviderError):
            call(provider, vendor.request())
    assert call(provider, vendor.request()).text == "third time lucky"
    assert len(vendor.fake.requests) == 3
