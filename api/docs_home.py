"""``/docs`` and ``/openapi.json`` at the root: the docs of the family a port is for.

Each family's spec and Swagger UI live under its own prefix (``/api/docs``,
``/v1/apps/docs``, ``/v1/jobs/docs``, ``/smartdb/docs``) and link to one another. The root
pair is the docs a client of that address expects: Smart DB's on ``SMARTDB_PORT`` (the
address its seed's examples call, http://127.0.0.1:8000 under ``make up``), Mentionlab's
everywhere else (where they have always been). The port is the listener the connection
reached (gunicorn's ``SERVER_PORT`` for a TCP listener), not the ``Host`` header.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request

from shared.settings import get_settings

DEFAULT_FAMILY = "mentionlab"
SMARTDB_PORT_FAMILY = "smartdb"
# root path -> the endpoint of flask-smorest's docs blueprint that answers it
ROOT_PAGES = {"/openapi.json": "openapi_json", "/docs": "openapi_swagger_ui"}


def family_for_port() -> str:
    """The family whose docs this request's port serves at the root."""
    port = get_settings().smartdb_port
    if port is not None and request.environ.get("SERVER_PORT") == str(port):
        return SMARTDB_PORT_FAMILY
    return DEFAULT_FAMILY


def _root_page() -> Any:
    assert request.url_rule is not None
    endpoint = ROOT_PAGES[request.url_rule.rule]
    # flask-smorest's docs blueprint of a family is "<config prefix>api-docs".
    view = current_app.view_functions[f"{family_for_port()}-api-docs.{endpoint}"]
    return view()


def register(app: Flask) -> None:
    """Serve the root pages (after every family's Api is registered)."""
    for path, endpoint in ROOT_PAGES.items():
        app.add_url_rule(path, endpoint=f"docs-home-{endpoint}", view_func=_root_page)
