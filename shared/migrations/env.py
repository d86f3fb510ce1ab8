"""Alembic environment: migrations run against the configured (or given) database."""

from __future__ import annotations

from alembic import context

from shared.db import build_engine
from shared.migrate import load_every_model

config = context.config
# Every domain's tables, not only those shared.models imports (each domain keeps its own).
target_metadata = load_every_model()


def run_migrations_online() -> None:
    url = config.attributes.get("database_url")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = build_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode for ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
