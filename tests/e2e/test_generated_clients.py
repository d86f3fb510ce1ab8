"""A client generated from each family's spec works, unedited, against the real API and a
real worker: openapi-python-client (pinned in tests/clients-generator.txt, installed by
``make clients-generator``) generates it from the spec the API serves, and the test
creates and reads with it, with every job type present in the one organisation.

What broke such clients before: ``"project": null`` in Mentionlab's answers (a sync run
listed as one of its jobs), header ids typed ``format: uuid`` (the client passed a UUID
object to httpx as a header value: a TypeError before anything was sent), Smart DB's
``data`` typed as anything, and answers whose every field was optional.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import typing
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from api.families import Family, discover
from tests.kb_support import SOURCE_URL, insert_orders, quiet_other_sync_jobs, source_table
from tests.support import (
    ROOT,
    Tenant,
    fail_every_execution,
    running_api,
    running_worker,
    wait_for_job,
)

pytestmark = pytest.mark.slow

GENERATOR = ROOT / ".venv-clients" / "generator" / "bin"
FAMILIES = {family.name: family for family in discover()}
ENV = {"JOBYARD_ALLOW_PRIVATE_URLS": "true"}  # the source database is on loopback


def generate(family: Family, base_url: str, into: Path) -> ModuleType:
    """The family's client, generated from the spec the running API serves, imported as
    ``<family>_client``."""
    if not (GENERATOR / "openapi-python-client").exists():
        pytest.fail("the client generator is not installed: run `make clients-generator`")
    spec = into / f"{family.name}.json"
    spec.write_bytes(httpx.get(f"{base_url}{family.docs_prefix}openapi.json").content)
    package = f"{family.name}_client"
    done = subprocess.run(
        [
            GENERATOR / "openapi-python-client",
            "generate",
            "--path",
            spec,
            "--output-path",
            into / package,
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        # Its ruff (which formats what it wrote) is in the same virtualenv.
        env={**os.environ, "PATH": f"{GENERATOR}{os.pathsep}{os.environ['PATH']}"},
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # A warning means a part of the spec it could not use: an operation or model left out.
    assert "Warning" not in output, output
    return importlib.import_module(package)


@pytest.fixture
def clients_dir(tmp_path: Path) -> Iterator[Path]:
    """Where the clients are generated (importable for the test's duration)."""
    into = tmp_path / "clients"
    into.mkdir()
    sys.path.insert(0, str(into))
    try:
        yield into
    finally:
        sys.path.remove(str(into))
        for name in [m for m in sys.modules if m.split(".")[0].endswith("_client")]:
            del sys.modules[name]


def module(client_package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{client_package.__name__}.{name}")


def as_typed(function: Any, parameter: str, value: uuid.UUID) -> Any:
    """``value`` as the generated ``function`` types ``parameter``, as its user would
    pass it: a UUID where the spec said ``format: uuid`` (which httpx then refuses as a
    header value), else its text."""
    hint = typing.get_type_hints(function)[parameter]
    return value if hint is uuid.UUID or uuid.UUID in typing.get_args(hint) else str(value)


def test_a_generated_client_per_family_creates_and_reads(
    tenant: Tenant, tmp_path: Path, clients_dir: Path
) -> None:
    quiet_other_sync_jobs()
    with (
        source_table() as (engine, table),
        running_api(tmp_path, **ENV) as base_url,
        running_worker(tmp_path, concurrency=8, **ENV),
        ExitStack() as clients,  # each generated client closes its connections
    ):
        insert_orders(engine, table, 20, start=1, at=datetime(2026, 1, 1))
        generated = {name: generate(f, base_url, clients_dir) for name, f in FAMILIES.items()}
        api_key = {"x-api-key": tenant.api_key}

        # -- Smart DB: a source, a KB and a sync job; a run of it makes a kb_sync job
        smartdb = generated["smartdb"]
        sdb = clients.enter_context(
            smartdb.Client(base_url=base_url, headers=api_key, raise_on_unexpected_status=True)
        )
        models = module(smartdb, "models")
        database = f"db_{uuid.uuid4().hex[:6]}"
        module(smartdb, "api.smartdb_databases.post_databases").sync(
            client=sdb, body=models.CreateDatabase(name=database, url=SOURCE_URL)
        )
        module(smartdb, "api.smartdb_knowledge_bases.post_knowledge_bases").sync(
            client=sdb, body=models.CreateKb(name="generated_kb")
        )
        job_name = f"sync_{uuid.uuid4().hex[:8]}"
        created = module(smartdb, "api.smartdb_jobs.post_jobs_create").sync(
            client=sdb,
            body=models.CreateSyncJob(
                job_name=job_name,
                source_table=f"{database}.{table.name}",
                kb_name="generated_kb",
                content_columns=["product", "description"],
                filter_column="created_at",
                interval="1 DAY",
                start_time="2026-01-01T00:00:00",
                end_time="2026-01-20T00:00:00",
            ),
        )
        assert isinstance(created, models.SyncJobCreatedAnswer), created
        started = module(smartdb, "api.smartdb_jobs.post_jobs_name_run").sync(job_name, client=sdb)
        wait_for_job(started.data.run_job_id, timeout=60)
        read = module(smartdb, "api.smartdb_jobs.get_jobs_name").sync(job_name, client=sdb)
        assert isinstance(read, models.SyncJobAnswer), read
        assert read.data.job_name == job_name and read.data.last_run.rows_written == 20

        # -- Mentionlab: trigger a run (x-project-id is a header), read it, list runs
        mentionlab = generated["mentionlab"]
        ml = clients.enter_context(
            mentionlab.Client(base_url=base_url, headers=api_key, raise_on_unexpected_status=True)
        )
        models = module(mentionlab, "models")
        trigger = module(mentionlab, "api.mentionlab_jobs.post_api_jobs_trigger").sync
        run = trigger(
            client=ml,
            body=models.TriggerJob(
                ai_models=[models.TriggerJobAiModelsItem.SONAR], execution_count=2
            ),
            x_project_id=as_typed(trigger, "x_project_id", tenant.project_id),
            x_organisation_id=as_typed(trigger, "x_organisation_id", tenant.org_id),
        )
        assert isinstance(run, models.Job), run
        wait_for_job(run.id, timeout=60)
        detail = module(mentionlab, "api.mentionlab_jobs.get_api_jobs_job_id").sync(
            run.id, client=ml
        )
        assert isinstance(detail, models.JobDetail), detail
        assert detail.status == models.JobStatus.COMPLETED and detail.success_executions == 6
        assert detail.created_by.id == tenant.user_id and detail.finished_at is not None
        listed = module(mentionlab, "api.mentionlab_jobs.post_api_jobs_list").sync(
            client=ml, body=models.JobListFilter()
        )
        assert [job.id for job in listed.results] == [run.id]  # not the sync run

        # -- super.AI: a processor, a batch, and the batch read back
        superai = generated["superai"]
        sai = clients.enter_context(
            superai.Client(
                base_url=base_url,
                headers={"API-KEY": tenant.api_key},
                raise_on_unexpected_status=True,
            )
        )
        models = module(superai, "models")
        app_id = str(tenant.project_id)
        module(superai, "api.superai_apps.put_v1_apps_app_id_processor").sync(
            app_id,
            client=sai,
            body=models.Processor(
                prompt_template="Summarise: {{ text }}", model=models.ProcessorModel.SONAR
            ),
        )
        inputs = [models.CreateJobsInputsItem.from_dict({"text": t}) for t in ("a", "b")]
        accepted = module(superai, "api.superai_apps.post_v1_apps_app_id_jobs").sync(
            app_id, client=sai, body=models.PostV1AppsAppIdJobsBody(inputs=inputs)
        )
        assert isinstance(accepted, models.Created), accepted
        wait_for_job(accepted.batch_id, timeout=60)
        batch = module(superai, "api.superai_apps.get_v1_apps_app_id_batches_batch_id").sync(
            app_id, str(accepted.batch_id), client=sai
        )
        assert isinstance(batch, models.Batch), batch
        assert batch.state == models.BatchState.COMPLETED and batch.completed_count == 2

        # -- Valpay: a run created with a bearer token, read, and every type listed
        valpay = generated["valpay"]
        vp = clients.enter_context(
            valpay.AuthenticatedClient(
                base_url=base_url, token=tenant.token, raise_on_unexpected_status=True
            )
        )
        models = module(valpay, "models")
        answer = module(valpay, "api.valpay_jobs.post_v1_jobs").sync(
            client=vp,
            body=models.PostV1JobsBodyType0(
                job_type=models.PostV1JobsBodyType0JobType.AI_QUERIES,
                payload=models.AiQueriesPayload(
                    project_id=tenant.project_id,
                    ai_models=[models.AiQueriesPayloadAiModelsItem.SONAR],
                    execution_count=1,
                ),
            ),
        )
        assert isinstance(answer, models.JobAnswer), answer
        one = module(valpay, "api.valpay_jobs.get_v1_jobs_job_id").sync(
            str(answer.data.job_id), client=vp
        )
        assert one.data.job_type == models.JobJobType.AI_QUERIES
        # A job type installed from outside the tree (examples/echo_job_type) is in the
        # spec as its own body, and a generated client creates it like any other.
        echo = module(valpay, "api.valpay_jobs.post_v1_jobs").sync(
            client=vp,
            body=models.PostV1JobsBodyType2(
                job_type=models.PostV1JobsBodyType2JobType.ECHO,
                payload=models.EchoPayload(items=[1, "two"]),
            ),
        )
        assert isinstance(echo, models.JobAnswer) and echo.data.progress.total == 2, echo
        page = module(valpay, "api.valpay_jobs.get_v1_jobs").sync(client=vp, limit=100)
        assert {job.job_type for job in page.data.jobs} == set(models.JobJobType)
        sync_run = next(job for job in page.data.jobs if job.job_type == models.JobJobType.KB_SYNC)
        assert sync_run.project_id is None and sync_run.progress.total >= 1


def test_generated_clients_retry_a_failed_run(
    tenant: Tenant, tmp_path: Path, clients_dir: Path
) -> None:
    """Retry on demand through generated clients: Mentionlab's retries a run whose every
    execution failed (200, the run processing again with each execution pending), and
    Valpay's then refuses the same run, no longer finished (409, its own error model).
    No worker runs, so nothing runs the retried executions and the state stays to read."""
    with (
        running_api(tmp_path, **ENV) as base_url,
        ExitStack() as clients,
    ):
        mentionlab = generate(FAMILIES["mentionlab"], base_url, clients_dir)
        valpay = generate(FAMILIES["valpay"], base_url, clients_dir)
        ml = clients.enter_context(
            mentionlab.Client(
                base_url=base_url,
                headers={"x-api-key": tenant.api_key},
                raise_on_unexpected_status=True,
            )
        )
        models = module(mentionlab, "models")
        trigger = module(mentionlab, "api.mentionlab_jobs.post_api_jobs_trigger").sync
        run = trigger(
            client=ml,
            body=models.TriggerJob(
                ai_models=[models.TriggerJobAiModelsItem.SONAR], execution_count=1
            ),
            x_project_id=as_typed(trigger, "x_project_id", tenant.project_id),
            x_organisation_id=as_typed(trigger, "x_organisation_id", tenant.org_id),
        )
        assert isinstance(run, models.Job), run
        failed = fail_every_execution(run.id)
        assert failed == run.total_executions

        retry = module(mentionlab, "api.mentionlab_jobs.post_api_jobs_job_id_retry").sync
        retried = retry(run.id, client=ml)
        assert isinstance(retried, models.Job), retried
        assert retried.status == models.JobStatus.PROCESSING
        assert retried.pending_executions == failed and retried.failed_executions == 0

        vp = clients.enter_context(
            valpay.AuthenticatedClient(
                base_url=base_url, token=tenant.token, raise_on_unexpected_status=True
            )
        )
        refused = module(valpay, "api.valpay_jobs.post_v1_jobs_job_id_retry").sync(
            str(run.id), client=vp
        )
        vmodels = module(valpay, "models")
        assert isinstance(refused, vmodels.ValpayError), refused
        assert "has not finished" in str(refused.to_dict()), refused
