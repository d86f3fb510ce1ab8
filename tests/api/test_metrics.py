"""The API's request metrics and its /metrics, served on the metrics listener only."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from shared.settings import reset_settings_cache
from tests.metrics_support import has, samples, value
from tests.metrics_support import scrape as scrape_port
from tests.support import Tenant, running_api


@pytest.fixture
def metrics_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A socket listening where JOBYARD_METRICS_PORT says: gunicorn hands the app the
    accepted socket of each request, whose local port is this one."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    monkeypatch.setenv("JOBYARD_METRICS_PORT", str(sock.getsockname()[1]))
    reset_settings_cache()
    yield sock
    sock.close()
    monkeypatch.undo()
    reset_settings_cache()


def scrape(client: FlaskClient, sock: socket.socket) -> str:
    response = client.get("/metrics", environ_overrides={"gunicorn.socket": sock})
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def test_requests_are_counted_per_route_and_status_and_jobs_per_family(
    client: FlaskClient, tenant: Tenant, metrics_socket: socket.socket
) -> None:
    before = scrape(client, metrics_socket)
    route = "/api/jobs/<uuid:job_id>"
    missing = [str(uuid.uuid4()) for _ in range(3)]
    for job_id in missing:
        assert client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).status_code == 404
    created = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": ["gpt-4.1-mini"], "executionCount": 1},
    )
    assert created.status_code == 201, created.json
    job_id = created.json["id"]
    assert client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).status_code == 200
    assert client.get("/healthz").status_code == 200

    after = scrape(client, metrics_socket)
    requests = "jobyard_http_requests_total"

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    common = {"family": "mentionlab", "method": "GET", "route": route}
    assert delta(requests, status="404", **common) == 3
    assert delta(requests, status="200", **common) == 1
    assert delta(requests, family="mentionlab", route="/api/jobs/trigger", status="201") == 1
    assert delta(requests, family="none", route="/healthz", status="200") == 1
    # The latency histogram, per route and status class: every request in one bucket.
    latency = "jobyard_http_request_duration_seconds"
    assert delta(f"{latency}_count", status_class="4xx", **common) == 3
    assert delta(f"{latency}_count", status_class="2xx", **common) == 1
    assert delta(f"{latency}_bucket", status_class="4xx", le="+Inf", **common) == 3
    assert delta(f"{latency}_sum", status_class="4xx", **common) > 0
    # The URL rule, never the path: no series names a resource.
    assert not any(job_id in labels.get("route", "") for _, labels, _ in samples(after))
    assert not any(m in after for m in missing)
    assert delta("jobyard_jobs_accepted_total", family="mentionlab") == 1


def test_unmatched_paths_share_one_route_label(
    client: FlaskClient, metrics_socket: socket.socket
) -> None:
    before = scrape(client, metrics_socket)
    for n in range(3):
        assert client.get(f"/no-such-thing-{n}").status_code == 404
    after = scrape(client, metrics_socket)
    name = "jobyard_http_requests_total"
    labels = {"route": "<unmatched>", "status": "404"}
    assert value(after, name, **labels) - value(before, name, **labels) == 3
    assert "no-such-thing" not in after


def test_metrics_are_not_served_on_the_public_port(client: FlaskClient) -> None:
    """Without the metrics listener's socket (the public port): a 404, nothing leaks."""
    response = client.get("/metrics")
    assert response.status_code == 404
    assert b"jobyard_http_requests" not in response.data


def test_another_listener_is_not_the_metrics_one(
    client: FlaskClient, metrics_socket: socket.socket
) -> None:
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    try:
        response = client.get("/metrics", environ_overrides={"gunicorn.socket": other})
        assert response.status_code == 404
    finally:
        other.close()


def test_the_metrics_listener_answers_nothing_but_metrics(
    client: FlaskClient, metrics_socket: socket.socket
) -> None:
    assert client.get("/healthz").status_code == 200
    response = client.get("/healthz", environ_overrides={"gunicorn.socket": metrics_socket})
    assert response.status_code == 404
    assert has(scrape(client, metrics_socket), "jobyard_http_requests_total")


def test_gunicorn_serves_the_sum_of_its_workers_on_the_metrics_listener_only(
    tmp_path: Path,
) -> None:
    """The Procfile's web line with two worker processes: requests spread over both are
    all counted on the metrics listener (multiprocess mode), which the public port is not."""
    public, private = free_port(), free_port()
    log_path = tmp_path / "web.log"
    metrics_dir = tmp_path / "api-metrics"
    with running_api(
        tmp_path,
        port=public,
        METRICS_BIND=f"127.0.0.1:{private}",
        JOBYARD_METRICS_PORT=private,
        WEB_CONCURRENCY=2,
        API_METRICS_DIR=metrics_dir,
        PROMETHEUS_MULTIPROC_DIR=None,
    ):
        name, labels = "jobyard_http_requests_total", {"route": "/healthz"}
        before = value(scrape_port(private), name, **labels)
        # New connections until both workers have answered some (each process writes
        # its counters to its own counter_<pid>.db file).
        sent = 0
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:
            assert sent < 2000, "one gunicorn worker took every connection"
            urllib.request.urlopen(f"http://127.0.0.1:{public}/healthz", timeout=5).close()
            sent += 1
        for _ in range(10):  # whichever worker answers the scrape: the same sum
            assert value(scrape_port(private), name, **labels) - before == sent
        pids = {m for m in re.findall(r"Booting worker with pid: (\d+)", log_path.read_text())}
        assert len(pids) == 2
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{public}/metrics", timeout=5)
        assert refused.value.code == 404
        refused.value.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
