"""Connections to source databases: deadlines enforced on our side, and drivers held to
the options a source URL may set.

A source is a tenant's server, and a hostile one may accept a connection and never
answer, answer the handshake and then hang on a query, or trickle a byte at a time. No
driver bounds all of that by itself (PyMySQL's timeouts are per socket operation;
psycopg has no read timeout at all, and a server may ignore ``statement_timeout``), so:

- every use of a source happens in :func:`source_connection`, under a :class:`Deadline`:
  each connection it makes or takes from the pool is watched from its first byte, and
  when the deadline passes its socket is shut down from a timer thread, so whatever the
  driver waits for ends at once with an error (:class:`SourceFailed`). psycopg connects
  within its ``connect_timeout`` (it enforces it over the whole handshake; 2 s at least);
  PyMySQL gets a socket we opened to the checked address, watched before the server's
  greeting;
- an honest server is asked to stop a slow query itself: PostgreSQL's
  ``statement_timeout``, PyMySQL's read and write timeouts on each socket operation;
- a pooled connection is pinged under the deadline when taken (not by the pool's own
  pre-ping, which would run before the watch);
- the drivers get only the accepted options (:mod:`shared.kb.source_urls`) and what we
  force: PyMySQL's ``local_infile`` off (a hostile server would ask for a file of ours),
  and libpq never reads the API's own password sources (``PGPASSWORD``, ``~/.pgpass``),
  which a server asking for a password would otherwise receive.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError

from shared.kb.source_urls import driver_options
from shared.settings import get_settings

# A path that can never exist (/dev/null is no directory): libpq skips a missing
# password file silently (/dev/null itself would be warned about as "not a plain file").
NO_PASSWORD_FILE = os.path.join(os.devnull, "none")
# What a driver raises, outside the DB-API's errors, when a server breaks the protocol
# (PyMySQL's RuntimeError on an unasked LOAD DATA LOCAL request, a socket error).
DRIVER_FAULTS: tuple[type[BaseException], ...] = (RuntimeError, OSError)


class SourceFailed(Exception):
    """A source database did not answer within its deadline, or answered what its
    driver cannot take; ``timed_out`` tells which."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class Deadline:
    """Shuts down the sockets it watches when ``seconds`` have passed (see the module
    docstring). Each watched socket is a duplicate of the driver's descriptor, closed at
    :meth:`close`, so a descriptor number the driver closed and the process reused is
    never touched."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def watch(self, fd: int | None) -> None:
        """Shut the socket behind ``fd`` down when the deadline passes (now, if it has)."""
        if fd is None or fd < 0:
            return
        duplicate = socket.socket(fileno=os.dup(fd))
        with self._lock:
            if not self.expired:
                self._sockets.append(duplicate)
                return
        _shut_down(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut_down(sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer
    finally:
        sock.close()


_current: ContextVar[Deadline | None] = ContextVar("source_deadline", default=None)


def current_deadline() -> Deadline:
    deadline = _current.get()
    if deadline is None:  # a programming error: every use goes through source_connection
        raise RuntimeError("a source database is used only inside source_connection()")
    return deadline


@contextmanager
def source_connection(engine: Engine, seconds: float) -> Iterator[Connection]:
    """A connection on a source database that the block may use for ``seconds`` in all,
    connecting included (SourceFailed once they have passed, or when the server broke
    the protocol; the connection is then discarded, not pooled)."""
    deadline = Deadline(seconds)
    token = _current.set(deadline)
    try:
        with engine.connect() as connection:
            try:
                yield connection
            except BaseException as exc:
                if deadline.expired or isinstance(exc, DRIVER_FAULTS):
                    connection.invalidate()
                raise
            if deadline.expired:  # it passed just after the last statement
                connection.invalidate()
    except Exception as exc:
        if deadline.expired:
            raise SourceFailed(f"no answer within {seconds:g} s", timed_out=True) from exc
        if isinstance(exc, DRIVER_FAULTS):
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            raise SourceFailed(reason, timed_out=False) from exc
        raise
    finally:
        _current.reset(token)
        deadline.close()


def engine_for(url: URL, address: str | None, *, statement_timeout: float, **kwargs: Any) -> Engine:
    """An engine on a source database, used through :func:`source_connection`: the URL's
    accepted options only, typed; connecting to the checked ``address`` (so a name that
    resolves elsewhere later is not followed); statements bounded by
    ``statement_timeout`` seconds."""
    backend = url.get_backend_name()
    connect_args = driver_options(url)
    if backend == "postgresql":
        if address is not None:
            connect_args["hostaddr"] = address  # libpq: host stays the name (TLS), IP pinned
        connect_args["passfile"] = NO_PASSWORD_FILE
        if url.password is None:
            connect_args["password"] = ""  # given, so PGPASSWORD is not consulted either
    elif backend in ("mysql", "mariadb"):
        connect_args.update(
            local_infile=False, read_timeout=statement_timeout, write_timeout=statement_timeout
        )
    else:  # SQLite: a file on this host; the wait for its write lock
        connect_args["timeout"] = get_settings().source_connect_timeout_seconds
    engine = create_engine(url.set(query={}), connect_args=connect_args, **kwargs)
    if backend != "sqlite":
        _watch_connections(engine, address, statement_timeout)
    return engine


def _connect_timeout(cparams: dict[str, Any], deadline: Deadline) -> float:
    """Seconds to connect: ours, the URL's if shorter, and never past the deadline."""
    asked = cparams.get("connect_timeout") or math.inf
    return min(get_settings().source_connect_timeout_seconds, asked, deadline.remaining())


def _socket_of(dbapi_connection: Any) -> int | None:
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg
    if pgconn is not None:
        return int(pgconn.socket) if not dbapi_connection.closed else None
    sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL
    return sock.fileno() if sock is not None else None


def _watch_connections(engine: Engine, address: str | None, statement_timeout: float) -> None:
    backend = engine.dialect.name

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        deadline = current_deadline()
        if deadline.expired:  # e.g. a pooled connection's ping took the whole deadline
            raise TimeoutError(f"no time left to connect within {deadline.seconds:g} s")
        if backend == "postgresql":
            connection = _connect_psycopg(dialect, cargs, cparams, deadline, statement_timeout)
        else:
            connection = _connect_pymysql(dialect, cargs, cparams, deadline, address)
        if record is not None:
            record.info["watched_by"] = deadline
        return connection

    @event.listens_for(engine, "checkout")
    def watch(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        deadline = current_deadline()
        if record.info.pop("watched_by", None) is deadline:
            return  # made in this block: watched since its first byte
        deadline.watch(_socket_of(dbapi_connection))
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool makes a new connection once
            raise DisconnectionError(f"source connection lost: {exc}") from exc


def _connect_psycopg(
    dialect: Any,
    cargs: list[Any],
    cparams: dict[str, Any],
    deadline: Deadline,
    statement_timeout: float,
) -> Any:
    # psycopg enforces connect_timeout over the whole handshake; it takes whole seconds,
    # and 2 at least.
    cparams["connect_timeout"] = max(2, int(_connect_timeout(cparams, deadline)))
    connection = dialect.connect(*cargs, **cparams)
    try:
        deadline.watch(_socket_of(connection))
        with connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {max(1, int(statement_timeout * 1000))}")
        connection.commit()
    except BaseException:
        connection.close()
        raise
    return connection


def _connect_pymysql(
    dialect: Any,
    cargs: list[Any],
    cparams: dict[str, Any],
    deadline: Deadline,
    address: str | None,
) -> Any:
    """PyMySQL on a socket of ours: to the checked address, watched before the greeting
    (PyMySQL's own timeouts bound each read, not the handshake)."""
    pymysql = dialect.loaded_dbapi
    connection = pymysql.connect(*cargs, **cparams, defer_connect=True)
    where = (address or cparams["host"], int(cparams.get("port") or 3306))
    try:
        # Never 0: that would be a non-blocking socket (the watch ends the wait anyway).
        timeout = max(0.05, _connect_timeout(cparams, deadline))
        sock = socket.create_connection(where, timeout=timeout)
    except OSError as exc:
        raise pymysql.err.OperationalError(
            2003, f"Can't connect to MySQL server on {cparams['host']!r} ({exc})"
        ) from exc
    try:
        deadline.watch(sock.fileno())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except BaseException:
        sock.close()
        raise
    connection.connect(sock)  # TLS, if asked, is checked against the host's name
    return connection
