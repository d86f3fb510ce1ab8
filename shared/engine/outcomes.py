"""How an attempt ended, and when a retryable failure is tried again."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Any

from shared.settings import get_settings


class OutcomeKind(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DEFERRED = "deferred"  # not attempted (throttled): the attempt is given back


@dataclass(frozen=True)
class Outcome:
    """An attempt's result: success, a failure (retryable or not), or deferred.

    ``cost`` is what the attempt cost (USD), whatever its result: a failed attempt that
    reached a paid API still counts. ``summary`` is a small digest of the result that job
    summaries aggregate (see ``Execution.summary``).
    """

    kind: OutcomeKind
    # Any JSON value (jobyard's own types give an object; an echo job, the item itself).
    result: Any = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None  # the remote's Retry-After, in seconds
    cost: float = 0.0
    defer_seconds: float = 0.0

    @property
    def success(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS

    @classmethod
    def succeeded(
        cls, result: Any, *, summary: dict[str, Any] | None = None, cost: float = 0.0
    ) -> Outcome:
        return cls(OutcomeKind.SUCCESS, result=result, summary=summary, cost=cost)

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        cost: float = 0.0,
        result: dict[str, Any] | None = None,
    ) -> Outcome:
        return cls(
            OutcomeKind.FAILURE,
            error=error,
            retryable=retryable,
            retry_after=retry_after,
            cost=cost,
            result=result,
        )

    @classmethod
    def deferred(cls, seconds: float) -> Outcome:
        """Not attempted: run it again in ``seconds`` without spending an attempt."""
        return cls(OutcomeKind.DEFERRED, defer_seconds=max(0.0, seconds))


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than the remote's Retry-After.

    The jittered part is capped (``JOBYARD_RETRY_BACKOFF_CAP_SECONDS``); a Retry-After
    longer than the cap is honoured all the same (dispatch then hands the retry out when
    it is due).
    """
    settings = get_settings()
    ceiling = min(
        settings.retry_backoff_cap_seconds, settings.retry_backoff_base_seconds * 2**attempt
    )
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
