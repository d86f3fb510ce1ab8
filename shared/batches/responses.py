"""A data point's response: what ``GET /v1/apps/{appId}/jobs/{id}/response`` answers and
what its callback carries, made in one place so that the two are the same."""

from __future__ import annotations

from typing import Any

from shared.batches.service import data_point_state
from shared.models import Execution


def data_point_response(execution: Execution) -> dict[str, Any]:
    """The data point's state and the processor's output (``response``: null until it is
    done), the model that served it, its usage and cost, and a person's review, as JSON
    values."""
    result = execution.result or {}
    return {
        "id": str(execution.id),
        "uuid": str(execution.id),
        "status": data_point_state(execution).value,
        "response": result.get("output"),
        "model": result.get("servedModel"),
        "usage": result.get("usage"),
        "cost": float(execution.cost or 0.0),
        "simulated": bool(result.get("simulated")),
        "error": execution.error,
        "review": result.get("review"),  # PATCH .../review: what a person said of it
    }


def response_path(app_id: str, data_point_id: str) -> str:
    """Where a data point's response is read (the API's path)."""
    return f"/v1/apps/{app_id}/jobs/{data_point_id}/response"
