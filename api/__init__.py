"""The HTTP API: a thin Flask app, one blueprint package per API family. Never imports
``worker``; work is handed over through ``shared`` services and the publisher.

Importing ``api`` imports nothing more: gunicorn's master imports
``api.gunicorn_worker`` before it forks its gevent workers, which patch the standard
library only then (see that module), so the app is imported on first use of
``create_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from api.app import create_app

        return create_app
    raise AttributeError(f"module 'api' has no attribute {name!r}")
