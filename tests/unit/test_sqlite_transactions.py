"""SQLite's transactions (shared/sqlite.py): each takes the write lock at its start, and
within a process they queue on a lock that yields to the holder, under gevent too."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import build_engine
from shared.sqlite import NestedTransaction, reads_only

pytestmark = pytest.mark.every_database


def make_engine(tmp_path: Path) -> object:
    engine = build_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    return engine


def test_a_transaction_holds_the_write_lock_from_its_first_statement(tmp_path: Path) -> None:
    """A read-only first statement already holds it: a writer of another process waits for
    the commit (in a deferred transaction it would write in between, and this one then
    fail, or count without its row)."""
    engine = make_engine(tmp_path)
    other_writer = [
        sys.executable,
        "-c",
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=30); "
        "c.execute('INSERT INTO t VALUES (2)'); c.commit()",
        str(tmp_path / "x.db"),
    ]
    with engine.begin() as connection:  # type: ignore[attr-defined]
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        other = subprocess.Popen(other_writer)
        time.sleep(0.5)
        assert other.poll() is None  # it waits for this transaction
        connection.execute(text("INSERT INTO t VALUES (1)"))
    assert other.wait(30) == 0
    with engine.connect() as connection:  # type: ignore[attr-defined]
        rows = connection.execute(text("SELECT n FROM t ORDER BY rowid")).scalars().all()
    assert rows == [1, 2]


def test_a_second_transaction_in_the_same_thread_raises_at_once(tmp_path: Path) -> None:
    """It would wait for itself until the busy timeout: it says so instead."""
    engine = make_engine(tmp_path)
    with engine.begin() as outer:  # type: ignore[attr-defined]
        outer.execute(text("SELECT 1"))
        started = time.monotonic()
        with pytest.raises(NestedTransaction), engine.begin() as inner:  # type: ignore[attr-defined]
            inner.execute(text("SELECT 1"))
        assert time.monotonic() - started < 1
    with engine.begin() as connection:  # type: ignore[attr-defined]
        assert connection.execute(text("SELECT 1")).scalar_one() == 1  # the lock is free


GEVENT_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import sys
    import time

    import gevent
    from sqlalchemy import text

    import shared.sqlite
    from shared.db import build_engine

    shared.sqlite.BUSY_TIMEOUT_MS = 3000  # a wait in SQLite's busy handler shows in seconds
    engine = build_engine("sqlite:///" + sys.argv[1])
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))

    def holder():
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
            gevent.sleep(0.3)  # network I/O inside a transaction: other greenlets run

    def waiter():
        gevent.sleep(0.05)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (2)"))

    started = time.monotonic()
    greenlets = [gevent.spawn(holder), gevent.spawn(waiter)]
    gevent.joinall(greenlets, raise_error=True)
    print(f"{time.monotonic() - started:.2f}")
    """
)


def test_greenlets_of_one_process_queue_for_the_lock_instead_of_stopping_it(
    tmp_path: Path,
) -> None:
    """Under gevent (the API's worker class), a greenlet waiting in SQLite's busy handler
    would sleep inside C and stop the whole process, the holder of the lock included:
    both would wait out the busy timeout, and one fail with "database is locked"."""
    script = tmp_path / "greenlets.py"
    script.write_text(GEVENT_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "g.db")],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 2.0


# Another process's writer: takes the write lock, runs its statements (argv[3:]), says
# "holding", keeps the lock argv[2] seconds, commits.
HOLD_THE_WRITE_LOCK = (
    "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
    "c.execute('BEGIN IMMEDIATE'); [c.execute(sql) for sql in sys.argv[3:]]; "
    "print('holding', flush=True); time.sleep(float(sys.argv[2])); c.execute('COMMIT')"
)


def test_a_read_only_transaction_takes_a_snapshot_without_waiting_for_a_writer(
    tmp_path: Path,
) -> None:
    """What only reads neither waits for the write lock nor holds it: while another process
    holds it for 3 s, a read answers at once, from before that writer's commit."""
    engine = make_engine(tmp_path)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_THE_WRITE_LOCK,
            str(tmp_path / "x.db"),
            "3",
            "INSERT INTO t VALUES (9)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with reads_only(), engine.begin() as connection:  # type: ignore[attr-defined]
            assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        assert time.monotonic() - started < 1.0
    finally:
        assert writer.wait(30) == 0
        writer.stdout.close()  # type: ignore[union-attr]
    with engine.begin() as connection:  # type: ignore[attr-defined]
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
