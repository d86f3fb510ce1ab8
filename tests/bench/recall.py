"""recall@5 of the knowledge-base embedders on a small labelled set (tests/data/kb_recall.json:
30 products of an orders table, 20 shoppers' queries with the products they would accept).

``python -m tests.bench.recall`` measures every embedder available here that runs on this
machine — ``hashing``, and ``minilm`` when its extra is installed — in a throwaway SQLite
database. ``openai`` is measured only when JOBYARD_EMBEDDINGS_API_KEY is set (and then
against JOBYARD_EMBEDDINGS_BASE_URL, else OpenAI's): by default nothing leaves the machine.

The rows go through the real path (``knowledge.create_kb``, ``upsert_rows``, ``search``);
recall@k of a query is the share of its expected products among the top k, averaged over
the queries.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "kb_recall.json"


@dataclass(frozen=True)
class Recall:
    """recall@k of one embedder, and the queries that missed some expected product."""

    embedder: str
    k: int
    value: float
    misses: list[str]
    seconds: float


def labelled_set(path: Path = DATA) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def recall_at_k(
    embedder_name: str, organisation_id: uuid.UUID, k: int = 5, path: Path = DATA
) -> Recall:
    """Write the set's rows into a fresh KB using ``embedder_name``, search each query,
    and score the top ``k``. The KB is deleted afterwards."""
    from shared.db import session_scope
    from shared.kb import knowledge

    data = labelled_set(path)
    started = time.perf_counter()
    name = f"recall_{uuid.uuid4().hex[:12]}"
    with session_scope() as session:
        kb = knowledge.create_kb(
            session,
            organisation_id,
            name=name,
            embedder_name=embedder_name,
            id_column="id",
            metadata_columns=["category"],
        )
        knowledge.upsert_rows(session, kb, data["rows"], data["content_columns"])
    scores, misses = [], []
    with session_scope() as session:
        kb = knowledge.get_kb(session, organisation_id, name)
        for labelled in data["queries"]:
            found = knowledge.search(
                session, kb, labelled["query"], limit=k, relevance_threshold=None, filters={}
            )
            expected = {str(i) for i in labelled["expected"]}
            score = len(expected & {f["id"] for f in found}) / len(expected)
            scores.append(score)
            if score < 1:
                misses.append(labelled["query"])
        session.delete(kb)
    return Recall(
        embedder_name, k, sum(scores) / len(scores), misses, time.perf_counter() - started
    )


def main() -> int:
    # A throwaway database, so the bench needs no server and touches no real data. The
    # environment is set before jobyard reads its settings.
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'recall.db'}"
        os.environ["DATABASE_URL"] = url
        from shared.accounts import organisations as tenancy
        from shared.db import dispose_engine, session_scope
        from shared.kb.embedders import EMBEDDERS
        from shared.migrate import upgrade_database
        from shared.settings import reset_settings_cache

        reset_settings_cache()
        upgrade_database(url)
        with session_scope() as session:
            organisation_id = tenancy.create_organisation(session, "Recall bench").id

        data = labelled_set()
        print(
            f"recall@5 over {len(data['rows'])} rows and {len(data['queries'])} queries "
            f"({DATA.relative_to(Path.cwd()) if DATA.is_relative_to(Path.cwd()) else DATA})"
        )
        for name, spec in EMBEDDERS.items():
            lacking = spec.missing()
            if name == "openai" and not os.environ.get("JOBYARD_EMBEDDINGS_API_KEY"):
                # Never the OPENAI_API_KEY fallback: measuring a paid endpoint is asked for.
                lacking = "set JOBYARD_EMBEDDINGS_API_KEY to measure an endpoint"
            if lacking is not None:
                print(f"  {name:<8} skipped: {lacking}")
                continue
            result = recall_at_k(name, organisation_id)
            print(f"  {name:<8} {result.value:.3f}   ({result.seconds:.1f} s)")
            for query in result.misses:
                print(f"           missed: {query}")
        dispose_engine(close=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
