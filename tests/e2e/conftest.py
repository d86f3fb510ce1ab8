"""End-to-end tests start from a quiet system: no queued messages and no unfinished jobs
left by earlier tests (a sweep would otherwise dispatch those too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.db import session_scope
from shared.settings import reset_settings_cache
from tests.support import RedisServer, remove_all_jobs


@pytest.fixture(autouse=True)
def clean_slate(broker: redis.Redis) -> None:
    """Empty the test Redis and remove every job (and its executions) from the database,
    and the heartbeat rows of earlier tests' workers (a killed one stays "live" for the
    dead-after time, and counts in dispatch's room and the slots gauge)."""
    broker.flushdb()
    with session_scope() as session:
        remove_all_jobs(session)


@pytest.fixture
def own_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A Redis without persistence of this test's own (it may kill and restart it), used by
    the API here and by the workers it starts."""
    server = RedisServer(tmp_path)
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    reset_settings_cache()
    yield server
    server.kill()
    monkeypatch.undo()
    reset_settings_cache()
