"""Every family's docs render its operations in a real browser with no network beyond
loopback (Swagger UI's assets come from the API itself, not a CDN), link to the other
families' docs, and ``/docs`` on the Smart DB seed's port is Smart DB's.

The browser is Debian's chromium, headless, with every host name but 127.0.0.1 resolving
to nothing (tests/browser.py); without one the test is skipped with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from api.families import discover, docs_url
from tests.browser import chromium_path, rendered_dom  # noqa: F401 - the chromium fixture
from tests.support import free_port, running_api


def rendered_paths(dom: str) -> set[str]:
    """The paths of the operations Swagger UI rendered."""
    rendered = set(re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom))
    return rendered | set(re.findall(r'data-path="([^"]+)"[^>]*class="opblock-summary-path"', dom))


def test_every_familys_docs_render_their_operations_offline(chromium: str, tmp_path: Path) -> None:
    """Each family's page, at its own prefix on either port, and the root's: Mentionlab's
    on the API's port, Smart DB's on the Smart DB seed's. Each links to the others."""
    port, smartdb_port = free_port(), free_port()
    families = discover()
    with running_api(
        tmp_path, port=port, BIND=None, PORT=port, SMARTDB_PORT=smartdb_port, JOBYARD_METRICS_PORT=0
    ) as base_url:
        smartdb_url = f"http://127.0.0.1:{smartdb_port}"
        for family in families:
            docs = f"{base_url}{docs_url(family)}"
            spec = httpx.get(f"{base_url}{family.docs_prefix}openapi.json").json()
            page = httpx.get(docs).text
            # Every asset the page names is ours (a relative path on this server).
            assets = re.findall(r'(?:src|href)="([^"]+)"', page)
            assert assets and all(a.startswith("/_swagger-ui/") for a in assets), assets
            dom = rendered_dom(chromium, docs, tmp_path / f"profile-{family.name}")
            assert rendered_paths(dom) == set(spec["paths"]), (family.name, dom[:2000])
            assert spec["info"]["title"] in dom
            # The description's links, rendered, lead to every other family's page.
            links = set(re.findall(r'<a [^>]*href="(/[^"]*docs)"', dom))
            assert links == {docs_url(f) for f in families if f is not family}, links
            for link in links:
                for server in (base_url, smartdb_url):
                    assert httpx.get(f"{server}{link}").status_code == 200
        for server, home in ((base_url, "mentionlab"), (smartdb_url, "smartdb")):
            family = next(f for f in families if f.name == home)
            spec = httpx.get(f"{server}/openapi.json").json()
            assert spec["info"]["title"] == family.title
            dom = rendered_dom(chromium, f"{server}/docs", tmp_path / f"profile-root-{home}")
            assert family.title in dom
            assert rendered_paths(dom) == set(spec["paths"]), (server, dom[:2000])
