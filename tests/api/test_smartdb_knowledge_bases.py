"""Knowledge bases: create/read/delete through the API, rows written as chunks (the sync
jobs' path, called directly here), and search ranked by cosine with filters first."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from shared.db import session_scope
from shared.kb import knowledge
from shared.kb.embedders import hashing
from shared.kb.models import KbChunk
from tests.support import Tenant

PRODUCTS = [
    {
        "id": 1,
        "product": "Wireless headphones",
        "description": "Noise cancelling over-ear headphones with a 30 hour battery.",
        "category": "audio",
    },
    {
        "id": 2,
        "product": "Espresso machine",
        "description": "Pump espresso maker with a steam wand for milk.",
        "category": "kitchen",
    },
    {
        "id": 3,
        "product": "Trail running shoes",
        "description": "Light shoes with a grippy sole for muddy trails.",
        "category": "sport",
    },
    {
        "id": 4,
        "product": "Bluetooth speaker",
        "description": "Waterproof portable speaker, 12 hours of music.",
        "category": "audio",
    },
    {
        "id": 5,
        "product": "Chef knife",
        "description": "Forged steel knife for the kitchen.",
        "category": "kitchen",
    },
]


def create(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return client.post("/knowledge_bases", headers=tenant.headers(), json=body)


def search(client: FlaskClient, tenant: Tenant, name: str, **body: Any) -> list[dict[str, Any]]:
    response = client.post(f"/knowledge_bases/{name}/search", headers=tenant.headers(), json=body)
    assert response.status_code == 200, response.json
    found: list[dict[str, Any]] = response.json["data"]
    return found


def load(tenant: Tenant, name: str, rows: list[dict[str, Any]]) -> int:
    with session_scope() as session:
        kb = knowledge.get_kb(session, tenant.org_id, name)
        return knowledge.upsert_rows(session, kb, rows, ["product", "description"])


@pytest.fixture
def orders_kb(client: FlaskClient, tenant: Tenant) -> str:
    body = {"name": "orders_kb", "id_column": "id", "metadata_columns": ["category"]}
    response = create(client, tenant, body)
    assert response.status_code == 201, response.json
    load(tenant, "orders_kb", PRODUCTS)
    return "orders_kb"


def test_search_ranks_the_matching_product_first(
    client: FlaskClient, tenant: Tenant, orders_kb: str
) -> None:
    for query, expected in [
        ("headphones with long battery", "1"),
        ("coffee espresso", "2"),
        ("shoes for running on trails", "3"),
        ("portable waterproof speaker", "4"),
        ("kitchen knife", "5"),
    ]:
        found = search(client, tenant, orders_kb, query=query, limit=3)
        assert found[0]["id"] == expected, (query, [f["id"] for f in found])
        assert found[0]["chunk_id"] == f"{expected}:0"
        assert set(found[0]) == {
            "id",
            "chunk_id",
            "chunk_content",
            "metadata",
            "distance",
            "relevance",
        }
        relevances = [f["relevance"] for f in found]
        assert relevances == sorted(relevances, reverse=True)
        assert all(abs(f["distance"] - (1 - f["relevance"])) < 1e-6 for f in found)


def test_filters_apply_before_ranking_and_the_threshold_cuts(
    client: FlaskClient, tenant: Tenant, orders_kb: str
) -> None:
    found = search(client, tenant, orders_kb, query="headphones", filters={"category": "kitchen"})
    assert {f["id"] for f in found} == {"2", "5"}  # the best match overall is filtered out
    assert search(client, tenant, orders_kb, query="headphones", relevance_threshold=0.99) == []
    some = search(client, tenant, orders_kb, query="headphones", relevance_threshold=0.2)
    assert [f["id"] for f in some][:1] == ["1"] and all(f["relevance"] >= 0.2 for f in some)


def test_writing_a_row_again_replaces_it_and_search_sees_the_change(
    client: FlaskClient, tenant: Tenant, orders_kb: str
) -> None:
    assert search(client, tenant, orders_kb, query="tea kettle", limit=1)[0]["id"] != "2"
    changed = {**PRODUCTS[1], "product": "Electric tea kettle", "description": "Boils water."}
    load(tenant, orders_kb, [changed])
    with session_scope() as session:
        kb = knowledge.get_kb(session, tenant.org_id, orders_kb)
        assert knowledge.chunk_count(session, kb) == len(PRODUCTS)  # no duplicate
    assert search(client, tenant, orders_kb, query="tea kettle", limit=1)[0]["id"] == "2"


def test_long_content_is_chunked_with_stable_ids(client: FlaskClient, tenant: Tenant) -> None:
    assert create(client, tenant, {"name": "docs", "id_column": "id"}).status_code == 201
    long = " ".join(f"Sentence number {i} about widgets." for i in range(200))
    row = {"id": "doc-1", "product": "Manual", "description": long}
    written = load(tenant, "docs", [row])
    assert written > 3
    with session_scope() as session:
        kb = knowledge.get_kb(session, tenant.org_id, "docs")
        ids = sorted(session.query(KbChunk.chunk_id).filter(KbChunk.kb_id == kb.id).all())
        assert [i[0] for i in ids] == sorted(f"doc-1:{n}" for n in range(written))
        assert all(len(c.content) <= 1000 for c in session.query(KbChunk).filter_by(kb_id=kb.id))
    assert load(tenant, "docs", [{**row, "description": "Short now."}]) == 1
    with session_scope() as session:
        kb = knowledge.get_kb(session, tenant.org_id, "docs")
        assert knowledge.chunk_count(session, kb) == 1  # the longer past left nothing behind


def test_create_get_list_delete_and_errors(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert create(client, tenant, {"name": "kb1"}).status_code == 201
    duplicate = create(client, tenant, {"name": "kb1"})
    assert duplicate.status_code == 409 and duplicate.json["error"]["code"] == "DUPLICATE_KB"
    for body in (
        {},
        {"name": "kb-1"},
        {"name": "kb2", "embedder": "word2vec"},
        {"name": "kb2", "id_column": "id; DROP TABLE x"},
        {"name": "kb2", "metadata_columns": ["a b"]},
    ):
        response = create(client, tenant, body)
        assert response.status_code == 400, (body, response.json)
        assert response.json["error"]["code"] == "INVALID_REQUEST"
    got = client.get("/knowledge_bases/kb1", headers=tenant.headers()).json["data"]
    assert got["name"] == "kb1" and got["chunks"] == 0 and got["embedder"] == "hashing"
    assert [
        k["name"] for k in client.get("/knowledge_bases", headers=tenant.headers()).json["data"]
    ] == ["kb1"]
    for method, path in (("get", "/knowledge_bases/kb1"), ("delete", "/knowledge_bases/kb1")):
        response = getattr(client, method)(path, headers=other_tenant.headers())
        assert response.status_code == 404 and response.json["error"]["code"] == "NOT_FOUND"
    hidden = client.post(
        "/knowledge_bases/kb1/search", headers=other_tenant.headers(), json={"query": "x"}
    )
    assert hidden.status_code == 404
    assert client.delete("/knowledge_bases/kb1", headers=tenant.headers()).status_code == 200
    assert client.get("/knowledge_bases/kb1", headers=tenant.headers()).status_code == 404


def test_the_hashing_embedder_is_deterministic_unit_length_and_lexical() -> None:
    vectors = hashing(["Wireless headphones", "wireless HEADPHONES", "espresso machine", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 1024)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[1])  # case is normalised
    assert float(vectors[0] @ vectors[2]) < 0.3
    assert not vectors[3].any()
    assert np.array_equal(hashing(["café"]), hashing(["cafe"]))  # accents folded
