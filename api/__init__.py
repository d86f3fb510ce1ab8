"""The HTTP API: a thin Flask app, one blueprint package per API family. Never imports
``worker``; work is handed over through ``shared`` services and the publisher."""

from api.app import create_app

__all__ = ["create_app"]
