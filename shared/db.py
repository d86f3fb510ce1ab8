"""The database engine, and the one transaction convention.

One engine per process: the engine is created lazily and re-created after a fork (the
worker's ``worker_process_init`` also disposes it), so no pooled connection ever crosses a
fork.

The caller owns the unit of work. An API request has exactly one for its command
(``api/transaction.py``: committed when its view answers a success, rolled back
otherwise); the worker opens one per step of its work; the CLI one per command. A command takes the caller's :class:`UnitOfWork` (or
its session, when it has nothing to do after the commit) and passes it on to the services
it calls, which never open one of their own. What must happen once the transaction has
committed — publishing the messages that point at the rows it wrote, waking the webhook
senders, publishing job progress — is registered with :meth:`UnitOfWork.after_commit`:
a message is never sent for a row that might still roll back, and a rollback runs none.

One type serves both ways to the database: :func:`unit_of_work` (the ORM: its
``session``) and :func:`connection_scope` (the worker's hot path: a plain Core
``connection``, no Session). Code that holds only the Session or the Connection reaches
the unit of work with :func:`unit_of` (it is kept in their ``info``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, event
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
    # Read from the module at each call: with tracing on, the SQLAlchemy instrumentation
    # wraps it there (shared.tracing).
    create_engine = sqlalchemy.create_engine
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
                factory=_session_factory(engine),
            )
        engine_: Engine = _state["engine"]
        return engine_


def _session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    event.listen(factory, "after_begin", _link_connection)
    return factory


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


_WORK_KEY = "jobyard.unit_of_work"  # in Session.info and Connection.info: the UnitOfWork


class UnitOfWork:
    """One transaction, and what runs once it has committed.

    The same type serves the ORM (:func:`unit_of_work`: :attr:`session`, which connects
    at its first statement) and the worker's Core hot path (:func:`connection_scope`: a
    plain :attr:`connection`, no Session ever made). Code that holds only the Session or
    the Connection reaches it with :func:`unit_of`.
    """

    def __init__(self, *, session: Session | None = None, connection: Connection | None = None):
        self._session = session
        self._connection = connection
        self._after_commit: list[Callable[[], object]] = []
        # What code in the transaction keeps for its after-commit actions (progress
        # notes, a "senders already woken" mark), by a key of its own.
        self.values: dict[str, Any] = {}
        for holder in (session, connection):
            if holder is not None:
                holder.info[_WORK_KEY] = self

    @property
    def session(self) -> Session:
        """The transaction's Session (on a Core scope: one joining its connection, made on
        first use; it never commits by itself)."""
        if self._session is None:
            assert self._connection is not None
            self._session = Session(
                bind=self._connection, expire_on_commit=False, join_transaction_mode="rollback_only"
            )
            self._session.info[_WORK_KEY] = self
        return self._session

    @property
    def connection(self) -> Connection:
        """The transaction's Core connection (an ORM unit of work's connects now)."""
        if self._connection is None:
            self._joined(self.session.connection())
        assert self._connection is not None
        return self._connection

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run ``action`` after the commit (never if the transaction rolls back)."""
        self._after_commit.append(action)

    def after_commit_once(self, key: str, action: Callable[[], object]) -> None:
        """Run ``action`` after the commit, once however often it is asked for by ``key``."""
        if key not in self.values:
            self.values[key] = True
            self._after_commit.append(action)

    def _joined(self, connection: Connection) -> None:
        self._connection = connection
        connection.info[_WORK_KEY] = self

    def _unlink(self) -> None:
        """Forget this unit on its connection (Connection.info outlives the checkout; an
        invalidated connection's goes with it, and asking for it would raise)."""
        connection = self._connection
        if connection is not None and not connection.closed and not connection.invalidated:
            connection.info.pop(_WORK_KEY, None)

    def _run_after_commit(self) -> None:
        for action in self._after_commit:
            action()


def unit_of(executor: Session | Connection) -> UnitOfWork | None:
    """The unit of work whose transaction ``executor`` is in (None for a bare one)."""
    work = executor.info.get(_WORK_KEY)
    return work if isinstance(work, UnitOfWork) else None


def _link_connection(session: Session, _transaction: Any, connection: Connection) -> None:
    """``after_begin`` of the sessions of :func:`unit_of_work`: the connection the session
    has just begun on leads to its unit of work too."""
    work = session.info.get(_WORK_KEY)
    if isinstance(work, UnitOfWork):
        work._joined(connection)


@contextmanager
def unit_of_work() -> Iterator[UnitOfWork]:
    """Open a unit of work: commit when the block succeeds, then run its after-commit
    actions in order; roll back (and run none) when it raises. Its session connects at
    its first statement (not before: a command may call out before it touches the
    database, holding no connection meanwhile)."""
    with new_session() as session:
        work = UnitOfWork(session=session)
        try:
            with session.begin():
                try:
                    yield work
                finally:
                    work._unlink()
        finally:
            session.info.pop(_WORK_KEY, None)
    work._run_after_commit()


@contextmanager
def connection_scope() -> Iterator[Connection]:
    """A unit of work on a plain Core connection (lighter than a Session, for the
    worker's hot path); :func:`unit_of` reaches its after-commit actions."""
    with get_engine().begin() as connection:
        # Connection.info outlives the checkout: a failed scope's mark is replaced here.
        work = UnitOfWork(connection=connection)
        yield connection
        work._unlink()
        if work._session is not None:
            work._session.close()
    work._run_after_commit()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work, for a caller that only needs its session (the CLI, a task step,
    tests)."""
    with unit_of_work() as work:
        yield work.session
