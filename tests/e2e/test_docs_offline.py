"""Every family's ``/docs`` renders its operations in a real browser with no network
beyond loopback: Swagger UI's assets come from the API itself, not a CDN.

The browser is Debian's chromium, headless, with every host name but 127.0.0.1 resolving
to nothing (tests/browser.py); without one the test is skipped with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from api.families import discover
from tests.browser import rendered_dom
from tests.support import running_api


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
