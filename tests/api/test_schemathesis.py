"""schemathesis over the whole OpenAPI spec of every API family, in-process (WSGI).

Every operation of every family's spec goes through schemathesis' examples, coverage,
fuzzing and stateful phases, as its CLI runs them (a bounded number of cases each,
derandomized with a fixed seed: the same cases every run), as a
tenant with valid credentials, and every response goes through ALL of schemathesis'
checks: no server error, status codes, content types, headers and bodies as documented,
schema-valid requests accepted, schema-violating ones rejected, undeclared methods 405
with an ``Allow`` header, missing credentials 401...

The families are found the way the app finds them (:func:`api.families.discover`), so a
new family is tested without a change here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import schemathesis.engine
from flask import Flask
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events as engine_events
from schemathesis.transport.wsgi import WSGITransport

from api import create_app
from api.families import Family, discover
from shared.settings import reset_settings_cache
from tests.support import Tenant, make_tenant

# Cases per operation and phase. The whole run (4 families, 83 operations) took 40 to
# 60 s on a shared 2-core machine (12 took 85 to 110 s); with NUL in generated strings
# (every string's no-NUL pattern adds a case that breaks it) 66 s of CPU against 51 s
# in one pair of runs; see the README's "The specs".
MAX_EXAMPLES = 8
SEED = 42
# The biggest job an accepted create may make here, so that a schema-valid
# ``executionCount: 9000000`` is answered quickly (422, documented) instead of writing
# millions of executions.
MAX_EXECUTIONS_PER_JOB = 50


# What positive_data_acceptance takes by default (schemathesis' own list but 5xx).
ACCEPTED = ["2xx", "401", "403", "404", "409", "429"]
# The only checks configured for an operation rather than left as schemathesis has them,
# each because the spec cannot say what the check would need it to.
NARROWED_CHECKS = [
    {
        # lastEvaluatedKey is an opaque cursor (base64 of the last row's sort key) that
        # only an earlier page hands out: a schema cannot describe which strings are one,
        # so a made-up "schema-valid" cursor is rightly a 400, documented as such.
        "include-name": "GET /v1/jobs",
        "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
    },
    {
        # The same for the delivery logs' cursor (the next page's Link header holds it).
        "include-name-regex": r"^GET /v1/apps/\{app_id\}/(batches/\{batch_id\}|jobs/\{job_id\})/deliveries$",
        "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
    },
    {
        # Smart DB checks what a schema cannot: the source database answers at that URL
        # (POST /databases), the interval and times parse and the table and KB exist
        # (POST /jobs/create). It answers 400 with its own codes (INVALID_REQUEST,
        # INVALID_TABLE, INVALID_INTERVAL...), as documented, and so does Smart DB. Like
        # every create, they also answer the documented 422 of an Idempotency-Key that
        # an earlier generated request used with another body.
        "include-name-regex": "^POST /(databases|jobs/create)$",
        "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "422"]}},
    },
    {
        # One cached job per query: a request naming a query twice is a 400 (which plan
        # would win?). JSON Schema cannot say "unique by queryId" (uniqueItems compares
        # whole items), so a schema-valid list may repeat one.
        "include-name": "POST /api/cached-jobs/many",
        "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "422"]}},
    },
    {
        # A sync job may be named "create" (names are letters, digits and _): then
        # GET and DELETE /jobs/create read and delete it, as /jobs/{name} documents, so
        # the Allow header of /jobs/create rightly lists them too.
        "include-name": "POST /jobs/create",
        "checks": {"allow_header_conformance": {"enabled": False}},
    },
]


def documented_leeway(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """What positive_data_acceptance also takes where no schema can say when a well-formed
    request is refused, operation by operation (the first entry that names an operation
    wins: :data:`NARROWED_CHECKS` come before these):

    - 422 where the spec documents one: a request can be refused for the state it meets
      (no queries or cached jobs to run, a total over JOBYARD_MAX_EXECUTIONS_PER_JOB, a
      provider not configured);
    - 400 where the body holds a free-form JSON object (super.AI's inputs and metadata,
      Valpay's payload, Smart DB's search filters): a NUL in any of its keys or strings
      is refused (api/request_limits.py; tests/api/test_hostile_input.py checks the
      answer), and OpenAPI 3.0 cannot say so of keys (``propertyNames`` is 3.1's). Every
      typed string of every spec says it with a pattern (api/openapi.py), so there a NUL
      is not schema-valid.
    """
    entries = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            extra = []
            if free_form_body(spec, operation):
                extra.append("400")
            if "422" in operation.get("responses", {}):
                extra.append("422")
            if extra:
                entries.append(
                    {
                        "include-name": f"{method.upper()} {path}",
                        "checks": {
                            "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *extra]}
                        },
                    }
                )
    return entries


ANNOTATIONS = {"description", "default", "nullable", "example", "title", "readOnly", "writeOnly"}


def free_form_body(spec: dict[str, Any], operation: dict[str, Any]) -> bool:
    """Whether the operation's JSON body holds, at any depth, an object whose keys the
    spec leaves free (or a value of any JSON)."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    stack = [body.get("schema")] if "schema" in body else []
    seen: set[str] = set()
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "$ref" in node:
            if node["$ref"] not in seen:
                seen.add(node["$ref"])
                stack.append(spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]])
            continue
        if not set(node) - ANNOTATIONS:
            return True  # {}: any JSON value
        if node.get("type") == "object" and node.get("additionalProperties", True) is not False:
            return True
        stack += [n for key in ("allOf", "anyOf", "oneOf") for n in node.get(key, [])]
        stack += list(node.get("properties", {}).values())
        stack += [node[key] for key in ("items", "additionalProperties") if key in node]
    return False


SOCKET_OPTIONS = ("max_redirects", "verify", "cert", "proxies")


def spec_path(family: Family) -> str:
    return family.docs_prefix.rstrip("/") + "/openapi.json"


FAMILIES = {family.name: family for family in discover()}


@pytest.fixture(scope="module")
def fuzzed_tenant() -> Tenant:
    return make_tenant(name="Fuzzed")


@pytest.fixture(scope="module")
def fuzzed_app(fuzzed_tenant: Tenant) -> Iterator[Flask]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBYARD_MAX_EXECUTIONS_PER_JOB", str(MAX_EXECUTIONS_PER_JOB))
        # No worker runs here: a progress stream of a real job would stay open until its
        # job ends. It answers its first event, then ends with `timeout` at once.
        patch.setenv("JOBYARD_SSE_MAX_STREAM_SECONDS", "0.05")
        patch.setenv("JOBYARD_SSE_HEARTBEAT_SECONDS", "0.05")
        reset_settings_cache()
        # The per-credential rate limit (documented as 429 on every operation) would
        # answer most of the run's thousands of requests with 429 and hide everything else.
        yield create_app({"TESTING": True, "RATELIMIT_ENABLED": False})
    reset_settings_cache()


def credentials(family: Family, tenant: Tenant) -> dict[str, str]:
    """What a client of ``family`` sends to be this tenant."""
    if family.api_key_headers:
        return {family.api_key_headers[0]: tenant.api_key}
    return {"Authorization": f"Bearer {tenant.token}"}


def config(family: Family, tenant: Tenant, spec: dict[str, Any]) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # Hypothesis' "data generation too slow" is a wall-clock measure of the
            # generator, not of the API: on a loaded two-core machine it failed super.AI's
            # PUT .../processor once. Every other health check stays on.
            "suppress-health-check": ["too_slow"],
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # Strings may hold NUL (schemathesis' default, said here because it
                # was off): in paths, query strings, headers and bodies alike it is a
                # 400 before any view runs (api/request_limits.py), never a 500.
                "allow-x00": True,
            },
            # No observation cache kept between runs: each run is the same run. (Its
            # replays also pass socket options to the WSGI client, which refuses them.)
            "cache": {"enabled": False},
            "headers": credentials(family, tenant),
            "parameters": {
                # Mentionlab's context: the tenant's own organisation and project.
                "header.x-organisation-id": str(tenant.org_id),
                "header.x-project-id": str(tenant.project_id),
                # super.AI's app is a project.
                "path.app_id": str(tenant.project_id),
            },
            "operations": NARROWED_CHECKS + documented_leeway(spec),
        }
    )


def failures_of(events: Any) -> list[str]:
    """Every failed check (once per check, operation and kind of failure, with the
    answer's status and a curl that reproduces it), error and non-fatal engine problem of
    a run, for the assertion message."""
    found: dict[tuple[str, str, str], str] = {}
    for event in events:
        if isinstance(event, engine_events.ScenarioFinished | engine_events.FuzzScenarioFinished):
            recorder = event.recorder
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    label = recorder.cases[case_id].value.operation.label
                    interaction = recorder.interactions.get(case_id)
                    response = interaction.response if interaction is not None else None
                    status = response.status_code if response is not None else "-"
                    found.setdefault(
                        (check.name, label, failure.title),
                        f"{check.name}: {label}: {failure.title} (answered {status}, {getattr(event, 'phase', 'fuzz')}): "
                        f"{failure.message}\n    {check.failure_info.code_sample}",
                    )
        elif isinstance(event, engine_events.NonFatalError):
            found[("error", event.label, repr(event.value))] = (
                f"error: {event.label}: {event.value!r}"
            )
        elif isinstance(event, engine_events.FatalError):
            found[("fatal", "", repr(event.exception))] = f"fatal: {event.exception!r}"
        elif isinstance(event, engine_events.EngineFinished):
            for failure in event.failures:
                found[("after run", "", failure.title)] = (
                    f"after run: {failure.title}: {failure.message}"
                )
    return list(found.values())


@pytest.fixture
def in_process_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """schemathesis 4.32's ``ignored_auth`` check re-sends a request with the run's
    socket options (``max_redirects``...), which its own WSGI transport drops only when
    a requests session is given: werkzeug's client refuses them (TypeError). Drop them,
    as that transport does, so that the check runs in-process."""
    send = WSGITransport.send

    def send_in_process(self: WSGITransport, case: Any, **kwargs: Any) -> Any:
        for name in SOCKET_OPTIONS:
            kwargs.pop(name, None)
        return send(self, case, **kwargs)

    monkeypatch.setattr(WSGITransport, "send", send_in_process)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.usefixtures("in_process_probes")
def test_the_family_answers_as_its_spec_says(
    name: str, fuzzed_app: Flask, fuzzed_tenant: Tenant
) -> None:
    family = FAMILIES[name]
    spec = fuzzed_app.test_client().get(spec_path(family)).get_json()
    schema = schemathesis.openapi.from_wsgi(
        spec_path(family), fuzzed_app, config=config(family, fuzzed_tenant, spec)
    )
    events = list(schemathesis.engine.from_schema(schema).execute())
    finished = events[-1]
    assert isinstance(finished, engine_events.EngineFinished)
    failures = failures_of(events)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
