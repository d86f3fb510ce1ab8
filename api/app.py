"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask

import shared.domains  # noqa: F401 - every job type and outbox consumer, registered
from api import errors, families, health
from api.metrics import init_metrics
from api.operations import init_operation_checks
from api.rate_limits import init_rate_limits
from api.request_body import init_request_body
from api.request_limits import init_request_limits
from api.request_log import init_request_log
from shared.logs import configure_logging
from shared.settings import get_settings


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment (``FLASK_*``), then test overrides;
    then every API family found under ``api/`` (see :mod:`api.families`)."""
    settings = get_settings()
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
    )
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    configure_logging(settings.log_format, settings.log_level)
    init_request_log(app)  # first: every request's context starts empty
    init_metrics(app)  # first: it times the requests the limits refuse too
    # Before the rate limit: a body the server already refused (too slow, too large) is
    # answered as such; its answer closes the connection.
    init_request_body(app)
    init_rate_limits(app)
    init_request_limits(app)  # after the rate limit: a client over it is not parsed
    init_operation_checks(app)  # what the spec declares: query parameters, a JSON body
    app.register_blueprint(health.blp)
    for family in families.discover():
        families.register(app, family)
    errors.register_error_handlers(app)
    return app
