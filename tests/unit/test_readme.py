"""The README holds together: every curl of its examples parses and names a route the app
answers with that method, its links lead somewhere, and it shows the two commands.
(Running the examples, in order, against the real system: tests/e2e/test_readme.py.)"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from api import create_app
from tests.readme import curls, readme_text, session, sh_blocks
from tests.support import ROOT

ANY_ID = str(uuid.UUID(int=1))
LOCAL = re.compile(r"^(?:\$JOBYARD_URL|http://127\.0\.0\.1:\d+)")
VARIABLE = re.compile(r"\$\{?[A-Z_][A-Z0-9_]*\}?")
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def route_path(url: str) -> str:
    """The path a README URL asks for, with its variables standing for an id."""
    path = LOCAL.sub("", url).split("?", 1)[0]
    return VARIABLE.sub(ANY_ID, path)


def test_every_curl_of_the_examples_names_a_route_that_answers_its_method() -> None:
    found = curls(session(readme_text()))
    assert len(found) > 40, found  # the examples are all there
    routes = create_app({"TESTING": True}).url_map.bind("127.0.0.1")
    wrong = []
    for curl in found:
        try:
            routes.match(route_path(curl.url), method=curl.method)
        except (NotFound, MethodNotAllowed) as exc:
            wrong.append(f"line {curl.line}: {curl.method} {curl.url}: {type(exc).__name__}")
    assert not wrong, "\n".join(wrong)


def test_the_route_check_catches_a_route_that_does_not_exist() -> None:
    routes = create_app({"TESTING": True}).url_map.bind("127.0.0.1")
    for method, url in (("GET", "$JOBYARD_URL/api/job/$JOB"), ("DELETE", "$JOBYARD_URL/v1/jobs")):
        with pytest.raises((NotFound, MethodNotAllowed)):
            routes.match(route_path(url), method=method)


def test_an_expected_status_is_read_from_the_line_after_the_command() -> None:
    script = (
        "A=$(curl -s -X POST \"$JOBYARD_URL/api/jobs/trigger\" \\\n  -d '{\n}' | pick id)\n"
        "# → 201 {...}\n"
        'curl -s "$JOBYARD_URL/healthz"\n'
        "# → {...}\n"
    )
    assert [(c.method, c.expected, c.line) for c in curls(script)] == [
        ("POST", 201, 1),
        ("GET", None, 4),
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("document", DOCS, ids=lambda p: p.name)
def test_every_link_leads_to_a_file_and_heading_that_exist(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        missing_heading = anchor and path.suffix == ".md" and anchor not in anchors(path)
        if not path.exists() or missing_heading:
            broken.append(target)
    assert not broken, broken


def test_the_readme_shows_the_two_commands_first() -> None:
    text = readme_text()
    quickstart = text[text.index("## Quickstart") : text.index("## Contents")]
    assert "make up" in quickstart and "make test" in quickstart
    # The first example needs only what make up gives: the demo tenant's credentials.
    assert sh_blocks(text)[0].startswith("source var/demo.env")
