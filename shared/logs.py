"""Structured logs: the ids a line is about, carried in a context variable.

Every log record gets the ids bound in the current context (:func:`bound`):
``organisation_id``, ``job_id``, ``execution_id``, ``task_id`` (and ``task``, the Celery
task's name). The API binds the organisation when it authenticates a request and notes
the jobs a create starts (:func:`note_jobs`); the publisher sends a fan-out's ids in the
Celery message's headers (:func:`message_headers`); the worker binds them, with the task
id, around each task (worker/celery_app.py). An id given in ``extra=`` wins over the
context's.

``JOBYARD_LOG_FORMAT=json`` (the default) writes one JSON object per line
(python-json-logger); ``text`` writes Celery's usual line with the ids appended.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

# The ids a log line may be about, in the order text lines show them.
IDS = ("organisation_id", "job_id", "execution_id", "task_id", "task", "job_ids", "execution_ids")
# The Celery message header that carries the ids from the publisher to the task.
HEADER = "jobyard_log_context"

_context: ContextVar[dict[str, Any]] = ContextVar("jobyard_log_context", default={})  # noqa: B039 - never mutated


def _text(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple | set):
        return [_text(v) for v in value]
    return value


def bind(**ids: Any) -> Token[dict[str, Any]]:
    """Add ``ids`` (None values are skipped) to the current context; :func:`reset` undoes."""
    added = {name: _text(value) for name, value in ids.items() if value is not None}
    return _context.set({**_context.get(), **added})


def reset(token: Token[dict[str, Any]]) -> None:
    _context.reset(token)


def fresh() -> Token[dict[str, Any]]:
    """An empty context (a new request on a reused thread); :func:`reset` restores the
    one before."""
    return _context.set({})


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """The ids bound for the block."""
    token = bind(**ids)
    try:
        yield
    finally:
        reset(token)


def current() -> dict[str, Any]:
    """The ids bound now (a copy)."""
    return dict(_context.get())


def note_jobs(job_ids: Iterable[uuid.UUID]) -> None:
    """The jobs this request (or task) created: ``job_id`` when one, else ``job_ids``."""
    context = _context.get()
    earlier = [context["job_id"]] if "job_id" in context else context.get("job_ids", [])
    noted = list(dict.fromkeys([*earlier, *(str(i) for i in job_ids)]))
    rest = {k: v for k, v in context.items() if k not in ("job_id", "job_ids")}
    if len(noted) == 1:
        rest["job_id"] = noted[0]
    elif noted:
        rest["job_ids"] = noted
    _context.set(rest)


def message_headers(**ids: Any) -> dict[str, dict[str, Any]]:
    """Celery message headers carrying the organisation of the context and ``ids``."""
    carried = {k: v for k, v in current().items() if k == "organisation_id"}
    carried.update({name: _text(value) for name, value in ids.items() if value is not None})
    return {HEADER: carried}


class ContextFilter(logging.Filter):
    """Puts the context's ids on every record (an ``extra=`` id of the call wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """Celery's line (``[time: LEVEL/process] logger: message``) and then ``key=value``."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name}={getattr(record, name)}" for name in IDS if hasattr(record, name)]
        return f"{line} [{' '.join(ids)}]" if ids else line


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(processName)s %(process)d %(message)s",
        rename_fields={
            "asctime": "time",
            "levelname": "level",
            "name": "logger",
            "process": "pid",  # gunicorn's and Celery's forks share a process name
            "processName": "process",
        },
        json_ensure_ascii=False,
    )


def formatter(log_format: str) -> logging.Formatter:
    return json_formatter() if log_format == "json" else TextFormatter()


_HANDLER_NAME = "jobyard"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is written (Celery and gunicorn
    redirect it, and so does a test's capture)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_logging(
    log_format: str, level: int | str = logging.INFO, stream: IO[str] | None = None
) -> logging.Handler:
    """One handler on the root logger (replacing the one an earlier call installed), in
    ``log_format`` ("json" or "text"), with the context's ids on every record."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler
