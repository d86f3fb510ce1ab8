"""API families: each compatible API is one package under ``api/`` that declares, in one
place (its ``FAMILY``), the paths it answers, its error envelope, the headers that carry
its API keys, its blueprints and where its OpenAPI spec lives.

The app factory discovers the families (every ``api`` subpackage with a ``FAMILY``), gives
each its own flask-smorest ``Api`` (``config_prefix``: one spec per family), and the error
handlers and authentication look a request's family up by its path. Adding a family adds a
package; no central list changes.

Where two families share a path, the credential tells them apart: a family's
``keyed_prefixes`` are paths under another family's prefix that it answers for a request
that carries one of its API key headers and no bearer token (super.AI's data points
under ``/v1/jobs/``, where a bearer token is Valpay's). :func:`family_for` decides, and :mod:`api.routing` routes
the request among that family's routes only.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, request
from flask_smorest import Api, Blueprint
from marshmallow import Schema
from werkzeug.datastructures import Headers

from api import operations, swagger_assets
from api.openapi import FamilyFields, FamilyResponses
from api.transaction import commits_per_answer

# A request's headers (werkzeug's), or any mapping of them.
RequestHeaders = Headers | Mapping[str, str]
# (status, message, details, code) -> body; ``code`` is a domain error's own code, if any.
Envelope = Callable[[int, str, list[str], str | None], dict[str, Any]]

EXTENSION = "jobyard.families"
TITLE_PREFIX = "jobyard — "  # every family's title starts so; links show the rest


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
    # Paths under another family's prefix that this one answers when the request carries
    # one of its API key headers and no bearer token (see the module docstring).
    keyed_prefixes: tuple[str, ...] = ()
    vendor: str = ""  # the API it is compatible with, as its clients know it: "super.AI"

    def credentials_hint(self) -> str:
        """Every way in, as a 401 names them: ``API-KEY or ... or Authorization: Bearer``."""
        bearer = ("Authorization: Bearer <token>",) if self.accepts_bearer else ()
        return " or ".join((*self.api_key_headers, *bearer))


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


def docs_url(family: Family) -> str:
    """Where the family's Swagger UI page is."""
    return f"{family.docs_prefix}docs"


def links_to_the_others(family: Family, families: Sequence[Family]) -> str:
    """A line of the family's spec description that links to every other family's docs
    (relative links: they work on whichever address the page was read)."""
    others = [f for f in families if f.name != family.name]
    if not others:
        return ""
    links = " · ".join(f"[{f.title.removeprefix(TITLE_PREFIX)}]({docs_url(f)})" for f in others)
    return f"\n\n**The other API families of this server:** {links}"


def register(app: Flask, family: Family, families: Sequence[Family] = ()) -> Api:
    """Give the family its own Api (and OpenAPI spec) and register its blueprints;
    its description links to the docs of the other ``families``."""
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
            "info": {"description": family.description + links_to_the_others(family, families)},
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
    # Every view of the family answers in one unit of work (api.transaction).
    names = {b.name for b in family.blueprints}
    for endpoint, view in list(app.view_functions.items()):
        if endpoint.partition(".")[0] in names:
            app.view_functions[endpoint] = commits_per_answer(view)
    operations.index(app, family.name, [b.name for b in family.blueprints], api.spec.to_dict())
    app.extensions.setdefault(EXTENSION, []).append(family)
    # Longest prefix first, so that a more specific family wins.
    app.extensions[EXTENSION].sort(key=lambda f: -max(len(p) for p in f.url_prefixes))
    return api


def _registered(app: Flask | None) -> list[Family]:
    families: list[Family] = (app or current_app).extensions.get(EXTENSION, [])
    return families


def carries_bearer(headers: RequestHeaders) -> bool:
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


@dataclass(frozen=True)
class SharedPath:
    """The families that answer a shared path: those that key it (by API key), and the
    family whose prefix it is under, its owner (by bearer token)."""

    keyed: tuple[Family, ...]
    owner: Family | None

    @property
    def families(self) -> tuple[Family, ...]:
        return (*self.keyed, *((self.owner,) if self.owner is not None else ()))


def sharing(path: str, app: Flask | None = None) -> SharedPath | None:
    """Who shares ``path``; None when no family keys it."""
    families = _registered(app)
    keyed = tuple(f for f in families if any(path.startswith(p) for p in f.keyed_prefixes))
    if not keyed:
        return None
    owner = next((f for f in families if any(path.startswith(p) for p in f.url_prefixes)), None)
    return SharedPath(keyed, owner)


def family_for(
    path: str, headers: RequestHeaders | None = None, app: Flask | None = None
) -> Family | None:
    """The family that answers a request for ``path`` carrying ``headers``.

    On a shared path (:func:`sharing`), the credential decides: a bearer token names the
    path's owner (whatever else comes with it: the owner's clients are unchanged), else
    the family whose API key header the request carries; with neither, None (its 401
    names every way in). Elsewhere, the family whose prefix the path starts with (the
    longest). None for the app's own paths (/healthz...). A path with repeated slashes
    (``/v1//jobs``) is its family's too: it gets the 404 of its family's envelope.
    """
    path = re.sub("/{2,}", "/", path)
    headers = headers or {}
    shared = sharing(path, app)
    if shared is not None:
        owner = shared.owner
        if owner is not None and owner.accepts_bearer and carries_bearer(headers):
            return owner
        for family in shared.families:
            if any(headers.get(h) for h in family.api_key_headers):
                return family
        return None
    for family in _registered(app):
        if any(path.startswith(prefix) for prefix in family.url_prefixes):
            return family
    return None


def current_family() -> Family | None:
    return family_for(request.path, request.headers)
