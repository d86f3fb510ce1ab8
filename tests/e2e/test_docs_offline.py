"""Every family's ``/docs`` renders its operations in a real browser with no network
beyond loopback: Swagger UI's assets come from the API itself, not a CDN.

The browser is Debian's chromium, headless, with every host name but 127.0.0.1 resolving
to nothing. ``make test`` installs it (deploy/scripts/ensure-chromium.sh, as root);
without it the test is skipped with the script's reason.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from api.families import discover
from tests.support import ROOT, running_api

ENSURE_CHROMIUM = ROOT / "deploy" / "scripts" / "ensure-chromium.sh"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = subprocess.run([ENSURE_CHROMIUM], capture_output=True, text=True, timeout=600)
    if found.returncode != 0:
        pytest.skip(f"no headless browser: {found.stderr.strip().splitlines()[-1:]}")
    return found.stdout.strip().splitlines()[-1]


def rendered_dom(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run, fetched with the network cut to loopback."""
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
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_every_familys_docs_render_their_operations_offline(chromium: str, tmp_path: Path) -> None:
    with running_api(tmp_path) as base_url:
        for family in discover():
            docs = f"{base_url}{family.docs_prefix}docs"
            spec = httpx.get(f"{base_url}{family.docs_prefix}openapi.json").json()
            page = httpx.get(docs).text
            # Every asset the page names is ours (a relative path on this server).
            assets = re.findall(r'(?:src|href)="([^"]+)"', page)
            assert assets and all(a.startswith("/_swagger-ui/") for a in assets), assets
            dom = rendered_dom(chromium, docs, tmp_path / f"profile-{family.name}")
            rendered = set(re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom))
            rendered |= set(
                re.findall(r'data-path="([^"]+)"[^>]*class="opblock-summary-path"', dom)
            )
            assert rendered == set(spec["paths"]), (family.name, sorted(rendered), dom[:2000])
            assert spec["info"]["title"] in dom
