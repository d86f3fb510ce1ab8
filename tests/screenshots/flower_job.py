"""The README's Flower screenshot (docs/images/flower-job.png), taken again.

Against a running ``make up`` (in another shell)::

    .venv/bin/python -m tests.screenshots.flower_job [--out docs/images/flower-job.png]

It triggers a job with the demo tenant (``var/demo.env``; the environment wins), waits
until the job has ended and Flower has seen its group tasks end, then opens Flower's tasks
page in headless chromium (deploy/scripts/ensure-chromium.sh finds or installs it), types
the job id into its search box as a user would, and saves the page once the table shows
the job's tasks. Flower's tasks page takes no search from its URL, so the browser is
driven over the DevTools protocol (tornado's websocket client: Flower's own dependency).
Nothing leaves the machine: the browser resolves no name but 127.0.0.1.

The committed image was taken so against ``make up`` started with a flaky simulated
provider, so that the job shows retries and a failed group beside its succeeded ones::

    JOBYARD_SIMULATED_FAILURE_RATE=0.25 JOBYARD_MAX_ATTEMPTS=2 JOBYARD_GROUP_SIZE=12 \
        JOBYARD_RETRY_BACKOFF_BASE_SECONDS=0.3 make up
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

import httpx
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.browser import CHROMIUM_FLAGS, find_chromium
from tests.support import ROOT, free_port

WIDTH, HEIGHT = 1400, 900
ZOOM = 0.8


def demo_settings() -> dict[str, str]:
    """``var/demo.env``'s exports, under the environment's values."""
    values: dict[str, str] = {}
    path = ROOT / "var" / "demo.env"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                values[name] = shlex.split(value)[0] if value else ""
    names = ("JOBYARD_URL", "JOBYARD_API_KEY", "JOBYARD_PROJECT_ID", "FLOWER_USER")
    for name in (*names, "FLOWER_PASSWORD"):
        if os.environ.get(name):
            values[name] = os.environ[name]
    missing = [n for n in names if not values.get(n)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run `make up` first (it writes var/demo.env)")
    values.setdefault("FLOWER_URL", f"http://127.0.0.1:{os.environ.get('FLOWER_PORT', '5555')}")
    return values


def run_a_job(settings: dict[str, str]) -> str:
    """Trigger the demo project's queries over three models, three times; wait until the
    job ends."""
    api = settings["JOBYARD_URL"]
    headers = {
        "x-api-key": settings["JOBYARD_API_KEY"],
        "x-project-id": settings["JOBYARD_PROJECT_ID"],
    }
    created = httpx.post(
        f"{api}/api/jobs/trigger",
        headers=headers,
        json={
            "aiModels": ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash"],
            "executionCount": 3,
        },
        timeout=30,
    )
    created.raise_for_status()
    job_id: str = created.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        job = httpx.get(f"{api}/api/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["status"] not in ("pending", "processing"):
            print(f"job {job_id}: {job['status']}", file=sys.stderr)
            return job_id
        if time.monotonic() > deadline:
            sys.exit(f"job {job_id} did not end: {job}")
        time.sleep(0.5)


def wait_for_flower(settings: dict[str, str], job_id: str) -> int:
    """Wait until Flower has seen every group task of the job end; how many there are."""
    auth = (settings["FLOWER_USER"], settings["FLOWER_PASSWORD"])
    deadline = time.monotonic() + 60
    while True:
        tasks = httpx.get(
            f"{settings['FLOWER_URL']}/api/tasks", params={"search": job_id}, auth=auth, timeout=10
        ).json()
        groups = [t for t in tasks.values() if t["name"] == "executions.run"]
        if groups and all(t["state"] in ("SUCCESS", "FAILURE") for t in groups):
            return len(tasks)
        if time.monotonic() > deadline:
            sys.exit(f"Flower never showed the job's group tasks ended: {tasks}")
        time.sleep(0.5)


class DevTools:
    """One page of a headless chromium, over the DevTools protocol."""

    def __init__(self, socket: WebSocketClientConnection) -> None:
        self.socket = socket
        self.ids = count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        await self.socket.write_message(
            json.dumps({"id": message_id, "method": method, "params": params})
        )
        while True:
            raw = await asyncio.wait_for(self.socket.read_message(), 30)
            if raw is None:
                raise RuntimeError("chromium closed the DevTools connection")
            reply = json.loads(raw)
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply.get("result", {}).get("value")

    async def until(self, expression: str, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not await self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never showed {what}")
            await asyncio.sleep(0.2)


async def screenshot(chromium: str, settings: dict[str, str], job_id: str, out: Path) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            page = await open_page(port)
            token = base64.b64encode(
                f"{settings['FLOWER_USER']}:{settings['FLOWER_PASSWORD']}".encode()
            ).decode()
            await page.call("Network.enable")
            await page.call(
                "Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"}
            )
            await page.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH,
                height=HEIGHT,
                deviceScaleFactor=1,
                mobile=False,
            )
            await page.call("Page.enable")
            await page.call("Page.navigate", url=f"{settings['FLOWER_URL']}/tasks")
            await page.until(
                "!!(window.jQuery && jQuery('#tasks-table_filter input').length)", "the search box"
            )
            # A little smaller than life: the kwargs and result columns show more of a line.
            await page.evaluate(f"document.body.style.zoom = '{ZOOM}'; true")
            await page.evaluate("jQuery('#tasks-table_filter input').focus(); true")
            await page.call("Input.insertText", text=job_id)
            # Flower redraws the table 300 ms after typing stops; every row then names the job.
            await page.until(
                "(() => { const rows = jQuery('#tasks-table tbody tr');"
                f" return rows.length > 1 && rows.toArray().every(r => r.innerText.includes('{job_id}')); }})()",
                "the job's tasks",
            )
            await asyncio.sleep(0.5)  # the table's last layout pass
            shot = await page.call("Page.captureScreenshot", format="png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.terminate()
            browser.wait(10)


async def open_page(port: int) -> DevTools:
    """The browser's first page, once its DevTools endpoint answers."""
    deadline = time.monotonic() + 30
    while True:
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                socket = await websocket_connect(
                    pages[0]["webSocketDebuggerUrl"], max_message_size=64 * 1024 * 1024
                )
                return DevTools(socket)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("chromium's DevTools never answered")
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "flower-job.png")
    parser.add_argument("--job", help="a job id already run (default: trigger one)")
    args = parser.parse_args()
    chromium, why_not = find_chromium()
    if chromium is None:
        sys.exit(why_not)
    settings = demo_settings()
    job_id = args.job or run_a_job(settings)
    tasks = wait_for_flower(settings, job_id)
    asyncio.run(screenshot(chromium, settings, job_id, args.out))
    print(f"{args.out}: Flower's tasks page searched for job {job_id} ({tasks} tasks)")


if __name__ == "__main__":
    main()
