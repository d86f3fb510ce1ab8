"""API families: each compatible API is one package under ``api/`` that declares, in one
place (its ``FAMILY``), the paths it answers, its error envelope, the headers that carry
its API keys, its blueprints and where its OpenAPI spec lives.

The app factory discovers the families (every ``api`` subpackage with a ``FAMILY``), gives
each its own flask-smorest ``Api`` (``config_prefix``: one spec per family), and the error
handlers and authentication look a request's family up by its path. Adding a family adds a
package; no central list changes.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, request
from flask_smorest import Api, Blueprint
from marshmallow import Schema

from api import operations, swagger_assets
from api.openapi import FamilyFields, FamilyResponses

# (status, message, details, code) -> body; ``code`` is a domain error's own code, if any.
Envelope = Callable[[int, str, list[str], str | None], dict[str, Any]]

EXTENSION = "jobyard.families"


@dataclass(frozen=True)
class Family:
    """One compatible API family (see the module docstring)."""

    name: str  # also its config prefix: MENTIONLAB_API_TITLE, ...
    title: str
    description: str
    url_prefixes: tuple[str, ...]  # the paths it answers, e.g. ("/api/",)
    envelope: Envelope  # how it answers an error: (status, message, details, code) -> body
    error_schema: type[Schema]  # the envelope's shape, as its spec documents every error
    api_key_headers: tuple[str, ...]  # headers that carry an API key, in order of preference
    accepts_bearer: bool  # whether a JWT in "Authorization: Bearer" is accepted
    blueprints: tuple[Blueprint, ...]
    docs_prefix: str  # <docs_prefix>openapi.json and <docs_prefix>docs
    security_schemes: dict[str, Any] = field(default_factory=dict)


def discover() -> list[Family]:
    """Every family package under ``api`` (importing each one)."""
    import api

    families = []
    for module in pkgutil.iter_modules(api.__path__):
        if module.ispkg:
            package = importlib.import_module(f"api.{module.name}")
            family = getattr(package, "FAMILY", None)
            if isinstance(family, Family):
                families.append(family)
    return families


def register(app: Flask, family: Family) -> Api:
    """Give the family its own Api (and OpenAPI spec) and register its blueprints."""
    prefix = f"{family.name.upper()}_"
    docs = family.docs_prefix.rstrip("/")
    app.config.update(
        {
            f"{prefix}API_TITLE": family.title,
            f"{prefix}API_VERSION": "1.0",
            f"{prefix}OPENAPI_VERSION": "3.0.3",
            f"{prefix}OPENAPI_URL_PREFIX": docs or "/",
            f"{prefix}OPENAPI_JSON_PATH": "openapi.json",
            f"{prefix}OPENAPI_SWAGGER_UI_PATH": "/docs",
            # Served by the app itself: /docs works offline (api/swagger_assets.py).
            f"{prefix}OPENAPI_SWAGGER_UI_URL": swagger_assets.URL,
        }
    )
    swagger_assets.serve(app)
    security: list[dict[str, list[str]]] = [{name: []} for name in family.security_schemes]
    error_schema = family.error_schema.__name__
    # Every error is documented in the family's envelope (flask-smorest's per-status
    # responses use ERROR_SCHEMA), and no catch-all "default" answer hides an
    # undocumented status: api/openapi.py documents each one.
    family_api = type(
        f"{family.name.title()}Api",
        (Api,),
        {"ERROR_SCHEMA": family.error_schema, "DEFAULT_ERROR_RESPONSE_NAME": None},
    )
    api = family_api(
        app,
        config_prefix=prefix,
        spec_kwargs={
            "info": {"description": family.description},
            "components": {"securitySchemes": family.security_schemes},
            "security": security,
            "marshmallow_plugin": FamilyFields(),
            "extra_plugins": [FamilyResponses(error_schema)],
        },
    )
    if error_schema not in api.spec.components.schemas:  # (the lazy responses may have)
        api.spec.components.schema(error_schema, schema=family.error_schema)
    for blueprint in family.blueprints:
        api.register_blueprint(blueprint)
    operations.index(app, family.name, [b.name for b in family.blueprints], api.spec.to_dict())
    app.extensions.setdefault(EXTENSION, []).append(family)
    # Longest prefix first, so that a more specific family wins.
    app.extensions[EXTENSION].sort(key=lambda f: -max(len(p) for p in f.url_prefixes))
    return api


def family_for(path: str) -> Family | None:
    """The family that answers ``path`` (None for the app's own paths: /healthz...). A
    path with repeated slashes (``/v1//jobs``) is its family's too: it gets the 404 of
    its family's envelope."""
    path = re.sub("/{2,}", "/", path)
    for family in current_app.extensions.get(EXTENSION, []):
        if any(path.startswith(prefix) for prefix in family.url_prefixes):
            return family
    return None


def current_family() -> Family | None:
    return family_for(request.path)
