"""The worker process's event loop, in a thread of its own.

Executors are coroutines: one loop per process holds every provider call in flight at
once (thousands, not one per thread). Celery's pool threads hand a group to the loop and
wait for it; the loop never runs database writes (those are the completer's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """An asyncio loop running forever in a daemon thread."""

    def __init__(self, name: str = "jobyard-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the loop; wait on the returned future from any thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs (calls a warm shutdown handed back), then stop."""
        if self.loop.is_running():
            # Stopped regardless of how that went: the process is leaving.
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self.submit(_cancel_the_others()).result(timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()  # its selector's sockets with it


async def _cancel_the_others() -> None:
    """Cancel every task of this loop but the current one, and wait for them to end."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
