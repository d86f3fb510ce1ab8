"""The Smart DB seed's examples, verbatim but for the auth header, against the running
system on http://127.0.0.1:8000: the API as the Procfile runs it (gunicorn), a real
worker, and the demo that ``make up`` seeds (``orders_db.orders``, ``orders_kb``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, running_api, running_worker, wait_until

SMARTDB = "http://127.0.0.1:8000"

# The seed's examples (smartdb-jobs-create.txt), verbatim; AUTH marks where the auth
# header is added, the only change.
CURL = """curl -X POST "http://127.0.0.1:8000/jobs/create" \\
-H "Content-Type: application/json" \\
AUTH-d '{
"job_name": "sync_orders",
"source_table": "orders_db.orders",
"kb_name": "orders_kb",
"content_columns": ["product", "description"],
"filter_column": "created_at",
"interval": "10 MINUTES",
"start_time": "2025-06-19T18:00:00",
"end_time": "2025-06-20T18:00:00"
}'"""

PYTHON = """import requests
import json
url = "http://127.0.0.1:8000/jobs/create"
payload = {
"job_name": "sync_orders",
"source_table": "orders_db.orders",
"kb_name": "orders_kb",
"content_columns": ["product", "description"],
"filter_column": "created_at",
"interval": "10 MINUTES",
"start_time": "2025-06-19T18:00:00",
"end_time": "2025-06-20T18:00:00"
}
response = requests.post(url, json=payload AUTH)
print(response.json())"""

JAVASCRIPT = """const response = await fetch('http://127.0.0.1:8000/jobs/create', {
method: 'POST',
headers: {
'Content-Type': 'application/json', AUTH
},
body: JSON.stringify({
job_name: 'sync_orders',
source_table: 'orders_db.orders',
kb_name: 'orders_kb',
content_columns: ['product', 'description'],
filter_column: 'created_at',
interval: '10 MINUTES',
start_time: '2025-06-19T18:00:00',
end_time: '2025-06-20T18:00:00'
})
});
const data = await response.json();
console.log(data);"""


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[dict[str, str]]:
    """``jobyard seed-demo`` as ``make up`` runs it, then the API on port 8000."""
    if not port_is_free(8000):
        pytest.fail("port 8000 is taken: the seed's examples need it")
    env = {
        **os.environ,
        "JOBYARD_ALLOW_PRIVATE_URLS": "true",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    env_file = tmp_path / "var" / "demo.env"
    seeded = subprocess.run(
        [sys.executable, "-m", "shared.cli", "seed-demo", "--env-file", str(env_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(seeded.stdout)["knowledge_bases"] == "orders_db, orders_kb"
    credentials = dict(
        line.removeprefix("export ").split("=", 1)
        for line in env_file.read_text().splitlines()
        if line.startswith("export ")
    )
    # Gunicorn's config binds PORT (any free one) and SMARTDB_PORT itself, as under
    # `make up`; no metrics listener: 9100 may be taken by another gunicorn here.
    with running_api(
        tmp_path,
        port=8000,
        BIND=None,
        PORT=0,
        SMARTDB_PORT=8000,
        JOBYARD_METRICS_PORT=0,
        JOBYARD_ALLOW_PRIVATE_URLS="true",
    ):
        yield {"key": credentials["JOBYARD_API_KEY"].strip("'")}


def call(method: str, path: str, key: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method, f"{SMARTDB}{path}", headers={"x-api-key": key}, timeout=30, **kwargs
    )
    return response.status_code, response.json()


def created(answer: dict[str, Any]) -> None:
    assert answer["success"] is True and answer["message"] == "Job created successfully", answer
    assert answer["data"]["job_name"] == "sync_orders"
    # The seed's window (June 2025) is over: no slot is left to run on its own.
    assert (answer["data"]["status"], answer["data"]["next_run"]) == ("completed", None)


def test_the_seeds_examples_work_verbatim_and_the_first_run_finds_the_products(
    demo: dict[str, str], tmp_path: Path, empty_broker: object
) -> None:
    key = demo["key"]
    curl = CURL.replace("AUTH", f'-H "x-api-key: {key}" \\\n')
    answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True)
    created(json.loads(answer.stdout))

    with running_worker(tmp_path, 4, JOBYARD_ALLOW_PRIVATE_URLS="true"):
        status, started = call("POST", "/jobs/sync_orders/run", key)
        assert status == 202, started
        wait_until(
            lambda: (
                call("GET", "/jobs/sync_orders/history", key)[1]["data"][0]["status"] != "running"
            ),
            60,
            "the first run to end",
        )
    _, history = call("GET", "/jobs/sync_orders/history", key)
    run = history["data"][0]
    assert (run["status"], run["rows_read"], run["rows_written"], run["error"]) == (
        "completed",
        300,
        300,
        None,
    )
    status, found = call(
        "POST", "/knowledge_bases/orders_kb/search", key, json={"query": "espresso maker"}
    )
    assert status == 200, found
    assert found["data"][0]["chunk_content"].startswith("Espresso machine"), found["data"][:3]
    assert len(found["data"]) == 10  # the default limit

    # The Python example, then the JavaScript one (the name must be free each time).
    assert call("DELETE", "/jobs/sync_orders", key)[0] == 200
    python = PYTHON.replace(" AUTH", f", headers={{'x-api-key': '{key}'}}")
    answer = subprocess.run(
        [sys.executable, "-c", python], capture_output=True, text=True, check=True
    )
    printed = answer.stdout.strip()
    assert "'success': True" in printed and "'job_name': 'sync_orders'" in printed, printed
    node = shutil.which("node")
    if node is None:
        return
    assert call("DELETE", "/jobs/sync_orders", key)[0] == 200
    javascript = JAVASCRIPT.replace(" AUTH", f" 'x-api-key': '{key}',")
    answer = subprocess.run(
        [node, "--input-type=module", "-e", javascript], capture_output=True, text=True, check=True
    )
    assert "success: true" in answer.stdout and "job_name: 'sync_orders'" in answer.stdout
