"""A headless browser for the tests that need one: Debian's chromium, with every host
name but 127.0.0.1 resolving to nothing (no network beyond loopback).

``make test`` installs it (deploy/scripts/ensure-chromium.sh, as root); without it the
tests that ask for the ``chromium`` fixture (import it from here) are skipped with the
script's reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

ENSURE_CHROMIUM = ROOT / "deploy" / "scripts" / "ensure-chromium.sh"


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
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
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
