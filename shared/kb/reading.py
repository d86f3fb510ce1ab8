"""Reading a source table: its reflected shape, the plan of a run's batches, and a batch.

Names are never interpolated: the table is reflected (``MetaData.reflect(only=[name])``)
and every column is taken from the reflected ``Table``, so SQLAlchemy quotes them.

A run reads ``filter_column >= watermark`` (the whole table on its first run), in
``(filter value, row key)`` order. The plan cuts those rows into batches of
``JOBYARD_KB_SYNC_BATCH_ROWS``; each batch is the inclusive range between its first and
last ``(filter, key)``, so a batch reads exactly its rows with one indexed range query.
A table with no key (no primary key and no ``id_column``) is cut only between distinct
filter values. The watermark's own rows (the keys already written at its value) are left
out: the boundary is re-read, never written twice and never missed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    MetaData,
    Table,
    Text,
    Time,
    and_,
    event,
    func,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection

# -- values in JSON ---------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """A filter or key value as JSON that :func:`decode` turns back into the same value."""
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, time):
        return {"time": value.isoformat()}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((kind, text),) = value.items()
        if kind == "datetime":
            return datetime.fromisoformat(text)
        if kind == "date":
            return date.fromisoformat(text)
        if kind == "time":
            return time.fromisoformat(text)
        if kind == "decimal":
            return Decimal(text)
        if kind == "bytes":
            return bytes.fromhex(text)
    return value


def key_text(values: Sequence[Any]) -> str:
    """A row key as the text the KB and the watermark know it by."""
    return ":".join(str(v) for v in values)


def content_of(row: dict[str, Any], content_columns: Sequence[str]) -> str:
    return "\n".join(str(row[c]) for c in content_columns if row.get(c) is not None)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# -- the table's shape ------------------------------------------------------------------------


class TableMissing(LookupError):
    pass


def reflect_table(connection: Connection, name: str) -> Table:
    """The table called ``name`` as the database describes it (TableMissing otherwise).
    Only an exact, existing name is reflected: a name is looked up, never run."""
    if name not in inspect(connection).get_table_names():
        raise TableMissing(name)
    metadata = MetaData()
    if connection.dialect.name == "sqlite":
        event.listen(metadata, "column_reflect", _sqlite_times_as_stored)
    metadata.reflect(connection, only=[name])
    return metadata.tables[name]


def _sqlite_times_as_stored(_inspector: Any, _table: Table, column: dict[str, Any]) -> None:
    """SQLite keeps times as text and compares them as text: read and bind them as the
    text they are stored as. (Read as datetimes, they would be bound back in SQLAlchemy's
    own format, "... 12:00:00.000000", which sorts after the stored "... 12:00:00" and
    would leave the boundary row out of its batch.)"""
    if isinstance(column["type"], Date | DateTime | Time):
        column["type"] = Text()


@dataclass(frozen=True)
class SourceShape:
    """What a sync needs of its table, every column a reflected one."""

    table: Table
    filter_column: Column[Any]
    key_columns: tuple[Column[Any], ...]  # id_column, else the primary key; () for none
    content_columns: tuple[str, ...]
    metadata_columns: tuple[str, ...]

    @property
    def keyed(self) -> bool:
        return bool(self.key_columns)

    def order(self) -> tuple[Column[Any], ...]:
        return (self.filter_column, *self.key_columns)


def missing_columns(table: Table, names: Iterable[str]) -> list[str]:
    return [n for n in names if n not in table.c]


def shape_of(
    table: Table,
    *,
    filter_column: str,
    content_columns: Sequence[str],
    id_column: str | None,
    metadata_columns: Sequence[str],
) -> SourceShape:
    """The shape for these column names (KeyError naming the first one the table lacks)."""
    for name in (filter_column, *content_columns, *(c for c in [id_column] if c)):
        if name not in table.c:
            raise KeyError(name)
    if id_column:
        keys: tuple[Column[Any], ...] = (table.c[id_column],)
    else:
        keys = tuple(table.primary_key.columns)
    return SourceShape(
        table=table,
        filter_column=table.c[filter_column],
        key_columns=keys,
        content_columns=tuple(content_columns),
        metadata_columns=tuple(c for c in metadata_columns if c in table.c),
    )


# -- the plan of a run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Watermark:
    """Where the last committed batch ended: its filter value and the keys written at it."""

    value: Any
    keys: frozenset[str]

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Watermark | None:
        if not data:
            return None
        return cls(decode(data["value"]), frozenset(data.get("ids") or ()))

    def covers(self, filter_value: Any, key: str) -> bool:
        """Whether this row was written at the boundary already."""
        return filter_value == self.value and key in self.keys


@dataclass
class Plan:
    batches: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    rows_without_filter_value: int = 0


def plan_run(
    connection: Connection, shape: SourceShape, watermark: Watermark | None, batch_rows: int
) -> Plan:
    """Cut the rows this run must read into batches (one pass over the keys, streamed)."""
    plan = Plan()
    plan.rows_without_filter_value = int(
        connection.execute(
            select(func.count()).select_from(shape.table).where(shape.filter_column.is_(None))
        ).scalar_one()
    )
    since = (
        shape.filter_column >= watermark.value
        if watermark is not None
        else shape.filter_column.is_not(None)
    )
    if shape.keyed:
        rows: Iterator[Any] = connection.execution_options(yield_per=10_000).execute(
            select(*shape.order()).where(since).order_by(*shape.order())
        )
        _cut_keyed(plan, rows, watermark, batch_rows)
    else:
        counted = connection.execute(
            select(shape.filter_column, func.count())
            .where(since)
            .group_by(shape.filter_column)
            .order_by(shape.filter_column)
        )
        _cut_by_value(plan, counted, batch_rows)
    return plan


def _cut_keyed(
    plan: Plan, rows: Iterator[Any], watermark: Watermark | None, batch_rows: int
) -> None:
    first: Sequence[Any] | None = None
    last: Sequence[Any] = ()
    count = 0
    for row in rows:
        if watermark is not None and watermark.covers(row[0], key_text(row[1:])):
            continue
        if first is None:
            first = row
        last, count = row, count + 1
        if count == batch_rows:
            _add(plan, first, last, count)
            first, count = None, 0
    if first is not None:
        _add(plan, first, last, count)


def _cut_by_value(plan: Plan, counted: Iterable[Any], batch_rows: int) -> None:
    first: Any = None
    last: Any = None
    count, started = 0, False
    for value, n in counted:
        if not started:
            first, started = value, True
        last, count = value, count + int(n)
        if count >= batch_rows:
            _add(plan, (first,), (last,), count)
            count, started = 0, False
    if started:
        _add(plan, (first,), (last,), count)


def _add(plan: Plan, first: Sequence[Any], last: Sequence[Any], count: int) -> None:
    plan.batches.append(
        {
            "n": len(plan.batches),
            "from": [encode(v) for v in first],
            "to": [encode(v) for v in last],
            "rows": count,
        }
    )
    plan.rows += count


# -- one batch ---------------------------------------------------------------------------------


def read_batch(
    connection: Connection, shape: SourceShape, batch: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows of one planned batch, in order, as dicts of the columns the sync uses."""
    low = [decode(v) for v in batch["from"]]
    high = [decode(v) for v in batch["to"]]
    wanted = {
        shape.filter_column.name,
        *(c.name for c in shape.key_columns),
        *shape.content_columns,
        *shape.metadata_columns,
    }
    columns = [c for c in shape.table.c if c.name in wanted]
    f = shape.filter_column
    # The plain range on the filter column lets a one-column index on it serve the read.
    where = [f >= low[0], f <= high[0]]
    if shape.keyed:
        order = tuple_(*shape.order())
        where += [order >= tuple_(*low), order <= tuple_(*high)]
    result = connection.execute(select(*columns).where(and_(*where)).order_by(*shape.order()))
    return [dict(row._mapping) for row in result]


def row_key(shape: SourceShape, row: dict[str, Any]) -> str:
    """The row's key: its key columns, or a hash of its content when it has none."""
    if shape.keyed:
        return key_text([row[c.name] for c in shape.key_columns])
    return content_hash(content_of(row, shape.content_columns))
