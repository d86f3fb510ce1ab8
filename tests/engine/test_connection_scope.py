"""The hot path's transaction helper, when the database drops the connection."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import connection_scope
from shared.settings import get_settings


def test_a_connection_lost_mid_transaction_raises_the_database_error() -> None:
    """The caller sees the database's error (what the heartbeat and the completer catch
    and survive), not SQLAlchemy's PendingRollbackError from tidying up after it."""
    admin_url = get_settings().database_url.replace("postgresql+psycopg://", "postgresql://")
    with pytest.raises(DBAPIError), connection_scope() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        connection.execute(text("SELECT 1"))
    with connection_scope() as connection:  # the pool hands out a working one next
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
