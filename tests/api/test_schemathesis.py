"""schemathesis over the whole OpenAPI spec of every API family, in-process (WSGI).

Every operation of every family's spec gets schemathesis' examples, coverage and fuzzing
phases (a bounded number of cases each, derandomized: the same cases every run), as a
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

# Cases per operation and phase. The whole run (4 families, about 60 operations) takes
# about N s on a 2-core machine; see the README's "Checking the specs".
MAX_EXAMPLES = 12
SEED = 42
# The biggest job an accepted create may make here, so that a schema-valid
# ``executionCount: 9000000`` is answered quickly (422, documented) instead of writing
# millions of executions.
MAX_EXECUTIONS_PER_JOB = 50


# The only checks configured for an operation rather than left as schemathesis has them,
# each because the spec cannot say what the check would need it to.
NARROWED_CHECKS = [
    {
        # lastEvaluatedKey is an opaque cursor (base64 of the last row's sort key) that
        # only an earlier page hands out: a schema cannot describe which strings are one,
        # so a made-up "schema-valid" cursor is rightly a 400, documented as such.
        "include-path": "/v1/jobs",
        "include-method": "GET",
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "404", "409", "429"]
            }
        },
    },
]


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


def config(family: Family, tenant: Tenant) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
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
            "operations": NARROWED_CHECKS,
        }
    )


def failures_of(events: Any) -> list[str]:
    """Every failed check, error and non-fatal engine problem of a run, one line each
    (with the reproducing curl), for the assertion message."""
    found: list[str] = []
    for event in events:
        if isinstance(event, engine_events.ScenarioFinished | engine_events.FuzzScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        case = event.recorder.cases[case_id].value
                        found.append(
                            f"{check.name}: {case.operation.label}: {failure.title}: "
                            f"{failure.message}\n    {check.failure_info.code_sample}"
                        )
        elif isinstance(event, engine_events.NonFatalError):
            found.append(f"error: {event.label}: {event.value!r}")
        elif isinstance(event, engine_events.FatalError):
            found.append(f"fatal: {event.exception!r}")
        elif isinstance(event, engine_events.EngineFinished):
            found += [f"after run: {f.title}: {f.message}" for f in event.failures]
    return found


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
    schema = schemathesis.openapi.from_wsgi(
        spec_path(family), fuzzed_app, config=config(family, fuzzed_tenant)
    )
    events = list(schemathesis.engine.from_schema(schema).execute())
    finished = events[-1]
    assert isinstance(finished, engine_events.EngineFinished)
    failures = failures_of(events)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
