"""Fixtures of the sync-run tests."""

from __future__ import annotations

import pytest

from tests.kb_support import quiet_other_sync_jobs


@pytest.fixture(autouse=True)
def only_this_tests_jobs() -> None:
    quiet_other_sync_jobs()
