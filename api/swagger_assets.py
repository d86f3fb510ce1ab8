"""Swagger UI's assets (JavaScript, CSS), served by the API itself from the
``swagger-ui-bundle`` package: every family's ``/docs`` page works offline, behind a
firewall and without a third-party CDN seeing who reads the docs."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, Flask, Response, send_from_directory

URL = "/_swagger-ui/"  # every family's OPENAPI_SWAGGER_UI_URL
ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
# Only what Swagger UI's page loads (no index.html: the families render their own page).
FILES = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "favicon-16x16.png",
        "favicon-32x32.png",
        "oauth2-redirect.html",
    }
)

blp = Blueprint("swagger-ui-assets", __name__, url_prefix=URL.rstrip("/"))


@blp.get("/<filename>")
def asset(filename: str) -> Response:
    if filename not in FILES:
        return Response("Not found\n", status=404, mimetype="text/plain")
    return send_from_directory(ASSETS, filename, max_age=86_400)


def serve(app: Flask) -> None:
    """Register the assets' route once per app."""
    if blp.name not in app.blueprints:
        app.register_blueprint(blp)
