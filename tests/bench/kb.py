"""(k) knowledge-base sync: a sync job's first run over a 100,000-row PostgreSQL table into
a knowledge base with the built-in embedder, run by the Procfile's processes (the
dispatcher and one execution worker per core); then search latency over those 100,000
chunks.

Figures: rows/s from the run's start to its end; where a batch's time goes (the workers'
own timings: reading the source, chunking and embedding, writing the chunks; batches run
side by side, so these are shares, not rates); CPU seconds of the workers and of
PostgreSQL (their sum over the wall time says whether the cores bind); search p50/p99,
unfiltered and with a metadata filter.
"""

from __future__ import annotations

import random
import time
from typing import Any

import psycopg

from shared.db import session_scope
from shared.kb import knowledge
from tests.bench.infra import CpuMeter, libpq_url
from tests.bench.scenarios import BenchContext, running, wait_terminal
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
SOURCE_TABLE = "bench_orders"


def fill_source(database_url: str, rows: int) -> None:
    """The source table, written with COPY (its rows one second apart)."""
    rng = random.Random(7)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {SOURCE_TABLE}")
        conn.execute(
            f"CREATE TABLE {SOURCE_TABLE} (id integer PRIMARY KEY, product text, "
            "description text, category text, created_at timestamp NOT NULL)"
        )
        conn.execute(f"CREATE INDEX ON {SOURCE_TABLE} (created_at, id)")
        with conn.cursor().copy(
            f"COPY {SOURCE_TABLE} (id, product, description, category, created_at) FROM STDIN"
        ) as copy:
            for i in range(rows):
                copy.write_row(
                    (
                        i,
                        " ".join(rng.sample(WORDS, 2)),
                        " ".join(rng.choice(WORDS) for _ in range(14)),
                        rng.choice(("audio", "kitchen", "sport", "office")),
                        _at(i),
                    )
                )
        conn.execute(f"ANALYZE {SOURCE_TABLE}")


def _at(i: int) -> str:
    days, rest = divmod(i, 86_400)
    return f"2026-01-{1 + days:02d} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def run_kb(ctx: BenchContext, rows: int = 100_000, queries: int = 200) -> dict[str, Any]:
    from api import create_app  # the API after the environment is set

    client = create_app().test_client()
    ctx.flush_broker()
    fill_source(ctx.database_url, rows)
    tenant = make_tenant(n_queries=0, name="BenchKb")
    headers = tenant.headers()
    source_url = ctx.database_url.replace("postgresql+psycopg://", "postgresql://")
    answers = [
        client.post("/databases", headers=headers, json={"name": "shop", "url": source_url}),
        client.post(
            "/knowledge_bases",
            headers=headers,
            json={"name": "bench_kb", "metadata_columns": ["category"]},
        ),
        client.post(
            "/jobs/create",
            headers=headers,
            json={
                "job_name": "bench_sync",
                "source_table": f"shop.{SOURCE_TABLE}",
                "kb_name": "bench_kb",
                "content_columns": ["product", "description"],
                "filter_column": "created_at",
                "interval": "1 DAY",
                "start_time": "2030-01-01T00:00:00",
                "end_time": "2030-01-02T00:00:00",
            },
        ),
    ]
    for answer in answers:
        assert answer.status_code == 201, answer.json
    processes = ctx.cores
    entries = [("k-dispatcher", 0, "dispatcher")] + [
        (f"k-worker-{i}", 0, "worker") for i in range(processes)
    ]
    conn = psycopg.connect(libpq_url(ctx.database_url), autocommit=True)
    with running(ctx, *entries) as (dispatcher, *workers):
        cpu = CpuMeter([w.proc.pid for w in workers], {"dispatcher": dispatcher.proc.pid})
        cpu.begin()
        started = time.perf_counter()
        answer = client.post("/jobs/bench_sync/run", headers=headers)
        assert answer.status_code == 202, answer.json
        job_id = answer.json["data"]["run_job_id"]
        done = wait_terminal(conn, job_id, timeout=600)
        cpu_seconds = cpu.end()
    elapsed = done - started
    stages = conn.execute(
        """
        SELECT count(*), sum((result->>'rows_read')::int),
               sum((result->'timings_ms'->>'read')::float),
               sum((result->'timings_ms'->>'embed')::float),
               sum((result->'timings_ms'->>'write')::float),
               (SELECT status FROM jobs WHERE id = %s),
               (SELECT rows_written FROM sync_runs WHERE job_id = %s)
        FROM executions WHERE job_id = %s AND status = 'success'
        """,
        (job_id, job_id, job_id),
    ).fetchone()
    conn.close()
    assert stages is not None
    batches, rows_read, read_ms, embed_ms, write_ms, status, rows_written = stages
    assert status == "completed" and rows_written == rows, (status, rows_written)
    busy_ms = (read_ms or 0) + (embed_ms or 0) + (write_ms or 0)
    figures: dict[str, Any] = {
        "rows": rows,
        "batches": batches,
        "worker_processes": processes,
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed, 1),
        "batch_time_share": {
            "read": round(read_ms / busy_ms, 3),
            "embed": round(embed_ms / busy_ms, 3),
            "write": round(write_ms / busy_ms, 3),
        },
        "cpu_seconds": cpu_seconds,
        "cpu_ms_per_1000_rows": {
            k: round(1000 * cpu_seconds[k] / (rows / 1000), 1)
            for k in ("worker", "postgres", "dispatcher")
        },
    }
    figures.update(search_latency(tenant.org_id, queries))
    assert rows_read == rows
    return figures


def search_latency(organisation_id: Any, queries: int) -> dict[str, Any]:
    rng = random.Random(11)
    latencies, filtered = [], []
    with session_scope() as session:
        kb = knowledge.get_kb(session, organisation_id, "bench_kb")
        chunks = knowledge.chunk_count(session, kb)
        knowledge.search(session, kb, "warm up", limit=10, relevance_threshold=None, filters={})
        for _ in range(queries):
            query = " ".join(rng.sample(WORDS, 3))
            t = time.perf_counter()
            knowledge.search(session, kb, query, limit=10, relevance_threshold=None, filters={})
            latencies.append(time.perf_counter() - t)
        for _ in range(100):
            t = time.perf_counter()
            knowledge.search(
                session,
                kb,
                " ".join(rng.sample(WORDS, 2)),
                limit=10,
                relevance_threshold=None,
                filters={"category": "audio"},
            )
            filtered.append(time.perf_counter() - t)
    latencies.sort()
    filtered.sort()
    return {
        "search_chunks": chunks,
        "search_p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "search_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2),
        "filtered_search_p50_ms": round(1000 * filtered[len(filtered) // 2], 2),
        "filtered_search_p99_ms": round(1000 * filtered[int(len(filtered) * 0.99) - 1], 2),
    }
