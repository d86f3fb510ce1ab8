"""One unit of work per request: the request's transaction, opened when the command first
needs it and ended once the view has answered.

Every view of a family is registered through :func:`commits_per_answer` (by
:func:`api.families.register`, so no view is forgotten): when the view's answer is a
success (below 400), the request's unit of work commits, then runs its after-commit
actions (a fan-out published, the webhook senders woken); any other answer, or an
exception, rolls it back, so a refused request changes nothing. The commit happens
before the answer leaves: a client never reads back less than it was told was written,
and a commit that fails answers as any error does, in the family's envelope (a 503 when
the database is gone), never a success. ``teardown_request`` rolls back whatever a request
opened and did not reach a view with.

The unit of work connects at its first statement, not when it is opened: a command that
calls out first (a source database's connection check) holds no connection of ours while
it waits. That is also why resolving the credential (:mod:`api.auth`) is a read of its
own, before it, rather than the unit of work's first statement.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import wraps
from typing import Any

from flask import Flask, Response, current_app, g
from sqlalchemy.orm import Session

from shared.db import UnitOfWork, unit_of_work

_WORK = "unit_of_work"
_SCOPE = "unit_of_work_scope"


def request_work() -> UnitOfWork:
    """The request's unit of work (opened on first use)."""
    work: UnitOfWork | None = g.get(_WORK)
    if work is None:
        scope: AbstractContextManager[UnitOfWork] = unit_of_work()
        work = scope.__enter__()
        setattr(g, _SCOPE, scope)
        setattr(g, _WORK, work)
    return work


def request_session() -> Session:
    """The session of the request's unit of work."""
    return request_work().session


def _end(error: BaseException | None) -> None:
    """Commit the request's unit of work (``error`` None) or roll it back; either way it
    is gone after. A commit that fails raises here."""
    scope: AbstractContextManager[UnitOfWork] | None = g.pop(_SCOPE, None)
    g.pop(_WORK, None)
    if scope is None:
        return
    if error is None:
        scope.__exit__(None, None, None)
    else:
        scope.__exit__(type(error), error, error.__traceback__)


class _Refused(Exception):
    """The view answered an error: what it wrote must not stay."""


def commits_per_answer(view: Callable[..., Any]) -> Callable[..., Response]:
    """Run ``view``, then commit the request's unit of work if it answered a success, or
    roll it back (see the module docstring)."""

    @wraps(view)
    def in_unit_of_work(*args: Any, **kwargs: Any) -> Response:
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException as exc:
            _end(exc)
            raise
        _end(None if response.status_code < 400 else _Refused(response.status_code))
        return response

    return in_unit_of_work


def init_request_transactions(app: Flask) -> None:
    """Roll back what a request opened and no view ended (see the module docstring)."""

    def rollback_leftover(error: BaseException | None) -> None:
        _end(error or _Refused("the request ended before its view"))

    app.teardown_request(rollback_leftover)
