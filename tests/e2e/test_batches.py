"""Batches end to end: API, a real worker, the simulated provider, and a real HTTP server on
loopback as the inputs-file host (valid, too big, not JSON, slow, and a refused address)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import Tenant, assert_counters_exact, running_worker, wait_for_job

pytestmark = pytest.mark.slow

FILES: dict[str, tuple[bytes, float]] = {  # path → (body, seconds before answering)
    "/inputs.json": (json.dumps([{"text": f"item {i}"} for i in range(12)]).encode(), 0),
    "/big.json": (json.dumps([{"text": "x" * 100} for _ in range(50)]).encode(), 0),
    "/not-json.json": (b"<html>not json</html>", 0),
    "/not-array.json": (b'{"inputs": []}', 0),
    "/slow.json": (b"[]", 5.0),
}


class _FileHost(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body, delay = FILES.get(self.path, (b"", -1))
        if delay < 0:
            self.send_response(404)
            self.end_headers()
            return
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()  # no Content-Length: the cap must hold while streaming
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # the worker may have given up on a slow file: it should

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def file_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FileHost)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def submit(client: FlaskClient, tenant: Tenant, body: dict[str, Any]) -> str:
    headers = {"API-KEY": tenant.api_key}
    response = client.post(f"/v1/apps/{tenant.project_id}/jobs", headers=headers, json=body)
    assert response.status_code == 200, response.json
    batch_id: str = response.json["batchId"]
    return batch_id


def batch(client: FlaskClient, tenant: Tenant, batch_id: str) -> dict[str, Any]:
    headers = {"API-KEY": tenant.api_key}
    answer = client.get(f"/v1/apps/{tenant.project_id}/batches/{batch_id}", headers=headers)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json
    return body


def test_a_batch_runs_each_input_through_the_apps_processor(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    headers = {"API-KEY": tenant.api_key}
    processor = {"promptTemplate": "Summarise: {{ text }}", "model": "sonar", "webSearch": False}
    client.put(f"/v1/apps/{tenant.project_id}/processor", headers=headers, json=processor)
    with running_worker(tmp_path, concurrency=4):
        batch_id = submit(client, tenant, {"inputs": [{"text": f"doc {i}"} for i in range(20)]})
        job = wait_for_job(batch_id, timeout=60)
    assert job.status == "completed" and job.success == 20
    assert_counters_exact(batch_id)
    assert batch(client, tenant, batch_id)["state"] == "COMPLETED"
    points = client.get(
        f"/v1/apps/{tenant.project_id}/jobs?size=100&sortBy=created", headers=headers
    ).json["jobs"]
    assert len(points) == 20 and {p["status"] for p in points} == {"COMPLETED"}
    first = client.get(
        f"/v1/apps/{tenant.project_id}/jobs/{points[0]['id']}/response", headers=headers
    ).json
    # The simulated answer repeats the prompt it was asked: the template was rendered.
    assert "Asked: Summarise: doc 0" in first["response"]
    assert first["simulated"] is True and first["status"] == "COMPLETED"


def test_inputs_from_a_file_url(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, file_host: str
) -> None:
    env = {
        "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # the file host listens on 127.0.0.1
        "JOBYARD_INPUT_FILE_MAX_BYTES": "4000",
        "JOBYARD_INPUT_FILE_TIMEOUT_SECONDS": "1",
    }
    with running_worker(tmp_path, concurrency=4, **env):
        good = submit(client, tenant, {"inputsFileUrl": f"{file_host}/inputs.json"})
        failing = {
            name: submit(client, tenant, {"inputsFileUrl": f"{file_host}/{name}"})
            for name in ("big.json", "not-json.json", "not-array.json", "slow.json", "gone.json")
        }
        ended = {name: wait_for_job(i, timeout=30) for name, i in failing.items()}
        done = wait_for_job(good, timeout=60)
    assert (done.status, done.total, done.success) == ("completed", 12, 12)
    assert_counters_exact(good)
    reasons = {
        "big.json": "larger than",
        "not-json.json": "not JSON",
        "not-array.json": "not a JSON array",
        "slow.json": "within 1 s",
        "gone.json": "HTTP 404",
    }
    for name, job in ended.items():
        assert job.status == "failed" and job.total == 0, (name, job.status)
        answer = batch(client, tenant, failing[name])
        assert answer["state"] == "FAILED"
        assert reasons[name] in answer["error"], (name, answer["error"])


def test_a_private_address_is_refused_unless_allowed(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, file_host: str
) -> None:
    with running_worker(tmp_path, concurrency=2, JOBYARD_ALLOW_PRIVATE_URLS="false"):
        refused = submit(client, tenant, {"inputsFileUrl": f"{file_host}/inputs.json"})
        job = wait_for_job(refused, timeout=30)
    assert job.status == "failed"
    error = batch(client, tenant, refused)["error"]
    assert "non-public address (127.0.0.1)" in error, error
