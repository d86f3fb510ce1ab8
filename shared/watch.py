"""``jobyard watch JOB_ID``: follow a job's live progress stream with a progress bar.

It reads ``GET /api/jobs/{id}/events`` (server-sent events) over HTTP with the user's
credentials (``JOBYARD_URL``, and ``JOBYARD_API_KEY`` or ``JOBYARD_TOKEN``, as
``var/demo.env`` exports them) and draws done/total, retrying, failed, rate and ETA with
``rich``. It reconnects when the server ends a stream early (its ``timeout`` event, a
restart) and returns the job's final counters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

RECONNECTS = 5  # in a row without an event, before giving up


class WatchError(Exception):
    """The stream could not be followed (refused credentials, unknown job, no server)."""


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Server-sent events from a stream's lines (comments, ``retry`` and ``id`` skipped)."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield Event(name, json.loads("\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


class RateColumn(ProgressColumn):
    """Executions finished per second (rich's moving average over recent updates)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  -  /s" if speed is None else f"{speed:6.1f}/s")


def credentials(api_key: str | None, token: str | None) -> dict[str, str]:
    if api_key:
        return {"x-api-key": api_key}
    if token:
        return {"Authorization": f"Bearer {token}"}
    raise WatchError("no credentials: set JOBYARD_API_KEY or JOBYARD_TOKEN (`source var/demo.env`)")


def _stream(client: httpx.Client, url: str, headers: dict[str, str]) -> Iterator[Event]:
    with client.stream("GET", url, headers={**headers, "Accept": "text/event-stream"}) as reply:
        if reply.status_code != 200:
            reply.read()
            try:
                message = reply.json().get("message")
            except ValueError:
                message = reply.text[:200]
            raise WatchError(f"{reply.status_code} from {url}: {message}")
        yield from parse_events(reply.iter_lines())


def watch(
    base_url: str, job_id: str, headers: dict[str, str], console: Console | None = None
) -> dict[str, Any]:
    """Follow the job until it ends; returns its final counters (the ``end`` event)."""
    url = f"{base_url.rstrip('/')}/api/jobs/{job_id}/events"
    console = console or Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.fields[status]:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[yellow]{task.fields[retrying]} retrying"),
        TextColumn("[red]{task.fields[failed]} failed"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    timeout = httpx.Timeout(10.0, read=None)  # heartbeats keep the stream alive
    failures = 0
    with (
        httpx.Client(timeout=timeout) as client,
        Progress(*columns, console=console, transient=False) as bar,
    ):
        task = bar.add_task(job_id, total=None, status="connecting", retrying=0, failed=0)
        while True:
            try:
                for event in _stream(client, url, headers):
                    failures = 0
                    if event.name not in ("progress", "end"):
                        continue  # "timeout": the server ends long streams; reconnect
                    data = event.data
                    bar.update(
                        task,
                        total=data["totalExecutions"],
                        completed=data["successExecutions"] + data["failedExecutions"],
                        status=data["status"],
                        retrying=data["retryingExecutions"],
                        failed=data["failedExecutions"],
                    )
                    if event.name == "end":
                        return data
            except httpx.TransportError as exc:
                failures += 1
                if failures > RECONNECTS:
                    raise WatchError(f"cannot follow {url}: {exc}") from exc
            time.sleep(min(2.0**failures / 4, 5.0))
