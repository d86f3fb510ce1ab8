"""The database engine and session factory of this process.

One engine per process: the engine is created lazily and re-created after a fork (the
worker's ``worker_process_init`` also disposes it), so no pooled connection ever crosses a
fork. Callers own their transactions: ``with session_scope() as s:`` commits on success.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import get_settings

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "engine": None, "factory": None, "url": None}


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets the API read while a worker writes; the busy timeout makes concurrent
        # writers from several processes wait for each other instead of failing.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def build_engine(url: str | None = None) -> Engine:
    """Create an engine for ``url`` (default: the configured database)."""
    settings = get_settings()
    url = url or settings.database_url
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
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


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    with new_session() as session, session.begin():
        yield session


def commit_without_flush_wait(session: Session) -> None:
    """Let this transaction's commit return before its WAL record reaches disk (PostgreSQL).

    Only for the claim and finish of an execution attempt. A crash of PostgreSQL can then
    forget the last few hundred milliseconds of such commits, but each is one atomic unit
    (the execution row together with the job's counters), so what is forgotten is an
    attempt, never consistency: the lease expires and the recovery sweep runs it again.
    Commits are flushed in order, so nothing that was accepted durably is ever lost.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
