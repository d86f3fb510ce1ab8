"""The dashboard walked in headless chromium (Debian's, driven by Playwright; the network
cut to loopback) against the real API (gunicorn) and real workers.

The walk: log in with the organisation's API key; open a job whose executions all
failed, open one failed execution and read its error; retry the failed ones (the worker
runs them) and watch the job end completed on the page; open a running job and see its
counters move live; a page of another origin posts the cancel form without the CSRF token and is
refused; cancel it. Another organisation's session, beside it, sees none of it.

The failed job is made before the worker starts, by the engine's own claim and finish
with the simulated provider's failure (what a worker whose provider fails every call
records): a second worker process, started and stopped for it, took 20 s of the test.

``JOBYARD_UPDATE_SCREENSHOTS=1`` writes the running job's page to
docs/images/dashboard-job.png (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select, update

from shared.db import connection_scope, session_scope
from shared.engine.claim import claim_group
from shared.engine.fanout import fan_out_job
from shared.engine.finish import finish_batch
from shared.engine.outcomes import Outcome
from shared.models import Execution, Job
from tests.browser import (
    CHROMIUM_FLAGS,
    chromium_path,  # noqa: F401 - the chromium fixture
    serve_page,
)
from tests.support import ROOT, Tenant, make_tenant, running_api, running_worker, wait_for_job

SCREENSHOT = ROOT / "docs" / "images" / "dashboard-job.png"
API = {"JOBYARD_SSE_HEARTBEAT_SECONDS": 600}
PROVIDER_FAILURE = "simulated provider failure (HTTP 503)"
# Slow calls, few in flight: the running job takes seconds, long enough to be watched.
SLOW_WORKER = {
    "JOBYARD_SIMULATED_LATENCY_MS": 150,
    "JOBYARD_GROUP_SIZE": 2,
    "JOBYARD_WORKER_CAPACITY": 4,
}
SMALL_RUN = {"aiModels": ["sonar"], "executionCount": 1}  # three executions
LONG_RUN = {"aiModels": ["gpt-4.1-mini", "claude-haiku-4-5"], "executionCount": 20}  # 120


@contextmanager
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium,
            args=list(CHROMIUM_FLAGS),
        )
        try:
            yield launched
        finally:
            launched.close()


ATTACK = """<!DOCTYPE html><html><body>
<form id="f" method="post" action="{action}"><input type="hidden" name="x" value="1"></form>
<script>document.getElementById("f").submit();</script></body></html>"""


def attacker_page(action: str) -> AbstractContextManager[str]:
    """A page on its own loopback port (another origin) that posts a form to ``action``."""
    return serve_page(ATTACK.format(action=action))


def trigger(base_url: str, tenant: Tenant, body: dict[str, object]) -> str:
    reply = httpx.post(f"{base_url}/api/jobs/trigger", headers=tenant.headers(), json=body)
    assert reply.status_code == 201, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def log_in(page: Page, base_url: str, tenant: Tenant) -> None:
    page.goto(f"{base_url}/ui/")
    expect(page.locator("h1")).to_have_text("Log in")  # no session: the login form
    page.fill("input[name=credential]", tenant.api_key)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")


def fail_every_execution(job_id: str) -> None:
    """Write the job's executions and fail each one's attempt as the provider would."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(max_attempts=1))
    fan_out_job(uuid.UUID(job_id))
    with session_scope() as session:
        ids = list(
            session.scalars(select(Execution.id).where(Execution.job_id == uuid.UUID(job_id)))
        )
    with connection_scope() as connection:
        claims = claim_group(connection, ids, "test-provider")
    with connection_scope() as connection:
        finish_batch(
            connection, [(c, Outcome.failed(PROVIDER_FAILURE, retryable=True)) for c in claims]
        )
    assert wait_for_job(job_id, timeout=1).status == "failed"


def counter(page: Page, name: str) -> int:
    return int(page.inner_text(f"#counter-{name}"))


def test_the_dashboard_walk(chromium: str, tmp_path: Path) -> None:
    tenant = make_tenant(n_queries=3)
    stranger = make_tenant(name="Stranger")
    with running_api(tmp_path, **API) as base_url:
        failed_job = trigger(base_url, tenant, SMALL_RUN)
        fail_every_execution(failed_job)
        with running_worker(tmp_path, concurrency=2, **SLOW_WORKER), browser(chromium) as chrome:
            page = chrome.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(15_000)
            log_in(page, base_url, tenant)
            row = page.locator(f"tr[data-job='{failed_job}']")
            expect(row).to_contain_text("failed")

            # The failed job: one failed execution, its error; then retry the failed ones.
            row.locator("a").click()
            expect(page.locator("#job-status")).to_have_text("failed")
            assert counter(page, "failed") == 3
            page.click("#show-failed")
            page.locator("tr.execution.failed a").first.click()
            expect(page.locator("#execution-status")).to_have_text("failed")
            expect(page.locator("#execution-error")).to_contain_text("simulated provider failure")
            page.go_back()
            page.click("#retry-failed")
            expect(page.locator(".flash")).to_contain_text("Retrying the failed executions")
            # The live counters follow the retried executions to the end.
            expect(page.locator("#job-status")).to_have_text("completed")
            expect(page.locator("#counter-success")).to_have_text("3")
            expect(page.locator("#counter-failed")).to_have_text("0")

            # A running job: its counters move on the page, then it is canceled.
            running = trigger(base_url, tenant, LONG_RUN)
            page.goto(f"{base_url}/ui/jobs/{running}")
            expect(page.locator("#live")).to_have_text("live")
            first = counter(page, "success")
            expect(page.locator("#counter-success")).not_to_have_text(str(first))
            moved = counter(page, "success")
            assert first < moved < 120, (first, moved)
            expect(page.locator("#counter-success")).not_to_have_text(str(moved))
            # The picture: the page again, now that its executions are written.
            page.reload()
            expect(page.locator("#live")).to_have_text("live")
            expect(page.locator("tr.execution").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "dashboard-job.png"), full_page=False)
            # A page of another origin posts the cancel form in the logged-in browser:
            # the cookie goes along (127.0.0.1 is the same site), the CSRF token cannot.
            with attacker_page(f"{base_url}/ui/jobs/{running}/cancel") as evil:
                attack = page.context.new_page()  # the logged-in browser
                with attack.expect_navigation(url=f"**/ui/jobs/{running}/cancel"):
                    attack.goto(evil)
                expect(attack.locator("#error-message")).to_contain_text("CSRF token")
                attack.close()
            page.click("#cancel-job")
            expect(page.locator(".flash")).to_contain_text("Canceled")
            expect(page.locator("#job-status")).to_have_text("canceled")
            done = counter(page, "success")
            assert done < 120 and counter(page, "failed") == 120 - done

            # Another organisation's session: none of it.
            other = chrome.new_context().new_page()
            log_in(other, base_url, stranger)
            listing = other.content()
            assert failed_job not in listing and running not in listing
            other.goto(f"{base_url}/ui/jobs/{failed_job}")
            expect(other.locator("h1")).to_have_text("404")
            other.goto(f"{base_url}/ui/jobs/{running}/stream-token")
            expect(other.locator("h1")).to_have_text("404")

    # The rows say what the pages said.
    assert wait_for_job(failed_job, timeout=1).status == "completed"
    assert wait_for_job(running, timeout=1).status == "canceled"
    if os.environ.get("JOBYARD_UPDATE_SCREENSHOTS"):
        shutil.copyfile(tmp_path / "dashboard-job.png", SCREENSHOT)
    assert (tmp_path / "dashboard-job.png").stat().st_size < 300_000
