"""Each family's OpenAPI spec describes what the app answers, nothing more: its paths are
the routes of that family's blueprints, its job types are registered ones, and the limits
a create answers 422 for are documented."""

from __future__ import annotations

import json
import re

from flask import Flask
from flask.testing import FlaskClient

from api.families import discover
from shared.engine import job_types


def routes_of(app: Flask, blueprint_names: set[str]) -> set[str]:
    paths = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in blueprint_names:
            paths.add(re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule))
    return paths


def test_every_spec_lists_exactly_its_familys_routes(app: Flask, client: FlaskClient) -> None:
    families = discover()
    assert families
    for family in families:
        spec = client.get(f"{family.docs_prefix}openapi.json").get_json()
        routes = routes_of(app, {b.name for b in family.blueprints})
        assert routes, family.name
        assert set(spec["paths"]) == routes, family.name
        assert spec["info"]["description"] and spec["info"]["title"]


def test_job_types_in_the_specs_are_registered(client: FlaskClient) -> None:
    spec = client.get("/v1/jobs/openapi.json").get_json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    # One body per job type (oneOf), each naming its jobType.
    documented = [v["properties"]["jobType"]["enum"][0] for v in body["schema"]["oneOf"]]
    assert documented
    for job_type in documented:
        assert job_types.planner_for(job_type) is not None, job_type


def test_the_executions_cap_is_documented(client: FlaskClient) -> None:
    spec = json.dumps(client.get("/openapi.json").get_json())
    assert spec.count("JOBYARD_MAX_EXECUTIONS_PER_JOB") >= 2
