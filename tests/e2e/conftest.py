"""End-to-end tests start from a quiet system: no queued messages and no unfinished jobs
left by earlier tests (a sweep would otherwise dispatch those too)."""

from __future__ import annotations

import pytest
import redis

from shared.db import session_scope
from tests.support import remove_all_jobs


@pytest.fixture(autouse=True)
def clean_slate(broker: redis.Redis) -> None:
    """Empty the test Redis and remove every job (and its executions) from the database,
    and the heartbeat rows of earlier tests' workers (a killed one stays "live" for the
    dead-after time, and counts in dispatch's room and the slots gauge)."""
    broker.flushdb()
    with session_scope() as session:
        remove_all_jobs(session)
