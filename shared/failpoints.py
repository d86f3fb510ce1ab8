"""Failpoints: named places where a process kills itself, so that a test can prove what a
crash exactly there leaves behind (a request killed between its create and the storing of
its answer, say). ``JOBYARD_FAILPOINTS`` names the active ones; it is empty by default,
and a point that is not named costs one set lookup."""

from __future__ import annotations

import os
import signal

from shared.settings import get_settings


def active() -> frozenset[str]:
    """The failpoints ``JOBYARD_FAILPOINTS`` names."""
    return frozenset(n.strip() for n in get_settings().failpoints.split(",") if n.strip())


def reached(name: str) -> None:
    """Die here, as a crash would (SIGKILL: no cleanup, no rollback sent, no answer), when
    ``name`` is active."""
    if name in active():
        os.kill(os.getpid(), signal.SIGKILL)
