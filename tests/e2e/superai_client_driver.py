"""Drive the official super.AI Python client (``superai`` 0.2.1, unchanged) against jobyard.

Run by ``tests/e2e/test_superai_client.py`` with the client's own interpreter
(``.venv-clients/superai``, built by ``make clients``): it imports nothing of jobyard.
The client is configured as its README says: the API key given to ``Client``, the base
URL from the environment (``SUPERAI_BASE_URL``, its settings' prefix), its settings
folder in a temporary HOME. Every method of the client's jobs API that maps to an
endpoint here is called; what each answered (or the error it raised, with the status)
goes to a JSON file for the test to check.

The client reaches for AWS when it loads its settings (a Secrets Manager look-up through
boto3, which asks the EC2 metadata address for credentials); the test turns that off with
boto's own ``AWS_EC2_METADATA_DISABLED``. In case anything else tries, every connection
and name look-up off this machine is refused here and recorded, and the test fails on it.

Usage: ``python superai_client_driver.py CONFIG_JSON OUT_JSON``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
off_machine: list[str] = []


def _is_loopback(host: Any) -> bool:
    if not isinstance(host, str):
        return True  # a Unix socket path
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard_network() -> None:
    """Refuse (and record) every connection and name look-up off this machine."""
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def checked(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if not _is_loopback(host):
            off_machine.append(f"connect {address!r}")
            raise OSError(f"refused by the test: {address!r} is off this machine")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        checked(address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        checked(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_loopback(name):
            off_machine.append(f"getaddrinfo {name!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"refused by the test: {name!r}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo


def call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """What a client method answered, or the error it raised (with the HTTP status)."""
    try:
        return {"answer": method(*args, **kwargs)}
    except Exception as exc:  # the client's errors carry error_code and message
        return {
            "error": type(exc).__name__,
            "status": getattr(exc, "error_code", None),
            "message": getattr(exc, "message", str(exc)),
        }


def until(read: Callable[[], dict[str, Any]], done: Callable[[Any], bool], seconds: float) -> Any:
    """Call ``read`` until its answer is ``done`` (or the time is up: the last answer)."""
    deadline = time.monotonic() + seconds
    while True:
        result = read()
        if ("answer" in result and done(result["answer"])) or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def main(config_path: str, out_path: str) -> None:
    _guard_network()
    import superai as ai  # after the guard: its settings load on import

    with open(config_path) as source:
        config = json.load(source)
    app = config["app_id"]
    client = ai.Client(config["api_key"])
    report: dict[str, Any] = {"base_url": client.base_url}
    started = datetime.now(UTC) - timedelta(seconds=2)

    # Create, inline: the one input's uuid is readable at once.
    single = call(client.create_jobs, app, inputs=[{"text": "one"}])
    report["create_single"] = single
    uuid_one = single["answer"]["uuid"]
    report["fetch_at_once"] = call(client.fetch_job, uuid_one)
    report["response_at_once"] = call(client.get_job_response, uuid_one)

    # Parked, then canceled (twice: the second is a conflict).
    parked = call(client.create_jobs, app, inputs=[{"text": "parked"}], parked=True)
    report["create_parked"] = parked
    uuid_parked = parked["answer"]["uuid"]
    report["fetch_parked"] = call(client.fetch_job, uuid_parked)
    report["cancel_parked"] = call(client.cancel_job, uuid_parked)
    report["cancel_again"] = call(client.cancel_job, uuid_parked)

    # With a callback and metadata; from a file; with a worker (not supported here).
    report["create_with_callback"] = call(
        client.create_jobs,
        app,
        callback_url=config["callback_url"],
        inputs=[{"text": "called back"}],
        metadata={"id": "mine-1"},
    )
    report["create_from_file"] = call(client.create_jobs, app, inputs_file_url=config["file_url"])
    report["create_with_worker"] = call(
        client.create_jobs, app, inputs=[{"text": "x"}], worker="crowd"
    )

    # Done: the data point, its response, its review.
    report["fetch_done"] = until(
        lambda: call(client.fetch_job, uuid_one), lambda a: a["status"] == "COMPLETED", 60
    )
    report["response_done"] = call(client.get_job_response, uuid_one)
    report["review_correct"] = call(client.review_job, uuid_one, correct=False)
    report["review_response"] = call(client.review_job, uuid_one, response={"text": "better"})
    report["response_reviewed"] = call(client.get_job_response, uuid_one)

    # Batches.
    file_batch = report["create_from_file"]["answer"]["batchId"]
    report["batch_from_file"] = until(
        lambda: call(client.fetch_batch_job, app, file_batch),
        lambda a: a["state"] != "IN_PROGRESS",
        60,
    )
    report["batches"] = call(client.fetch_batches_job, app)
    callback_uuid = report["create_with_callback"]["answer"]["uuid"]
    report["fetch_called_back"] = until(
        lambda: call(client.fetch_job, callback_uuid), lambda a: a["status"] == "COMPLETED", 60
    )

    # Lists, with each filter.
    future = datetime(2030, 1, 1, tzinfo=UTC)
    report["list_all"] = call(client.list_jobs, app, size=100)
    report["list_completed_2030"] = call(client.list_jobs, app, completed_start_date=future)
    report["list_completed_since_start"] = call(
        client.list_jobs, app, size=100, completed_start_date=started
    )
    report["list_completed_until_start"] = call(client.list_jobs, app, completed_end_date=started)
    report["list_created_2030"] = call(client.list_jobs, app, created_start_date=future)
    report["list_created_until_2030"] = call(
        client.list_jobs, app, size=100, created_end_date=future
    )
    report["list_canceled"] = call(client.list_jobs, app, status_in=["CANCELED"])
    report["list_page"] = call(client.list_jobs, app, page=1, size=2, order_by="desc")
    report["get_all_jobs"] = call(lambda: list(client.get_all_jobs(app)))

    # What is not there, and a wrong key.
    report["fetch_unknown"] = call(client.fetch_job, str(uuid.uuid4()))
    report["fetch_wrong_key"] = call(ai.Client("not-a-key").fetch_job, uuid_one)

    report["off_machine"] = off_machine
    with open(out_path, "w") as out:
        json.dump(report, out, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
