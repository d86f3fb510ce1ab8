"""(k) knowledge bases: writing 100,000 rows (embedding with the built-in embedder, then
the upsert), and search latency over the 100,000 chunks. In the benchmark's process: the
sync jobs that will read source tables are not built yet, so this measures their two
stages — embedding and writing — and search, apart."""

from __future__ import annotations

import random
import time
from typing import Any

from shared.db import session_scope
from shared.kb import knowledge
from shared.kb.embedders import hashing
from tests.support import make_tenant

WORDS = [
    "wireless",
    "headphones",
    "espresso",
    "machine",
    "running",
    "shoes",
    "speaker",
    "knife",
    "kettle",
    "laptop",
    "stand",
    "desk",
    "lamp",
    "backpack",
    "bottle",
    "jacket",
    "charger",
    "cable",
    "mouse",
    "keyboard",
    "monitor",
    "chair",
    "blender",
    "pan",
    "camera",
    "tripod",
    "watch",
    "strap",
    "notebook",
    "pen",
    "tent",
    "sleeping",
    "bag",
    "stove",
]


def _rows(n: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {
            "id": i,
            "product": " ".join(rng.sample(WORDS, 2)),
            "description": " ".join(rng.choice(WORDS) for _ in range(14)),
            "category": rng.choice(("audio", "kitchen", "sport", "office")),
        }
        for i in range(n)
    ]


def run_kb(rows: int = 100_000, batch: int = 2_000, queries: int = 200) -> dict[str, Any]:
    tenant = make_tenant(n_queries=0, name="BenchKb")
    data = _rows(rows)
    with session_scope() as session:
        kb = knowledge.create_kb(
            session,
            tenant.org_id,
            name="bench_kb",
            embedder_name="hashing",
            id_column="id",
            metadata_columns=["category"],
        )
        kb_id = kb.id
    embed_s = 0.0
    started = time.perf_counter()
    for offset in range(0, rows, batch):
        chunk = data[offset : offset + batch]
        t = time.perf_counter()
        hashing([f"{r['product']}\n{r['description']}" for r in chunk])  # embedding alone
        embed_s += time.perf_counter() - t
        with session_scope() as session:
            kb = session.get(knowledge.KnowledgeBase, kb_id)
            assert kb is not None
            knowledge.upsert_rows(session, kb, chunk, ["product", "description"])
    total_s = time.perf_counter() - started
    rng = random.Random(11)
    latencies = []
    with session_scope() as session:
        kb = session.get(knowledge.KnowledgeBase, kb_id)
        assert kb is not None
        knowledge.search(session, kb, "warm up", limit=10, relevance_threshold=None, filters={})
        for _ in range(queries):
            query = " ".join(rng.sample(WORDS, 3))
            t = time.perf_counter()
            knowledge.search(session, kb, query, limit=10, relevance_threshold=None, filters={})
            latencies.append(time.perf_counter() - t)
        filtered = []
        for _ in range(20):
            t = time.perf_counter()
            knowledge.search(
                session,
                kb,
                "headphones",
                limit=10,
                relevance_threshold=None,
                filters={"category": "audio"},
            )
            filtered.append(time.perf_counter() - t)
    latencies.sort()
    # The upsert re-embeds (it is the real path): the write alone is the rest.
    write_s = total_s - 2 * embed_s
    return {
        "rows": rows,
        "elapsed_s": round(total_s, 3),
        "rows_per_s": round(rows / total_s, 1),
        "embed_rows_per_s": round(rows / embed_s, 1),
        "write_rows_per_s": round(rows / max(write_s, 1e-9), 1),
        "search_chunks": rows,
        "search_p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "search_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2),
        "filtered_search_p50_ms": round(1000 * sorted(filtered)[10], 2),
    }
