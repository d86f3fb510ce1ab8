"""The issue's scenario against the API as deployed: gunicorn with deploy/gunicorn.conf.py,
5 processes x 4 threads. One tenant sends 65 POST /databases at once at a server that
accepts and never answers. Beyond the organisation's bound (2) they are refused at once
(429); the checks that run hang until their deadline (400). While they hang, another
tenant's request and /healthz answer within 1 s; every request ends, and the API spends
at most the deadline on each."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.fakes.tcp import SilentServer
from tests.support import Tenant, json_log_lines, running_api, wait_until

REQUESTS = 65
BOUND = 2  # JOBYARD_SOURCE_CHECKS_PER_ORGANISATION's default
# Longer than the default 5 s only to leave a window for the probes after the burst of
# 63 refusals, which takes a few seconds of CPU on a busy 2-core test machine.
DEADLINE = 8.0


def test_65_hanging_checks_of_one_tenant_leave_the_api_answering(
    tmp_path: Path, tenant: Tenant, other_tenant: Tenant
) -> None:
    answers: list[tuple[int, float, str | None]] = []
    probes: list[tuple[str, int, float]] = []
    with (
        SilentServer() as server,
        running_api(
            tmp_path,
            WEB_CONCURRENCY=5,
            JOBYARD_ALLOW_PRIVATE_URLS="true",
            JOBYARD_SOURCE_CHECK_SECONDS=DEADLINE,
        ) as base,
    ):
        url = f"mysql+pymysql://root@127.0.0.1:{server.port}/x"
        ready = threading.Barrier(REQUESTS + 1)

        def check(n: int) -> None:
            ready.wait()
            sent = time.monotonic()
            response = httpx.post(
                f"{base}/databases",
                headers=tenant.headers(),
                json={"name": f"db{n}", "url": url},
                timeout=60,
            )
            elapsed = time.monotonic() - sent
            answers.append((response.status_code, elapsed, response.headers.get("Retry-After")))

        threads = [threading.Thread(target=check, args=(n,)) for n in range(REQUESTS)]
        for thread in threads:
            thread.start()
        ready.wait()
        sent = time.monotonic()
        # The refusals come at once (without the bound they would wait for the checks).
        wait_until(lambda: len(answers) >= REQUESTS - BOUND, DEADLINE - 1, "the refusals")
        refused_after = time.monotonic() - sent
        assert server.connections == BOUND and all(a[0] == 429 for a in answers), answers
        # While the organisation's checks hang: another tenant, and the health check.
        while len(answers) < REQUESTS or len(probes) < 4:
            for path, headers in (("/databases", other_tenant.headers()), ("/healthz", {})):
                started = time.monotonic()
                status = httpx.get(f"{base}{path}", headers=headers, timeout=10).status_code
                probes.append((path, status, time.monotonic() - started))
            time.sleep(0.2)
            assert time.monotonic() - sent < DEADLINE + 30, "the checks never ended"
        for thread in threads:
            thread.join(30)
        ended_after = time.monotonic() - sent
    slow = [p for p in probes if p[1] != 200 or p[2] >= 1.0]
    assert not slow, (slow, probes)
    statuses = [status for status, _, _ in answers]
    assert sorted(statuses) == [400] * BOUND + [429] * (REQUESTS - BOUND), answers
    assert all(int(retry or 0) > 0 for status, _, retry in answers if status == 429)
    assert server.connections == BOUND
    # What the API spent on each request (its own log, from when a thread took it): a
    # refusal, what any request takes under this burst on these CPUs; a check, its
    # deadline and no more beyond that.
    handled: dict[int, list[float]] = {400: [], 429: []}
    for record in json_log_lines((tmp_path / "web.log").read_bytes()):
        if record.get("path") == "/databases" and record.get("method") == "POST":
            handled[record["status"]].append(record["duration_ms"] / 1000)
    assert len(handled[400]) == BOUND and len(handled[429]) == REQUESTS - BOUND, handled
    assert max(handled[400]) < DEADLINE + max(handled[429]) + 1, handled
    assert ended_after < DEADLINE + 5, (refused_after, ended_after)
    print(
        f"refusals answered within {refused_after:.2f} s; all ended within {ended_after:.2f} s;"
        f" slowest probe {max(p[2] for p in probes):.3f} s over {len(probes)} probes;"
        f" checks handled in {max(handled[400]):.2f} s, refusals in {max(handled[429]):.2f} s"
    )
