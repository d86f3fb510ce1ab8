"""Where the docs are: each family's under its prefix, linking to the others; the root
``/docs`` and ``/openapi.json`` are Smart DB's on the Smart DB seed's port (8000 under
``make up``), Mentionlab's elsewhere. (In a browser, on both ports of the real server:
tests/e2e/test_docs_offline.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from api import create_app
from api.families import discover, docs_url
from shared.settings import get_settings, reset_settings_cache

FAMILIES = {family.name: family for family in discover()}
API = "http://127.0.0.1:5000"
SMARTDB = "http://127.0.0.1:8000"


def title_of_docs(client: FlaskClient, base_url: str, path: str = "/docs") -> str:
    page = client.get(path, base_url=base_url)
    assert page.status_code == 200 and page.mimetype == "text/html"
    return re.findall(r"<title>(.*?)</title>", page.get_data(as_text=True))[0]


def test_the_root_docs_are_smartdbs_on_its_port_and_mentionlabs_elsewhere(
    client: FlaskClient,
) -> None:
    assert get_settings().smartdb_port == 8000
    for base_url, name in ((API, "mentionlab"), (SMARTDB, "smartdb")):
        family = FAMILIES[name]
        assert title_of_docs(client, base_url) == family.title
        spec = client.get("/openapi.json", base_url=base_url).json
        assert spec == client.get(f"{family.docs_prefix}openapi.json").json
        assert spec["info"]["title"] == family.title
        # Each family's own pages are the same on either port.
        for other in FAMILIES.values():
            assert title_of_docs(client, base_url, docs_url(other)) == other.title


@pytest.fixture
def no_smartdb_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[FlaskClient]:
    monkeypatch.setenv("SMARTDB_PORT", "")
    reset_settings_cache()
    yield create_app({"TESTING": True}).test_client()
    monkeypatch.undo()
    reset_settings_cache()


def test_without_a_smartdb_port_the_root_docs_are_mentionlabs(
    no_smartdb_port: FlaskClient,
) -> None:
    assert get_settings().smartdb_port is None
    assert title_of_docs(no_smartdb_port, SMARTDB) == FAMILIES["mentionlab"].title


def test_every_familys_docs_link_to_the_others(client: FlaskClient) -> None:
    for family in FAMILIES.values():
        description = client.get(f"{family.docs_prefix}openapi.json").json["info"]["description"]
        links = dict(re.findall(r"\[([^\]]+)\]\((/[^)]*)\)", description))
        assert set(links.values()) == {docs_url(f) for f in FAMILIES.values() if f != family}
        for text, url in links.items():
            assert f"jobyard — {text}" == title_of_docs(client, API, url)
