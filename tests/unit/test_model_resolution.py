"""A trigger's model ids are resolved once, when its executions are planned: each item
carries its provider and vendor model, and the worker's request takes them from there."""

from __future__ import annotations

import uuid

from shared.ai_models import resolve_model
from shared.db import session_scope
from shared.mentionlab.runs import plan_ai_runs
from shared.models import Job
from worker.providers.base import AiRequest


def test_each_item_carries_its_model_resolved() -> None:
    job = Job(
        type="ai_queries",
        payload={
            "aiModels": ["gpt-5-mini", "claude-haiku-4-5", "retired-model"],
            "executionCount": 2,
            "queryIds": [str(uuid.uuid4())],
        },
    )
    with session_scope() as session:
        items = [planned.item for planned in plan_ai_runs(session, job)]
    assert len(items) == 6
    by_model = {item["model"]: item for item in items}
    assert (by_model["gpt-5-mini"]["provider"], by_model["gpt-5-mini"]["vendorModel"]) == (
        "openai",
        "gpt-5.4-mini-2026-03-17",
    )
    assert by_model["claude-haiku-4-5"]["vendorModel"] == "claude-haiku-4-5-20251001"
    # An id nobody knows any more is planned as before; the worker fails its executions.
    assert "provider" not in by_model["retired-model"]


def test_a_request_keeps_what_it_was_given_and_resolves_only_what_it_was_not() -> None:
    common = {"query": "q", "language": "en", "country": "US", "seed": "s"}
    planned = AiRequest(
        model="gpt-5-mini", provider="openai", vendor_model="gpt-5-mini-2025-08-07", **common
    )
    assert planned.vendor_model == "gpt-5-mini-2025-08-07"  # as planned, not looked up
    unplanned = AiRequest(model="gpt-5-mini", **common)
    resolved = resolve_model("gpt-5-mini")
    assert (unplanned.provider, unplanned.vendor_model) == (
        resolved.provider,
        resolved.vendor_model,
    )
