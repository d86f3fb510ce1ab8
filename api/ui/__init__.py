"""The jobs dashboard at ``/ui/``: server-rendered pages (Jinja2, a little plain JS) for
an organisation's people to see and steer their jobs.

It is not an API family: no OpenAPI spec, HTML answers (errors too: :func:`error_page`),
and none of the families' credentials. Its visitor logs in once with an organisation's
API key or a user's token (:mod:`api.ui.login`); the session is Flask's signed cookie,
HttpOnly and SameSite=Lax, Secure when ``FLASK_SESSION_COOKIE_SECURE`` is set, sent to
``/ui`` paths only. What the cookie names (the API key, or the user and organisation) is
checked again on every request, so a revoked key or a removed member is logged out at
once. Every form post carries Flask-WTF's CSRF token; one without it is a 400 and changes
nothing. Every read is the session organisation's: another organisation's job is the
same 404 page as a job that does not exist.

Its views answer in one unit of work, like a family's (:mod:`api.transaction`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, Response, redirect, render_template
from flask_wtf.csrf import CSRFProtect

from api.transaction import commits_per_answer

PREFIX = "/ui"
csrf = CSRFProtect()

# The app's defaults for the dashboard's session and forms (create_app applies them before
# the environment, ``FLASK_SESSION_COOKIE_SECURE=true`` say, and a test's overrides).
CONFIG: dict[str, Any] = {
    "SESSION_COOKIE_NAME": "jobyard_ui",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # Sent to the dashboard only: the API families never see (or take) the cookie.
    "SESSION_COOKIE_PATH": PREFIX,
    "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
    # The dashboard asks for the token where it posts; the families are never checked.
    "WTF_CSRF_CHECK_DEFAULT": False,
    # A token is good for the session it belongs to (a page left open for an hour works).
    "WTF_CSRF_TIME_LIMIT": None,
}


def is_ui_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_page(status: int, message: str) -> Response:
    """An error as a page of the dashboard (never a family's JSON envelope): what
    :mod:`api.errors` answers for every error on a ``/ui`` path."""
    body = render_template("error.html", status=status, message=message)
    return Response(body, status=status, mimetype="text/html")


def _root() -> Response:
    return redirect(f"{PREFIX}/", code=302)  # type: ignore[return-value]


def init_ui(app: Flask) -> None:
    """Register the dashboard: its blueprint, the CSRF protection (checked by the dashboard's own posts only: the API families take no
    cookie, so a cross-site request carries none of their credentials), ``/`` and
    ``/ui`` sending to ``/ui/``."""
    from api.ui import views

    csrf.init_app(app)
    app.register_blueprint(views.blp)
    for endpoint, view in list(app.view_functions.items()):
        if endpoint.startswith(f"{views.blp.name}."):
            app.view_functions[endpoint] = commits_per_answer(view)
    app.add_url_rule("/", "ui-root", _root, methods=["GET"])
    app.add_url_rule(PREFIX, "ui-prefix", _root, methods=["GET"])
