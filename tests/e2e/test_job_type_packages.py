"""A job type is one package that can live outside the repository.

``examples/echo_job_type`` is installed into the environment (``make test`` installs it,
as a user would: ``pip install examples/echo_job_type``) and nothing in jobyard names it:
the API and a real worker process find it through the ``jobyard.job_types`` entry point,
and ``POST /v1/jobs`` runs it to the end. An entry point that cannot be loaded stops a
process at its start, naming the job type.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.db import session_scope
from shared.engine import job_types
from shared.models import Execution, Job
from tests.support import Tenant, assert_counters_exact, running_worker, wait_for_job

ROOT = Path(__file__).resolve().parents[2]
ITEMS = [1, "two", {"three": [3]}]


def test_the_echo_type_comes_from_its_installed_package_alone() -> None:
    (point,) = [p for p in entry_points(group=job_types.ENTRY_POINT_GROUP) if p.name == "echo"]
    assert point.dist is not None and point.dist.name == "jobyard-echo-job-type"
    spec = point.load()
    assert Path(sys.modules[type(spec.executor).__module__].__file__ or "").is_relative_to(
        ROOT / "examples" / "echo_job_type"
    )
    # No edit in jobyard: its packages do not name the type or its package.
    for package in ("api", "shared", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "echo_job_type" not in text and '"echo"' not in text, path


def test_an_echo_job_runs_through_v1_jobs(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, empty_broker: object
) -> None:
    headers = tenant.headers(bearer=True, project=False)
    created = client.post(
        "/v1/jobs", headers=headers, json={"jobType": "echo", "payload": {"items": ITEMS}}
    )
    assert created.status_code == 201, created.json
    job_id = created.json["data"]["jobId"]
    assert created.json["data"]["progress"]["total"] == 3
    with running_worker(tmp_path):
        job = wait_for_job(job_id, timeout=60)
    assert job.status == "completed"
    assert_counters_exact(job_id)
    with session_scope() as session:
        results = session.scalars(
            select(Execution.result).where(Execution.job_id == job_id).order_by(Execution.seq)
        ).all()
    assert list(results) == ITEMS  # each execution's result is its item

    answer = client.get(f"/v1/jobs/{job_id}", headers=headers).json["data"]
    assert (answer["status"], answer["jobType"], answer["resultType"]) == (
        "completed",
        "echo",
        "echoes",
    )
    listed = client.get("/v1/jobs?limit=10&jobType=echo", headers=headers).json["data"]
    assert [j["jobId"] for j in listed["jobs"]] == [job_id]


@pytest.mark.parametrize(
    "payload",
    [{}, {"items": []}, {"items": "not a list"}, {"items": [1], "extra": True}],
    ids=["no-items", "empty", "not-a-list", "unknown-field"],
)
def test_a_bad_echo_payload_is_a_400_and_creates_nothing(
    client: FlaskClient, tenant: Tenant, payload: dict[str, object]
) -> None:
    answer = client.post(
        "/v1/jobs",
        headers=tenant.headers(bearer=True, project=False),
        json={"jobType": "echo", "payload": payload},
    )
    assert answer.status_code == 400, answer.json
    assert answer.json["success"] is False and "payload" in answer.json["message"]
    with session_scope() as session:
        assert session.scalar(select(Job.id).where(Job.organisation_id == tenant.org_id)) is None


def test_a_job_type_that_cannot_be_loaded_stops_the_start(tmp_path: Path) -> None:
    """An installed distribution whose entry point names a missing module: the API's
    factory refuses to start, naming the job type and its entry point."""
    dist_info = tmp_path / "broken_job_type-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-job-type\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{job_types.ENTRY_POINT_GROUP}]\nbroken = no_such_module:SPEC\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", "from api.app import create_app; create_app()"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert "BrokenJobType: job type 'broken' (no_such_module:SPEC) cannot be loaded" in (
        started.stderr
    ), started.stderr[-2000:]
