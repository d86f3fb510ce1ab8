"""Fake AI vendors: real HTTP servers on 127.0.0.1 that speak each vendor's wire format.

Each fake listens on a random free port, serves from a background thread, answers each
request with the next scripted behaviour (then ``fake.default``, a :class:`Reply`), and
records every request it receives::

    from tests.fakes import FakeOpenAI, RateLimited, Reply

    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        fake.script([RateLimited(retry_after="2"), Reply("Acme is best", citations=("https://a.example/x",))])
        ...                                   # call the provider / run a worker
        first = fake.requests[0]              # RecordedRequest
        first.path, first.headers, first.json, first.received_at, first.api_key
        FakeOpenAI.system_prompt(first)       # the system message it was sent
        fake.wait_for_requests(3, timeout=10) # for requests made by other processes

Fakes and the base URL to configure (``fake.base_url``):

=======================  ==========================  ===========================================
fake                     setting                     requests served
=======================  ==========================  ===========================================
FakeOpenAI()             OPENAI_BASE_URL             POST /v1/chat/completions
FakeOpenAI(prefix="")    DEEPSEEK_BASE_URL           POST /chat/completions
FakePerplexity()         PERPLEXITY_BASE_URL         POST /chat/completions (+ ``citations``)
FakeAnthropic()          ANTHROPIC_BASE_URL          POST /v1/messages
FakeGemini()             GEMINI_BASE_URL             POST /v1beta/models/{model}:generateContent
FakeSearchEndpoint()     JOBYARD_SEARCH_ENDPOINT_URL POST /answer
=======================  ==========================  ===========================================

Behaviours (:mod:`tests.fakes.behaviours`): ``Reply(text, citations)``,
``RateLimited(retry_after="1", retry_after_ms=None)``, ``Fail(status, message)``,
``Hang(seconds, then=Reply())``, ``Malformed(body)``, ``Empty()``, ``Refusal(message,
kind)``, ``Disconnect()``, ``Raw(status, body, headers)``. ``fake.script([...])`` appends to
the queue, ``fake.default = Fail(503)`` changes what comes after it, ``fake.reset()``
forgets both queue and recorded requests. A request to a path the vendor does not serve
gets that vendor's 404 and consumes no behaviour.
"""

from tests.fakes.behaviours import (
    DEFAULT_TEXT,
    Behaviour,
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
from tests.fakes.server import FakeServer, RecordedRequest, Response
from tests.fakes.vendors import (
    FakeAnthropic,
    FakeGemini,
    FakeOpenAI,
    FakePerplexity,
    FakeSearchEndpoint,
)

__all__ = [
    "DEFAULT_TEXT",
    "Behaviour",
    "Disconnect",
    "Empty",
    "Fail",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAI",
    "FakePerplexity",
    "FakeSearchEndpoint",
    "FakeServer",
    "Hang",
    "Malformed",
    "RateLimited",
    "Raw",
    "RecordedRequest",
    "Refusal",
    "Reply",
    "Response",
]
