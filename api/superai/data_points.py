"""``/v1/jobs/{id}``: one data point, where the official super.AI client reads it.

The client (``superai`` on PyPI) fetches, reads the response of, cancels and reviews a
data point by its uuid alone, under ``/v1/jobs/``, which is also Valpay's path. The
credential tells them apart (:mod:`api.routing`): with ``API-KEY`` (or ``x-api-key``)
these routes answer, in super.AI's envelope, as ``/v1/apps/{appId}/jobs/{id}/...`` does
for any of the caller's apps; a bearer token is Valpay's.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

import api.superai.schemas as schemas
from api.auth import authenticate_request, current_principal
from api.params import path_uuid
from api.transaction import request_session, request_work
from shared.batches import service
from shared.batches.service import DataPoint

blp = Blueprint(
    "superai-data-points",
    __name__,
    url_prefix="/v1/jobs",
    description="Data points by uuid (super.AI's client): with API-KEY or x-api-key; "
    "a bearer token on these paths is Valpay's jobs API",
)

# These paths are Valpay's with a bearer token: only the API key headers reach them.
API_KEY_ONLY: list[dict[str, list[str]]] = [{"ApiKeyHeader": []}, {"XApiKey": []}]


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


@blp.route("/<job_id>")
class DataPointById(MethodView):
    @blp.doc(security=API_KEY_ONLY)
    @blp.response(200, schemas.DataPointSchema)
    def get(self, job_id: str) -> DataPoint:
        """Get one data point (the client's fetch_job)"""
        session = request_session()
        return service.get_data_point(session, current_principal(), None, path_uuid(job_id, "Job"))


@blp.route("/<job_id>/response")
class DataPointResponse(MethodView):
    @blp.doc(security=API_KEY_ONLY)
    @blp.response(200, schemas.DataPointResponseSchema)
    def get(self, job_id: str) -> DataPoint:
        """Get a data point's response (the client's get_job_response)"""
        session = request_session()
        return service.get_data_point(session, current_principal(), None, path_uuid(job_id, "Job"))


@blp.route("/<job_id>/cancel")
class CancelDataPoint(MethodView):
    @blp.doc(security=API_KEY_ONLY)
    @blp.response(200, schemas.DataPointSchema)
    @blp.alt_response(409, description="The data point has already finished")
    def post(self, job_id: str) -> DataPoint:
        """Cancel a data point that has not finished (the client's cancel_job)"""
        return service.cancel_data_point(
            request_work(), current_principal(), None, path_uuid(job_id, "Job")
        )


@blp.route("/<job_id>/queue")
class QueueDataPoint(MethodView):
    @blp.doc(security=API_KEY_ONLY)
    @blp.response(200, schemas.DataPointSchema)
    @blp.alt_response(409, description="The data point is not parked")
    def post(self, job_id: str) -> DataPoint:
        """Queue a parked (PENDING) data point"""
        return service.queue_data_point(
            request_work(), current_principal(), None, path_uuid(job_id, "Job")
        )


@blp.route("/<job_id>/review")
class ReviewDataPoint(MethodView):
    @blp.doc(security=API_KEY_ONLY)
    @blp.arguments(schemas.ReviewSchema)
    @blp.response(200, schemas.DataPointResponseSchema)
    @blp.alt_response(409, description="The data point has not finished")
    def patch(self, body: dict[str, Any], job_id: str) -> DataPoint:
        """Review a finished data point: is its response correct, what should it have
        been (the client's review_job)"""
        return service.review_data_point(
            request_session(), current_principal(), None, path_uuid(job_id, "Job"), **body
        )
