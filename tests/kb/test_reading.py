"""Reading source tables: every planned row is read by its batch, on each backend's own
way of storing times."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from shared.kb.reading import Watermark, plan_run, read_batch, reflect_table, shape_of


def write_sqlite(path: Path, column_type: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(
            f"CREATE TABLE orders (id INTEGER PRIMARY KEY, product TEXT, created_at {column_type})"
        )
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(i, f"product {i}", f"2026-11-01 12:{i // 60:02d}:{i % 60:02d}") for i in range(250)],
        )
    connection.close()


@pytest.mark.parametrize("column_type", ["TIMESTAMP", "DATETIME", "DATE", "TEXT"])
def test_every_planned_sqlite_row_is_read_whatever_its_time_type(
    tmp_path: Path, column_type: str
) -> None:
    """SQLite stores times as text ("2026-11-01 12:00:00"): bound back as SQLAlchemy's
    datetimes ("... 12:00:00.000000") the first row of each batch would be left out."""
    path = tmp_path / "orders.db"
    write_sqlite(path, column_type)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        shape = shape_of(
            reflect_table(connection, "orders"),
            filter_column="created_at",
            content_columns=["product"],
            id_column=None,
            metadata_columns=[],
        )
        plan = plan_run(connection, shape, None, 100)
        read = [row for batch in plan.batches for row in read_batch(connection, shape, batch)]
        assert plan.rows == 250 and len(read) == 250
        assert sorted(r["id"] for r in read) == list(range(250))
        # Incremental: from the watermark at row 199, the rows after it and none before.
        last = read[199]
        watermark = Watermark(last["created_at"], frozenset({"199"}))
        plan = plan_run(connection, shape, watermark, 100)
        again = [row for batch in plan.batches for row in read_batch(connection, shape, batch)]
        assert sorted(r["id"] for r in again if r["id"] != 199) == list(range(200, 250))
    engine.dispose()


def test_metadata_filters_match_values_lists_and_absent_keys() -> None:
    """The vectorised filter keeps Python's equality: 1 == 1.0, a list means any of its
    values, an absent key is None, and a value that cannot match (an object) matches
    nothing rather than failing."""
    import numpy as np

    from shared.kb.knowledge import _Matrix

    metadata = [
        {"category": "audio", "stock": 1},
        {"category": "kitchen", "stock": 2},
        {"category": "audio", "stock": 2.0},
        {"stock": 3},
    ]
    matrix = _Matrix(
        1,
        ["a", "b", "c", "d"],
        ["a:0", "b:0", "c:0", "d:0"],
        ["", "", "", ""],
        metadata,
        np.zeros((4, 2), dtype=np.float32),
    )
    assert matrix.passing({"category": "audio"}).tolist() == [0, 2]
    assert matrix.passing({"category": ["audio", "kitchen"]}).tolist() == [0, 1, 2]
    assert matrix.passing({"stock": 2}).tolist() == [1, 2]
    assert matrix.passing({"category": "audio", "stock": 2}).tolist() == [2]
    assert matrix.passing({"category": None}).tolist() == [3]
    assert matrix.passing({"category": {"nested": 1}}).tolist() == []
    assert matrix.passing({"colour": "red"}).tolist() == []
