"""The API's gunicorn worker class (api/gunicorn_worker.py), in parts: what gunicorn's
master imports with it, and how it reads a refused request's start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gunicorn.http import errors as http_errors

from api.gunicorn_worker import refusal_of, request_start
from tests.support import ROOT

# Modules that must be imported only after gevent has patched the standard library.
PATCH_SENSITIVE = ("psycopg", "sqlalchemy", "redis", "pymysql", "flask", "api.app")


def test_loading_the_worker_class_imports_no_driver() -> None:
    """gunicorn's master loads the worker class (and its config) before it forks the
    workers, which patch the standard library only then: a database driver imported
    there would keep its blocking waits (psycopg chooses on import) in every worker."""
    script = (
        "import runpy, sys; runpy.run_path('deploy/gunicorn.conf.py');"
        "import api.gunicorn_worker;"
        f"print(__import__('json').dumps([m for m in {PATCH_SENSITIVE!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("head", "start"),
    [
        (b"GET /v1/jobs?q=aaaa", ("GET", "/v1/jobs")),
        (
            b"POST /knowledge_bases/kb%20one/search HTTP/1.1\r\n",
            ("POST", "/knowledge_bases/kb one/search"),
        ),
        (b"GET /api/" + b"x" * 2000, ("GET", "/api/" + "x" * 251)),
        (b"\x16\x03\x01 garbage", None),
        (b"GET http://host/path HTTP/1.1", None),
        (b"", None),
    ],
)
def test_a_request_lines_start_names_its_method_and_path(
    head: bytes, start: tuple[str, str] | None
) -> None:
    assert request_start(head) == start


def test_gunicorns_refusals_get_the_apps_limits_and_the_apps_wording() -> None:
    assert refusal_of(http_errors.LimitRequestLine(9000, 8190)) == (
        414,
        "Request URL longer than 4096 bytes",
    )
    assert refusal_of(http_errors.LimitRequestHeaders("limit request headers fields")) == (
        431,
        "More than 100 request header fields",
    )
    status, message = refusal_of(http_errors.InvalidRequestLine("\x16\x03")) or (0, "")
    assert status == 400 and message.startswith("Malformed request")
    # The app's own faults are no refusal: a 500.
    assert refusal_of(http_errors.InvalidResponseHeader("X-Bad")) is None
    assert refusal_of(RuntimeError("boom")) is None
