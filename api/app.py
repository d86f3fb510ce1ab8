"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request

from api import docs_home, errors, families, health, ui
from api.metrics import init_metrics
from api.operations import init_operation_checks
from api.rate_limits import init_rate_limits
from api.request_body import init_request_body
from api.request_limits import init_request_limits
from api.request_log import init_request_log
from api.routing import FamilyRoutedFlask
from api.transaction import init_request_transactions
from shared import sqlite, tracing
from shared.engine import job_types
from shared.logs import configure_logging
from shared.settings import get_settings


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment (``FLASK_*``), then test overrides;
    then every API family found under ``api/`` (see :mod:`api.families`); where families
    share a path, the credential routes the request (:mod:`api.routing`). Every installed
    job type is loaded first (:mod:`shared.engine.job_types`): a broken one stops the start."""
    job_types.discover()
    settings = get_settings()
    app = FamilyRoutedFlask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        **ui.CONFIG,  # the dashboard's session cookie and CSRF tokens
    )
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    configure_logging(settings.log_format, settings.log_level)
    tracing.setup("api")  # when OTEL_EXPORTER_OTLP_ENDPOINT is set; before the first query
    init_request_log(app)  # first: every request's context starts empty
    init_request_transactions(app)
    init_read_only_requests(app)
    init_metrics(app)  # first: it times the requests the limits refuse too
    # Before the rate limit: a body the server already refused (too slow, too large) is
    # answered as such; its answer closes the connection.
    init_request_body(app)
    init_rate_limits(app)
    init_request_limits(app)  # after the rate limit: a client over it is not parsed
    init_operation_checks(app)  # what the spec declares: query parameters, a JSON body
    app.register_blueprint(health.blp)
    found = families.discover()
    for family in found:
        families.register(app, family, found)
    docs_home.register(app)  # /docs and /openapi.json: the docs of the port's family
    ui.init_ui(app)  # the jobs dashboard at /ui/ (not a family: pages, a session cookie)
    errors.register_error_handlers(app)
    tracing.instrument_flask(app)
    return app


def init_read_only_requests(app: Flask) -> None:
    """``GET`` and ``HEAD`` only read: on SQLite their transactions are snapshots that
    neither wait for the writers nor hold them up (:mod:`shared.sqlite`)."""

    def start() -> None:
        if request.method in ("GET", "HEAD"):
            g.read_only = sqlite.read_only_from_here()

    def end(_exc: BaseException | None) -> None:
        token = g.pop("read_only", None)
        if token is not None:
            sqlite.end_read_only(token)

    app.before_request(start)
    app.teardown_request(end)
