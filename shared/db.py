"""The database engine, and the one transaction convention.

One engine per process: the engine is created lazily and re-created after a fork (the
worker's ``worker_process_init`` also disposes it), so no pooled connection ever crosses a
fork.

The caller owns the unit of work. A command (an API request's write, a task) opens one
:func:`unit_of_work`, passes its session to the services it calls (which never open a
session of their own), and registers what must happen once the transaction has committed
— publishing the messages that point at the rows it wrote — with
:meth:`UnitOfWork.after_commit`. That is the one place publish-after-commit happens: a
message is never sent for a row that might still roll back. Reads use
:func:`session_scope`; the worker's hot path uses :func:`connection_scope`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from shared import sqlite
from shared.settings import get_settings

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "engine": None, "factory": None, "url": None}
_worker_mode = {"enabled": False}


def use_worker_connections() -> None:
    """Tune this process's connections for the worker (call before the first query).

    - Commits return before their WAL record reaches disk (``synchronous_commit=off``).
      Everything a worker commits is an attempt's claim or finish, a fan-out chunk or a
      sweep stamp: each is one atomic unit that is re-derived if PostgreSQL crashes and
      forgets it (the lease expires, the fan-out or sweep runs again), so consistency
      holds; and commits are flushed in order, so a durable accept is never lost. The
      API keeps fully durable commits: accepting a job is the promise.
    - No ping before each checkout: a dead connection makes the task fail with a
      database error, which the tasks retry (``worker.tasks.executions.DATABASE_GONE``).
    """
    _worker_mode["enabled"] = True
    dispose_engine()


def build_engine(url: str | None = None) -> Engine:
    """Create an engine for ``url`` (default: the configured database)."""
    settings = get_settings()
    url = url or settings.database_url
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        sqlite.configure(engine)  # serializable: BEGIN IMMEDIATE (see shared.sqlite)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    worker = _worker_mode["enabled"]
    pool_size = settings.db_pool_size if worker else settings.api_db_pool_size
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=not worker,
        pool_recycle=1800,
        connect_args={"options": "-c synchronous_commit=off"} if worker else {},
    )


def get_engine() -> Engine:
    """Return this process's engine, creating it (again after a fork or URL change)."""
    url = get_settings().database_url
    with _lock:
        if _state["pid"] != os.getpid() or _state["url"] != url:
            previous: Engine | None = _state["engine"]
            if previous is not None:
                # Close our own connections; forget (never close) a parent's after a fork.
                previous.dispose(close=_state["pid"] == os.getpid())
            engine = build_engine(url)
            _state.update(
                pid=os.getpid(),
                engine=engine,
                url=url,
                factory=sessionmaker(bind=engine, expire_on_commit=False),
            )
        engine_: Engine = _state["engine"]
        return engine_


def dispose_engine(*, close: bool = False) -> None:
    """Drop this process's pool.

    After a fork the inherited connections belong to the parent: they are forgotten, not
    closed (``close=False``). At shutdown they are ours to close.
    """
    with _lock:
        engine = _state["engine"]
        if engine is not None:
            engine.dispose(close=close)
        _state.update(pid=None, engine=None, factory=None, url=None)


def new_session() -> Session:
    """Open a session on this process's engine; the caller owns its transaction."""
    get_engine()
    factory: sessionmaker[Session] = _state["factory"]
    return factory()


def dialect_name(executor: Session | Connection) -> str:
    """``postgresql`` or ``sqlite``: the dialect a Session or Connection talks to."""
    if isinstance(executor, Session):
        return executor.get_bind().dialect.name
    return executor.dialect.name


@contextmanager
def connection_scope() -> Iterator[Connection]:
    """One transaction on a plain Core connection (lighter than a Session, for hot paths).

    Code that runs in it may ask for something to run once it has committed (never after
    a rollback) through :func:`scope_of` (the engine publishes job progress that way)."""
    with get_engine().begin() as connection:
        # Connection.info outlives the checkout: a failed scope's state is replaced here.
        scope = connection.info[_SCOPE_KEY] = Scope()
        yield connection
        connection.info.pop(_SCOPE_KEY, None)
    for action in scope.after_commit:
        action()


_SCOPE_KEY = "jobyard.scope"


@dataclass
class Scope:
    """What a :func:`connection_scope` transaction carries to its commit: actions to run
    after it, and whatever the code in it keeps for them (``values``, by a key of its own)."""

    after_commit: list[Callable[[], object]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


def scope_of(connection: Connection) -> Scope | None:
    """The scope of the :func:`connection_scope` transaction ``connection`` is in, if any."""
    scope = connection.info.get(_SCOPE_KEY)
    return scope if isinstance(scope, Scope) else None


class UnitOfWork:
    """One transaction (``session``), and the actions to run once it has committed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._after_commit: list[Callable[[], object]] = []

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run ``action`` after the commit (never if the transaction rolls back)."""
        self._after_commit.append(action)


@contextmanager
def unit_of_work() -> Iterator[UnitOfWork]:
    """Open a unit of work: commit when the block succeeds, then run its after-commit
    actions in order; roll back (and run none) when it raises."""
    with new_session() as session:
        work = UnitOfWork(session)
        with session.begin():
            yield work
    for action in work._after_commit:
        action()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    with new_session() as session, session.begin():
        yield session
