"""SQLite as jobyard's database: every transaction takes the write lock at its start.

On PostgreSQL the engine's guarantees rest on row locks (``FOR UPDATE``) and advisory
locks (a fan-out chunk and a cancel of one job, the dispatcher): a transaction that reads
a job's state and then writes by it holds the rows it read. SQLite has neither. Its
default transactions are also *deferred*: pysqlite begins them at the first write, so a
chunk could read "not canceled", a cancel commit in between, and the chunk insert its
rows into a canceled job (found by a hostile audit: canceled jobs with executions pending
that their counters did not count).

So on SQLite every transaction starts with ``BEGIN IMMEDIATE``: it holds the database's
write lock from its first statement to its commit, and transactions of every process
run one after another — serializable, which is what the row locks give on PostgreSQL.
Other processes wait in SQLite's busy handler (``busy_timeout``).

Within one process the transactions also queue on a Python lock before ``BEGIN``: a
thread (or, in the API's gevent workers, a greenlet) waiting in SQLite's busy handler
sleeps inside C, and under gevent that sleep would stop the whole process — including
the greenlet holding the write lock, which then never commits. Waiting on the Python
lock instead yields to it. A second transaction opened by a thread that already holds
one would wait for itself: it raises at once instead (:class:`NestedTransaction`).

What only reads needs none of that: in WAL mode a deferred transaction reads a consistent
snapshot without waiting for the writers (or making them wait). Code that only reads —
the API's ``GET`` requests, the live progress stream — says so with :func:`reads_only`,
and its transactions begin deferred, outside the queue. (Should one write after all, SQLite
upgrades it when no writer committed since its snapshot, and refuses otherwise: a 503.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, event

BUSY_TIMEOUT_MS = 30_000


_READS_ONLY: ContextVar[bool] = ContextVar("jobyard_sqlite_reads_only", default=False)


@contextmanager
def reads_only() -> Iterator[None]:
    """Within this block (this thread or greenlet), transactions only read."""
    token = _READS_ONLY.set(True)
    try:
        yield
    finally:
        _READS_ONLY.reset(token)


def read_only_from_here() -> Any:
    """Mark the rest of this context as reading only; returns the token that ends it
    (``end_read_only``): for code whose end is a callback, such as a request's teardown."""
    return _READS_ONLY.set(True)


def end_read_only(token: Any) -> None:
    _READS_ONLY.reset(token)


class NestedTransaction(RuntimeError):
    """A transaction begun on SQLite by a thread that already holds one."""


class WriteLock:
    """This process's turn at the SQLite database: taken at ``begin``, given back at
    ``commit`` or ``rollback`` (or, as a last resort, when the connection returns to the
    pool with its transaction still open)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: tuple[int, int] | None = None  # (thread ident, DB-API connection id)

    def acquire(self, dbapi_connection: Any) -> None:
        me = threading.get_ident()
        owner = self._owner
        if owner is not None and owner[0] == me:
            raise NestedTransaction(
                "a second SQLite transaction in a thread that holds one would wait for "
                "itself: end the first before opening another"
            )
        self._lock.acquire()
        self._owner = (me, id(dbapi_connection))

    def release(self, dbapi_connection: Any) -> None:
        owner = self._owner
        if owner is not None and owner[1] == id(dbapi_connection):
            self._owner = None
            self._lock.release()


def configure(engine: Engine) -> None:
    """Make ``engine``'s transactions serializable (see the module docstring)."""
    lock = WriteLock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling off: we say BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers of other processes (a sync's source reads, sqlite3 tools) are not
        # blocked by the writer; the busy timeout makes writers of several processes
        # wait for each other instead of failing.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if _READS_ONLY.get():
            connection.exec_driver_sql("BEGIN")  # a snapshot: no lock, no waiting
            return
        dbapi_connection = connection.connection.dbapi_connection
        lock.acquire(dbapi_connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            lock.release(dbapi_connection)
            raise

    def _ended(connection: Connection) -> None:
        # Fired just before the DB-API commit or rollback, which follow at once in the
        # same thread: a waiter of this process then begins after them.
        lock.release(connection.connection.dbapi_connection)

    event.listen(engine, "commit", _ended)
    event.listen(engine, "rollback", _ended)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            lock.release(dbapi_connection)
