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
FakeOpenAI()             OPENAI_BASE_URL             POST /v1/responses, /v1/chat/completions
FakeOpenAIEmbeddings()   JOBYARD_EMBEDDINGS_BASE_URL POST /v1/embeddings (vectors: not semantic)
FakeDeepSeek()           DEEPSEEK_BASE_URL           POST /chat/completions (no search)
FakePerplexity()         PERPLEXITY_BASE_URL         POST /chat/completions (+ ``citations``)
FakeAnthropic()          ANTHROPIC_BASE_URL          POST /v1/messages
FakeGemini()             GEMINI_BASE_URL             POST /v1beta/models/{model}:generateContent
FakeSearchEndpoint()     JOBYARD_SEARCH_ENDPOINT_URL POST /answer
FakeWebhookReceiver()    a batch's ``callbackUrl``   POST /hooks (``fake.hook_url``), any path
=======================  ==========================  ===========================================

Every fake checks the credential (``fake.api_key``, default ``FAKE_API_KEY``), the model
and the vendor's required fields first, and answers a bad request as the vendor would
without consuming a behaviour; sources appear only when the request asked for search (see
:mod:`tests.fakes.vendors`).

Behaviours (:mod:`tests.fakes.behaviours`): ``Reply(text, citations, retrieved, preamble)``,
``Truncated(text, kind)``,
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
    Truncated,
)
from tests.fakes.embeddings import FakeOpenAIEmbeddings
from tests.fakes.server import FAKE_API_KEY, FakeServer, RecordedRequest, Response
from tests.fakes.vendors import (
    FakeAnthropic,
    FakeDeepSeek,
    FakeGemini,
    FakeGoogleOAuth,
    FakeOpenAI,
    FakePerplexity,
    FakeSearchEndpoint,
)
from tests.fakes.webhooks import FakeWebhookReceiver

__all__ = [
    "DEFAULT_TEXT",
    "FAKE_API_KEY",
    "Behaviour",
    "Disconnect",
    "Empty",
    "Fail",
    "FakeAnthropic",
    "FakeDeepSeek",
    "FakeGemini",
    "FakeGoogleOAuth",
    "FakeOpenAI",
    "FakeOpenAIEmbeddings",
    "FakePerplexity",
    "FakeSearchEndpoint",
    "FakeServer",
    "FakeWebhookReceiver",
    "Hang",
    "Malformed",
    "RateLimited",
    "Raw",
    "RecordedRequest",
    "Refusal",
    "Reply",
    "Response",
    "Truncated",
]
