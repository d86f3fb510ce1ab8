"""A headless browser for the tests that need one: Debian's chromium, with every host
name but 127.0.0.1 resolving to nothing (no network beyond loopback).

``make test`` installs it (deploy/scripts/ensure-chromium.sh, as root); without it the
tests that ask for the ``chromium`` fixture (import it from here) are skipped with the
script's reason.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

ENSURE_CHROMIUM = ROOT / "deploy" / "scripts" / "ensure-chromium.sh"

# Every chromium of the tests and scripts (with "--headless", which Playwright adds
# itself): no GPU, no sandbox, nothing of its own on the network, and every host name but
# 127.0.0.1 resolving to nothing.
CHROMIUM_FLAGS = (
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def find_chromium() -> tuple[str | None, str]:
    """The browser's path, or None and why there is none."""
    found = subprocess.run([ENSURE_CHROMIUM], capture_output=True, text=True, timeout=600)
    if found.returncode != 0:
        return None, f"no headless browser: {found.stderr.strip().splitlines()[-1:]}"
    return found.stdout.strip().splitlines()[-1], ""


@pytest.fixture(scope="session", name="chromium")
def chromium_path() -> str:
    """The ``chromium`` fixture: a headless chromium's path; the test is skipped without
    one. A test module imports it (``chromium_path``) and asks for ``chromium``."""
    path, why_not = find_chromium()
    if path is None:
        pytest.skip(why_not)
    return path


def rendered_dom(chromium: str, url: str, profile: Path, budget_ms: int = 20_000) -> str:
    """The page's DOM once its scripts have run, fetched with the network cut to loopback.

    ``budget_ms`` is virtual time: timers run ahead of the clock, but it stands still while
    a request is loading (an open ``EventSource`` too), so the DOM is taken after those end.
    """
    result = subprocess.run(
        [
            chromium,
            "--headless",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@contextmanager
def serve_page(html: str) -> Iterator[str]:
    """``html`` served at ``/`` on a loopback port of its own (another origin than the
    API's); yields its URL."""
    body = html.encode()

    class PageHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
