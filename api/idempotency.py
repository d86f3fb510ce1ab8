"""``Idempotency-Key`` on every create endpoint, with Stripe's semantics.

A create endpoint is decorated once with its family's :func:`create_endpoint` decorator
(outermost, above flask-smorest's), which:

- without the header, runs the view as it is;
- with it, claims the key for the caller's organisation (:mod:`shared.idempotency`) in the
  request's unit of work (:mod:`api.transaction`), runs the view in that same unit of work,
  and stores its answer there when it is a success (status and body, with
  ``Content-Type`` and ``Location``): the job and its key's answer commit together, or
  neither does. An error answer rolls everything back, key included, since a refused
  create writes nothing;
  - answers a repeat of the same request (same method, path, query, JSON body and context
    headers) with the kept answer, marked ``Idempotent-Replayed: true``, and no second job;
  - answers the key used for a different request with 422;
  - answers 409 while the key's first request still runs (PostgreSQL). Like Stripe, rather
    than wait: waiting would hold a gunicorn worker and a database connection for as long
    as the first request takes, while the client, which is retrying anyway, retries again
    a moment later.
- documents the header and those answers in the operation's OpenAPI entry, in the family's
  error envelope; ``creates_jobs`` adds the quotas' 422 and 429 (:mod:`shared.engine.quotas`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from copy import deepcopy
from functools import wraps
from typing import Any

from flask import Response, current_app, request

from api.auth import authenticate_request
from api.families import Envelope
from api.transaction import request_session
from shared import failpoints, idempotency
from shared.errors import Conflict, InvalidInput, Unprocessable

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Headers that change what a create does, so part of "the same request".
CONTEXT_HEADERS = ("x-organisation-id", "x-project-id")
# Headers of the answer kept with it.
KEPT_HEADERS = ("Content-Type", "Location")
KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"  # the code of the 422, where a family shows codes

View = Callable[..., Any]


def fingerprint() -> str:
    """What makes two requests the same: method, path, query, body (as parsed JSON, so that
    spacing and key order do not matter) and the context headers."""
    raw = request.get_data(cache=True)
    try:
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")) if raw else ""
    except ValueError:
        body = raw.hex()
    parts = [
        request.method,
        request.path,
        request.query_string.decode("latin-1"),
        body,
        *(request.headers.get(h, "") for h in CONTEXT_HEADERS),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def request_key() -> str | None:
    """The request's idempotency key, checked; None without one."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH:  # as documented: any 1 to 255 characters
        message = f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters"
        raise InvalidInput(message, details=[message])
    return key


def run_once(view: View, *args: Any, **kwargs: Any) -> Response:
    """Run the view under the request's idempotency key (see the module docstring)."""
    key = request_key()
    if key is None:
        return current_app.make_response(view(*args, **kwargs))
    organisation_id = authenticate_request().organisation_id
    session = request_session()
    outcome = idempotency.claim(session, organisation_id, key, fingerprint())
    if isinstance(outcome, idempotency.Mismatch):
        raise Unprocessable(
            f"{HEADER} {key!r} was already used for a different request: "
            "use a new key for a new request",
            code=KEY_REUSED,
        )
    if isinstance(outcome, idempotency.InProgress):
        raise Conflict(
            f"A request with {HEADER} {key!r} is still in progress: retry it in a moment"
        )
    if isinstance(outcome, idempotency.Replay):
        replayed = Response(outcome.body, status=outcome.status_code, headers=outcome.headers)
        replayed.headers["Idempotent-Replayed"] = "true"
        return replayed
    response = current_app.make_response(view(*args, **kwargs))
    # Where a crash hurt when the view's work committed before its answer was stored.
    failpoints.reached("idempotency.before_store")
    if 200 <= response.status_code < 300:
        kept = {h: response.headers[h] for h in KEPT_HEADERS if h in response.headers}
        idempotency.store(session, outcome, response.status_code, response.get_data(), kept)
    return response


def _error_example(envelope: Envelope, status: int, message: str, code: str | None = None) -> Any:
    return envelope(status, message, [], code)


def merged(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Several documented answers of one status as one (OpenAPI has one per status): the
    descriptions joined, every example kept by name, the first schema."""
    if len(entries) == 1:
        return entries[0]
    examples: dict[str, Any] = {}
    for n, entry in enumerate(entries, 1):
        examples.update(entry.get("examples", {}))
        if "example" in entry:
            examples[f"example{n}"] = {"value": entry["example"]}
    answer: dict[str, Any] = {
        "description": "; or: ".join(e["description"] for e in entries if e.get("description")),
        "content_type": next((e["content_type"] for e in entries if e.get("content_type")), None),
    }
    schema = next((e["schema"] for e in entries if e.get("schema") is not None), None)
    if schema is not None:
        answer["schema"] = schema
    if examples:
        answer["examples"] = examples
    return answer


def create_endpoint(envelope: Envelope, *, creates_jobs: bool = False) -> Callable[[View], View]:
    """The decorator of a family's create endpoints (see the module docstring)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            return run_once(view, *args, **kwargs)

        apidoc = deepcopy(getattr(view, "_apidoc", {}))
        # Beside the parameters the view's schemas document (a manual_doc "parameters"
        # list would replace them: api.openapi.documented_parameters).
        documented = apidoc.setdefault("arguments", {}).setdefault("parameters", [])
        documented += [
            {
                "in": "header",
                "name": HEADER,
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
                "description": (
                    "Makes retrying this create safe (Stripe's semantics): the same key with "
                    "the same request answers the first answer again (Idempotent-Replayed: "
                    "true) and creates nothing; the key with a different request is 422; "
                    "while the first request runs, 409. Keys are kept 24 h per organisation; "
                    "only successful answers are kept."
                ),
            },
        ]
        responses = apidoc.setdefault("response", {}).setdefault("responses", {})

        def document(
            status: int, name: str, description: str, message: str, code: str | None = None
        ) -> None:
            example = _error_example(envelope, status, message, code)
            responses.setdefault(status, []).append(
                {
                    "description": description,
                    "examples": {name: {"value": example}},
                    "content_type": None,
                }
            )

        document(
            409,
            "idempotencyKeyInProgress",
            f"A request with this {HEADER} is still in progress",
            f"A request with {HEADER} 'k1' is still in progress: retry it in a moment",
        )
        document(
            422,
            "idempotencyKeyReused",
            f"The {HEADER} was already used for a different request",
            f"{HEADER} 'k1' was already used for a different request: "
            "use a new key for a new request",
            KEY_REUSED,
        )
        if creates_jobs:
            document(
                422,
                "perRequestCap",
                "The request would create more than one request may "
                "(JOBYARD_MAX_EXECUTIONS_PER_REQUEST, default 200,000 executions; "
                "JOBYARD_MAX_JOBS_PER_REQUEST, default 1,000 jobs)",
                "This request would create 250000 executions; at most 200000 may be "
                "created by one request (JOBYARD_MAX_EXECUTIONS_PER_REQUEST)",
            )
            document(
                429,
                "organisationCap",
                "The organisation has too much unfinished work: executions pending or "
                "retrying (JOBYARD_MAX_ACTIVE_EXECUTIONS_PER_ORGANISATION, default "
                "1,000,000) or jobs pending or processing "
                "(JOBYARD_MAX_ACTIVE_JOBS_PER_ORGANISATION, default 2,000), counting this "
                "request's; retry when jobs have finished. Also: the credential's rate "
                "limit (JOBYARD_API_RATE_LIMIT).",
                "Too many unfinished jobs: the organisation has 2000 jobs pending or "
                "processing and this request would add 1; at most 2000 may be unfinished "
                "at once (JOBYARD_MAX_ACTIVE_JOBS_PER_ORGANISATION). Retry when jobs have "
                "finished.",
                "LIMIT_EXCEEDED",
            )
        for status, entries in responses.items():
            responses[status] = [merged(entries)]
        wrapper._apidoc = apidoc  # type: ignore[attr-defined]
        return wrapper

    return decorate
