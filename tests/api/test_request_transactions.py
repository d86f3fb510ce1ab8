"""One unit of work per request (api/transaction.py): what a view writes commits with a
success answer, and only then do its after-commit actions run; an error answer, or an
exception, rolls all of it back."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from flask import Flask, Response, jsonify
from flask.testing import FlaskClient
from sqlalchemy import select

from api.errors import register_error_handlers
from api.transaction import commits_per_answer, init_request_transactions, request_work
from shared.accounts.organisations import create_organisation
from shared.db import session_scope
from shared.errors import Conflict
from shared.models import Organisation


def written(name: str) -> bool:
    with session_scope() as session:
        return session.scalar(select(Organisation.id).where(Organisation.name == name)) is not None


@pytest.fixture
def published() -> list[str]:
    """What the views' after-commit actions did."""
    return []


@pytest.fixture
def client(published: list[str]) -> FlaskClient:
    """An app with views that write an organisation named in the path, then answer as
    the path says."""
    app = Flask(__name__)
    init_request_transactions(app)
    register_error_handlers(app)

    def writes_then(answer: Callable[[str], Response]) -> Callable[[str], Response]:
        def view(name: str) -> Response:
            work = request_work()
            create_organisation(work.session, name)
            work.after_commit(lambda: published.append(name))
            return answer(name)

        return view

    def created(name: str) -> Response:
        response = jsonify(name=name)
        response.status_code = 201
        return response

    def refused(name: str) -> Response:
        response = jsonify(message="no")
        response.status_code = 409
        return response

    def raises(name: str) -> Response:
        raise Conflict("no")

    for rule, answer in (("created", created), ("refused", refused), ("raises", raises)):
        endpoint = f"{rule}_view"
        view = commits_per_answer(writes_then(answer))
        app.add_url_rule(f"/{rule}/<name>", endpoint, view, methods=["POST"])
    return app.test_client()


def test_a_success_commits_and_then_runs_the_after_commit_actions(
    client: FlaskClient, published: list[str]
) -> None:
    name = f"ok-{uuid.uuid4()}"
    assert client.post(f"/created/{name}").status_code == 201
    assert written(name)
    assert published == [name]


def test_an_error_answer_rolls_back_and_runs_nothing(
    client: FlaskClient, published: list[str]
) -> None:
    name = f"refused-{uuid.uuid4()}"
    assert client.post(f"/refused/{name}").status_code == 409
    assert not written(name)
    assert published == []


def test_an_exception_rolls_back_and_runs_nothing(
    client: FlaskClient, published: list[str]
) -> None:
    name = f"raises-{uuid.uuid4()}"
    response = client.post(f"/raises/{name}")
    assert response.status_code == 409
    assert not written(name)
    assert published == []
