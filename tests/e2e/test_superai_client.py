"""The official super.AI Python client (``superai`` 0.2.1 from PyPI), unchanged, against the
API as deployed (gunicorn) and a real worker: create (inline, parked, with a callback,
from a file on a loopback server), fetch, response, cancel, review, batches and lists
with every filter. It runs in a virtualenv of its own (``make clients``: it pulls pandas,
scikit-learn, boto3...), never in the project's; the script it runs is
``superai_client_driver.py``. Offline: the client's one reach off the machine (AWS, when
it loads its settings) is turned off with boto's ``AWS_EC2_METADATA_DISABLED``, and the
script refuses and records any other.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, Tenant, running_api, running_worker

pytestmark = pytest.mark.slow

CLIENT_PYTHON = ROOT / ".venv-clients" / "superai" / "bin" / "python"
DRIVER = Path(__file__).with_name("superai_client_driver.py")
FILE_INPUTS = [{"text": f"from the file {i}"} for i in range(4)]


class Loopback:
    """An HTTP server on 127.0.0.1: serves the inputs file, records the callbacks."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(FILE_INPUTS).encode()
                self.send_response(200 if self.path == "/inputs.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.callbacks.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Loopback:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def client_python() -> Path:
    if not CLIENT_PYTHON.exists():
        pytest.skip("the super.AI client's virtualenv is missing: run `make clients`")
    return CLIENT_PYTHON


def client_environment(home: Path, base_url: str) -> dict[str, str]:
    """A clean environment: a HOME of its own (the client writes ~/.superai), its base URL,
    and nothing that would send it off the machine (no AWS credentials or proxies)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SUPERAI_BASE_URL": f"{base_url}/v1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONWARNINGS": "ignore",
    }


def test_the_official_client_works_unchanged(
    tenant: Tenant, tmp_path: Path, client_python: Path
) -> None:
    settings = {"JOBYARD_ALLOW_PRIVATE_URLS": "true"}  # the file and the receiver: loopback
    with (
        Loopback() as loopback,
        running_api(tmp_path, **settings) as base_url,
        running_worker(tmp_path, **settings),
    ):
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps(
                {
                    "api_key": tenant.api_key,
                    "app_id": str(tenant.project_id),
                    "file_url": f"{loopback.url}/inputs.json",
                    "callback_url": f"{loopback.url}/callbacks",
                }
            )
        )
        out = tmp_path / "report.json"
        (tmp_path / "home").mkdir()
        run = subprocess.run(
            [str(client_python), str(DRIVER), str(config), str(out)],
            env=client_environment(tmp_path / "home", base_url),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        report = json.loads(out.read_text())
        deadline = time.monotonic() + 30
        while not loopback.callbacks and time.monotonic() < deadline:
            time.sleep(0.2)

    assert report["off_machine"] == []
    assert report["base_url"] == f"{base_url}/v1"

    def answer(name: str) -> Any:
        assert "answer" in report[name], (name, report[name])
        return report[name]["answer"]

    def error(name: str) -> tuple[int, str]:
        assert "error" in report[name], (name, report[name])
        return report[name]["status"], report[name]["message"]

    # Create, and read at once.
    single = answer("create_single")
    assert single["message"] == "Jobs accepted" and single["uuid"] and single["batchId"]
    at_once = answer("fetch_at_once")
    assert at_once["uuid"] == single["uuid"] and at_once["input"] == {"text": "one"}
    assert at_once["status"] in ("SCHEDULED", "IN_PROGRESS", "COMPLETED")
    assert answer("response_at_once")["uuid"] == single["uuid"]

    # Parked, canceled, and a second cancel refused.
    assert answer("fetch_parked")["status"] == "PENDING"
    assert answer("cancel_parked")["status"] == "CANCELED"
    status, message = error("cancel_again")
    assert status == 409 and "already finished" in message

    # The client's worker= is refused by name.
    status, message = error("create_with_worker")
    assert status == 400 and "labeler: not supported" in message

    # Done: its response, and its review.
    assert answer("fetch_done")["status"] == "COMPLETED"
    done = answer("response_done")
    assert done["status"] == "COMPLETED" and done["response"] and done["review"] is None
    assert answer("review_correct")["review"]["correct"] is False
    reviewed = answer("response_reviewed")
    assert reviewed["review"]["correct"] is False
    assert reviewed["review"]["response"] == {"text": "better"}
    assert reviewed["response"] == done["response"]  # the processor's output is kept

    # The callback's data point, its metadata, and the callback itself.
    called_back = answer("fetch_called_back")
    assert called_back["metadata"] == {"id": "mine-1"}
    assert called_back["callbackUrl"] == f"{loopback.url}/callbacks"
    assert any(c.get("uuid") == called_back["uuid"] for c in loopback.callbacks)

    # Batches: the file's, and the app's list.
    from_file = answer("batch_from_file")
    assert (from_file["state"], from_file["total"], from_file["completedCount"]) == (
        "COMPLETED",
        len(FILE_INPUTS),
        len(FILE_INPUTS),
    )
    assert "uuid" not in answer("create_from_file")
    batches = answer("batches")
    assert from_file["batchId"] in {b["batchId"] for b in batches["batches"]}

    # Lists: every data point (1 + 1 parked + 1 called back + the file's), then filters.
    everything = answer("list_all")
    assert everything["total"] == 3 + len(FILE_INPUTS)
    assert answer("list_completed_2030")["jobs"] == []
    finished = answer("list_completed_since_start")["jobs"]
    assert single["uuid"] in {j["uuid"] for j in finished}
    assert all(j["completed"] for j in finished)
    assert answer("list_completed_until_start")["jobs"] == []
    assert answer("list_created_2030")["jobs"] == []
    assert answer("list_created_until_2030")["total"] == everything["total"]
    canceled = answer("list_canceled")["jobs"]
    assert [j["uuid"] for j in canceled] == [answer("create_parked")["uuid"]]
    page = answer("list_page")
    assert (page["page"], page["size"], len(page["jobs"])) == (1, 2, 2)
    assert len(answer("get_all_jobs")) == everything["total"]

    # Not there, and a key that is not one.
    status, _ = error("fetch_unknown")
    assert status == 404
    status, message = error("fetch_wrong_key")
    assert (status, message) == (401, "Invalid API key")
