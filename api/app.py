"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api

import shared.domains  # noqa: F401 - every job type and outbox consumer, registered
from api import errors, health
from api.mentionlab import register_mentionlab
from api.rate_limits import init_rate_limits
from shared.settings import get_settings

SECURITY_SCHEMES = {
    "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment (``FLASK_*``), then test overrides."""
    settings = get_settings()
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        API_TITLE="jobyard",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        API_SPEC_OPTIONS={
            "info": {
                "description": "jobyard: distributed jobs, compatible with the Mentionlab, "
                "super.AI, Valpay and Smart DB jobs APIs."
            },
            "components": {"securitySchemes": SECURITY_SCHEMES},
            "security": [{"ApiKeyAuth": []}, {"BearerAuth": []}],
        },
    )
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    init_rate_limits(app)
    api = Api(app)
    app.register_blueprint(health.blp)
    register_mentionlab(api)
    errors.register_error_handlers(app)
    return app
