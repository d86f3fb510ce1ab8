"""``/v1/apps/{appId}``: batches of inputs, their data points, and the app's processor."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

import api.superai.schemas as schemas
from api.auth import authenticate_request, current_principal
from api.idempotency import create_endpoint
from api.params import path_uuid
from api.superai.callbacks import callbacks_doc
from api.superai.envelope import error_envelope
from api.transaction import request_session, request_work
from shared.batches import service
from shared.batches.processor import Processor
from shared.batches.service import DataPoint, DataPointState
from shared.paging import Page
from shared.webhooks.messages import MessageLogPage

blp = Blueprint("superai-apps", __name__, url_prefix="/v1/apps", description="Batches (super.AI)")


@blp.before_request
def authenticate_first() -> None:
    authenticate_request()


def page_envelope(page: Page, key: str, size: int) -> dict[str, Any]:
    return {
        key: page.items,
        "page": page.page - 1,
        "size": size,
        "pages": -(-page.total // size),
        "total": page.total,
    }


def log_page(page: MessageLogPage, limit: int) -> tuple[list[Any], dict[str, str]]:
    """A page of a delivery log as answered: the body stays the list it always was (a
    client that reads it still does), and the next page is a ``Link`` header (RFC 8288)."""
    headers = {}
    if page.next_cursor is not None:
        query = urlencode({"limit": limit, "cursor": page.next_cursor})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return page.items, headers


@blp.route("/<app_id>/jobs")
class Jobs(MethodView):
    @create_endpoint(error_envelope, creates_jobs=True)
    @blp.arguments(schemas.CreateJobsSchema)
    @blp.doc(requestBody=schemas.create_jobs_body(), callbacks=callbacks_doc())
    @blp.response(200, schemas.CreatedSchema)
    @blp.alt_response(400, description="No inputs, both kinds of inputs, or a bad field")
    @blp.alt_response(413, description="The request is larger than 4 MB")
    def post(self, body: dict[str, Any], app_id: str) -> dict[str, Any]:
        """Create jobs: one data point per input, processed asynchronously"""
        batch, single = service.create_batch(
            request_work(),
            current_principal(),
            path_uuid(app_id, "App"),
            inputs=body.get("inputs"),
            inputs_file_url=body.get("inputsFileUrl"),
            callback_url=body.get("callbackUrl"),
            metadata=body["metadata"],
            tags=body["tags"],
            parked=body["pending"],
        )
        answer: dict[str, Any] = {"message": "Jobs accepted", "batchId": batch.id}
        if single is not None:
            answer["uuid"] = single
        return answer

    @blp.arguments(schemas.ListJobsArgs, location="query")
    @blp.response(200, schemas.page_schema(schemas.DataPointSchema, "jobs"))
    def get(self, args: dict[str, Any], app_id: str) -> dict[str, Any]:
        """List the app's data points"""
        session = request_session()
        page = service.list_data_points(
            session,
            current_principal(),
            path_uuid(app_id, "App"),
            page=args["page"],
            size=args["size"],
            sort_by=args["sortBy"],
            descending=args["orderBy"] == "desc",
            created_from=args.get("createdStartDate"),
            created_to=args.get("createdEndDate"),
            completed_from=args.get("completedStartDate"),
            completed_to=args.get("completedEndDate"),
            states=[DataPointState(s) for s in args.get("statusIn") or []],
        )
        return page_envelope(page, "jobs", args["size"])


@blp.route("/<app_id>/jobs/<job_id>")
class JobById(MethodView):
    @blp.response(200, schemas.DataPointSchema)
    def get(self, app_id: str, job_id: str) -> DataPoint:
        """Get one data point"""
        session = request_session()
        return service.get_data_point(
            session, current_principal(), path_uuid(app_id, "App"), path_uuid(job_id, "Job")
        )


@blp.route("/<app_id>/jobs/<job_id>/response")
class JobResponse(MethodView):
    @blp.response(200, schemas.DataPointResponseSchema)
    def get(self, app_id: str, job_id: str) -> DataPoint:
        """Get a data point's response (the processor's output)"""
        session = request_session()
        return service.get_data_point(
            session, current_principal(), path_uuid(app_id, "App"), path_uuid(job_id, "Job")
        )


@blp.route("/<app_id>/jobs/<job_id>/cancel")
class CancelJob(MethodView):
    @blp.response(200, schemas.DataPointSchema)
    @blp.alt_response(409, description="The data point has already finished")
    def post(self, app_id: str, job_id: str) -> DataPoint:
        """Cancel a data point that has not finished"""
        return service.cancel_data_point(
            request_work(), current_principal(), path_uuid(app_id, "App"), path_uuid(job_id, "Job")
        )


@blp.route("/<app_id>/jobs/<job_id>/queue")
class QueueJob(MethodView):
    @blp.response(200, schemas.DataPointSchema)
    @blp.alt_response(409, description="The data point is not parked")
    def post(self, app_id: str, job_id: str) -> DataPoint:
        """Queue a parked (PENDING) data point"""
        return service.queue_data_point(
            request_work(), current_principal(), path_uuid(app_id, "App"), path_uuid(job_id, "Job")
        )


@blp.route("/<app_id>/jobs/<job_id>/retry")
class RetryJob(MethodView):
    @create_endpoint(error_envelope, creates_jobs=True)
    @blp.response(200, schemas.DataPointSchema)
    @blp.alt_response(
        409,
        description="The data point did not fail, or its batch has not finished (or runs "
        "again after a retry) or was canceled",
    )
    def post(self, app_id: str, job_id: str) -> DataPoint:
        """Run a failed data point of a finished batch again (jobyard's own: not in
        super.AI's API)

        It goes back to pending (SCHEDULED) with a fresh attempt budget; its
        callback comes again when it ends, and the batch's when the batch ends again.
        """
        return service.retry_data_point(
            request_work(), current_principal(), path_uuid(app_id, "App"), path_uuid(job_id, "Job")
        )


@blp.route("/<app_id>/jobs/<job_id>/review")
class ReviewJob(MethodView):
    @blp.arguments(schemas.ReviewSchema)
    @blp.response(200, schemas.DataPointResponseSchema)
    @blp.alt_response(409, description="The data point has not finished")
    def patch(self, body: dict[str, Any], app_id: str, job_id: str) -> DataPoint:
        """Review a finished data point: is its response correct, what should it have been"""
        return service.review_data_point(
            request_session(),
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(job_id, "Job"),
            **body,
        )


@blp.route("/<app_id>/batches")
class Batches(MethodView):
    @blp.arguments(schemas.PageArgs, location="query")
    @blp.response(200, schemas.page_schema(schemas.BatchSchema, "batches"))
    def get(self, args: dict[str, Any], app_id: str) -> dict[str, Any]:
        """List the app's batches, newest first"""
        session = request_session()
        page = service.list_batches(
            session,
            current_principal(),
            path_uuid(app_id, "App"),
            page=args["page"],
            size=args["size"],
        )
        return page_envelope(page, "batches", args["size"])


@blp.route("/<app_id>/batches/<batch_id>")
class BatchById(MethodView):
    @blp.response(200, schemas.BatchSchema)
    def get(self, app_id: str, batch_id: str) -> Any:
        """Get a batch: its state and counters"""
        session = request_session()
        return service.get_batch(
            session,
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(batch_id, "Batch"),
        )


@blp.route("/<app_id>/batches/<batch_id>/retry")
class RetryBatch(MethodView):
    @create_endpoint(error_envelope, creates_jobs=True)
    @blp.arguments(schemas.RetryBatchSchema, required=False)
    @blp.response(200, schemas.BatchSchema)
    @blp.alt_response(404, description="No such batch, or a named data point is not the batch's")
    @blp.alt_response(
        409,
        description="The batch has not finished (or runs again after a retry), was canceled, "
        "or has nothing failed to retry (a named data point did not fail)",
    )
    def post(self, body: dict[str, Any], app_id: str, batch_id: str) -> Any:
        """Run a finished batch's failed data points again (jobyard's own: not in super.AI's
        API)

        Every failed data point (or only `jobIds`) goes back to pending with a fresh
        attempt budget; the batch is in progress again, and each data point's callback
        and the batch's come again as they end. A canceled batch is not retried. Counts
        against the organisation's quotas like new work.
        """
        return service.retry_batch(
            request_work(),
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(batch_id, "Batch"),
            (body or {}).get("jobIds"),
        )


@blp.route("/<app_id>/processor")
class AppProcessor(MethodView):
    @blp.response(200, schemas.ProcessorAnswer)
    def get(self, app_id: str) -> dict[str, Any]:
        """How the app processes each input (jobyard's own: not in super.AI's API)"""
        session = request_session()
        app = service.get_app(session, current_principal(), path_uuid(app_id, "App"))
        return Processor.from_json(app.processor).as_json()

    @blp.arguments(schemas.ProcessorSchema)
    @blp.response(200, schemas.ProcessorAnswer)
    def put(self, body: dict[str, Any], app_id: str) -> dict[str, Any]:
        """Set how the app processes each input: a prompt template and a model"""
        processor = Processor(body["promptTemplate"], body["model"], body["webSearch"])
        return service.set_processor(
            request_session(), current_principal(), path_uuid(app_id, "App"), processor
        ).as_json()


@blp.route("/<app_id>/batches/<batch_id>/deliveries")
class BatchDeliveries(MethodView):
    @blp.arguments(schemas.DeliveriesArgs, location="query", unknown=RAISE)
    @blp.response(200, schemas.DeliverySchema(many=True), headers=schemas.NEXT_PAGE_HEADERS)
    @blp.alt_response(400, description="An unknown parameter, a bad limit or cursor")
    def get(self, args: dict[str, Any], app_id: str, batch_id: str) -> Any:
        """A page of the batch's callbacks (its own and its data points'), oldest first"""
        session = request_session()
        page = service.deliveries_of_batch(
            session,
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(batch_id, "Batch"),
            cursor=args.get("cursor"),
            limit=args["limit"],
        )
        return log_page(page, args["limit"])


@blp.route("/<app_id>/batches/<batch_id>/deliveries/resend")
class ResendFailed(MethodView):
    @create_endpoint(error_envelope)
    @blp.arguments(schemas.ResendFailedSchema)
    @blp.response(200, schemas.ResentSchema)
    def post(self, body: dict[str, Any], app_id: str, batch_id: str) -> dict[str, int]:
        """Resend every failed callback of the batch since a time"""
        resent = service.resend_failed(
            request_session(),
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(batch_id, "Batch"),
            body["since"],
        )
        return {"resent": resent}


@blp.route("/<app_id>/jobs/<job_id>/deliveries")
class DataPointDeliveries(MethodView):
    @blp.arguments(schemas.DeliveriesArgs, location="query", unknown=RAISE)
    @blp.response(200, schemas.DeliverySchema(many=True), headers=schemas.NEXT_PAGE_HEADERS)
    @blp.alt_response(400, description="An unknown parameter, a bad limit or cursor")
    def get(self, args: dict[str, Any], app_id: str, job_id: str) -> Any:
        """A page of a data point's callbacks, oldest first, with every attempt"""
        session = request_session()
        page = service.deliveries_of_data_point(
            session,
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(job_id, "Job"),
            cursor=args.get("cursor"),
            limit=args["limit"],
        )
        return log_page(page, args["limit"])


@blp.route("/<app_id>/deliveries/<delivery_id>")
class DeliveryById(MethodView):
    @blp.response(200, schemas.DeliverySchema)
    def get(self, app_id: str, delivery_id: str) -> Any:
        """One callback with every attempt"""
        session = request_session()
        return service.get_delivery(
            session,
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(delivery_id, "Delivery"),
        )


@blp.route("/<app_id>/deliveries/<delivery_id>/resend")
class ResendDelivery(MethodView):
    @create_endpoint(error_envelope)
    @blp.response(202, schemas.ResentSchema)
    def post(self, app_id: str, delivery_id: str) -> dict[str, int]:
        """Send a callback again, now"""
        service.resend_delivery(
            request_session(),
            current_principal(),
            path_uuid(app_id, "App"),
            path_uuid(delivery_id, "Delivery"),
        )
        return {"resent": 1}
