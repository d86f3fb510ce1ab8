"""A create with an Idempotency-Key whose API process dies between the create and the
storing of its answer leaves nothing behind, and its retry creates the job once.

The API runs as deployed (gunicorn, the Procfile's ``web`` line). With
``JOBYARD_FAILPOINTS=idempotency.before_store`` its worker SIGKILLs itself right after the
view has written the job and before the key's answer is stored (api/idempotency.py): no
cleanup, no rollback sent, no answer. Because the key, the job and the answer are one
transaction, that crash commits none of them; when the view's work committed on its own
(the three transactions of before), the job stayed without its key, and the retry made a
second one.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.idempotency.models import IdempotencyKey
from tests.api.helpers import SEED_BODY, job_count
from tests.support import Tenant, make_tenant, running_api, wait_until

pytestmark = pytest.mark.every_database

FAILPOINT = "idempotency.before_store"


def key_count(tenant: Tenant) -> int:
    with session_scope() as session:
        count = session.scalar(
            select(func.count())
            .select_from(IdempotencyKey)
            .where(IdempotencyKey.organisation_id == tenant.org_id)
        )
    return count or 0


def healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def trigger(base_url: str, tenant: Tenant) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/jobs/trigger",
        headers={**tenant.headers(), "Idempotency-Key": "crash-1"},
        json=SEED_BODY,
        timeout=30,
    )


def test_a_process_killed_before_the_answer_is_stored_leaves_one_job_after_the_retry(
    tmp_path: Path,
) -> None:
    tenant = make_tenant(n_queries=1)
    dying, retrying = tmp_path / "dying", tmp_path / "retrying"
    dying.mkdir()
    retrying.mkdir()
    with running_api(dying, JOBYARD_FAILPOINTS=FAILPOINT) as base_url:
        with pytest.raises(httpx.TransportError):  # the worker died: no answer at all
            trigger(base_url, tenant)
        # Its master has booted a new worker (stopped while it boots, it would take
        # gunicorn's graceful timeout to go).
        wait_until(lambda: healthy(base_url), 30, "a new API worker")
        log = (dying / "web.log").read_text()
    assert "SIGKILL" in log or "signal 9" in log, log[-2000:]
    assert job_count(tenant.org_id) == 0
    assert key_count(tenant) == 0
    # The client retries; another process answers.
    with running_api(retrying) as base_url:
        first = trigger(base_url, tenant)
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        again = trigger(base_url, tenant)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert job_count(tenant.org_id) == 1
    assert key_count(tenant) == 1
