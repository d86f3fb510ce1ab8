"""Routing a request among the routes of its family, where families share a path.

Two families answer under ``/v1/jobs/``: Valpay's jobs (a bearer JWT) and the data
points that the official super.AI client reads, cancels and reviews there (its
``API-KEY``). Both declare their routes as usual, each in its own blueprints and its own
OpenAPI spec, so the app's URL map holds ``GET /v1/jobs/<id>`` twice. The credential
picks the family (:func:`api.families.family_for`), and here, once per request, before
Flask matches the URL: a request on a shared path is matched against the routes of its
family only (and the app's own), never another family's. That is the one dispatch point;
views, errors and authentication then see a request of one family, as anywhere else.

A request on a shared path that carries no credential names no family: it is matched
against every route, and the route's authentication answers 401 naming each family's way
in (:mod:`api.auth`).
"""

from __future__ import annotations

from flask import Flask, Request
from werkzeug.routing import Map, MapAdapter

from api.families import EXTENSION, Family, family_for, sharing

MAPS = "jobyard.family_url_maps"


def owner_of(endpoint: str, families: list[Family]) -> Family | None:
    """The family whose blueprint serves ``endpoint`` (None for the app's own routes)."""
    blueprint = endpoint.rpartition(".")[0]
    return next((f for f in families if any(b.name == blueprint for b in f.blueprints)), None)


def family_url_map(app: Flask, family: Family) -> Map:
    """The app's URL map without any other family's routes (built on first use: Flask
    adds no route once it has served a request)."""
    maps: dict[str, Map] = app.extensions.setdefault(MAPS, {})
    if family.name not in maps:
        families = app.extensions.get(EXTENSION, [])
        url_map = app.url_map
        copies = []
        for rule in url_map.iter_rules():
            if owner_of(rule.endpoint, families) in (None, family):
                copy = rule.empty()
                # Flask's mark on its rules (OPTIONS answered for the view): not an argument.
                copy.provide_automatic_options = getattr(  # type: ignore[attr-defined]
                    rule, "provide_automatic_options", False
                )
                copies.append(copy)
        maps[family.name] = Map(
            copies,
            default_subdomain=url_map.default_subdomain,
            strict_slashes=url_map.strict_slashes,
            merge_slashes=url_map.merge_slashes,
            redirect_defaults=url_map.redirect_defaults,
            converters=url_map.converters,
            sort_parameters=url_map.sort_parameters,
            sort_key=url_map.sort_key,
            host_matching=url_map.host_matching,
        )
    return maps[family.name]


class FamilyRoutedFlask(Flask):
    """Flask, routing each request on a shared path among its family's routes only."""

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        adapter = super().create_url_adapter(request)
        if request is None or adapter is None or sharing(request.path, self) is None:
            return adapter
        family = family_for(request.path, request.headers, self)
        if family is None:  # no credential: every route, and the route's 401
            return adapter
        return MapAdapter(
            family_url_map(self, family),
            adapter.server_name,
            adapter.script_name,
            adapter.subdomain,
            adapter.url_scheme,
            adapter.path_info,
            adapter.default_method,
            adapter.query_args,
        )
