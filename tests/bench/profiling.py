"""Optional sampling profile of the worker with py-spy (not a dependency of the project).

``python -m tests.bench.run --profile PATH/TO/py-spy`` attaches ``py-spy record`` to the
worker of each measured scenario (raw collapsed stacks in ``var/bench-profile-<s>.txt``)
and summarises them: the frames where the samples are (self) and the share of samples
whose stack passes through each library (inclusive). Profiling slows the worker down, so
figures from a profiled run are not the benchmark's figures.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Library buckets, by how the frame's file name starts (py-spy names files relative to
# their ``sys.path`` entry: ``shared/db.py``, ``sqlalchemy/orm/session.py``).
BUCKETS = (
    ("jobyard", ("shared/", "worker/", "api/")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("psycopg", ("psycopg/", "psycopg_binary/", "psycopg_pool/")),
    ("kombu", ("kombu/",)),
    ("redis-py", ("redis/",)),
    ("celery", ("celery/", "billiard/", "vine/")),
    ("logging", ("logging/",)),
    ("json", ("json/",)),
    ("threading", ("threading.py", "concurrent/", "queue.py")),
)

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


@contextmanager
def py_spy(
    binary: str, pid: int, output: Path, rate: int = 100, *, gil: bool = True
) -> Iterator[None]:
    """Record ``pid`` for the duration of the block (SIGINT makes py-spy write its file).

    With ``gil`` only the thread holding the GIL is sampled: where the worker's Python
    CPU goes (its threads share one GIL, so that is its ceiling), not where it waits.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    log = output.with_suffix(".log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
            *(["--gil"] if gil else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def _bucket(file: str) -> str | None:
    for name, prefixes in BUCKETS:
        if file.startswith(prefixes):
            return name
    return None


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top self frames and per-library inclusive shares of a py-spy raw (collapsed) file."""
    self_counts: Counter[str] = Counter()
    self_libraries: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    jobyard_functions: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        self_counts[leaf] += count
        leaf_match = FRAME.match(leaf)
        self_libraries[_bucket(leaf_match.group("file") if leaf_match else leaf) or "other"] += (
            count
        )
        buckets: set[str] = set()
        functions: set[str] = set()
        for frame in frames:
            match = FRAME.match(frame)
            file = match.group("file") if match else frame
            bucket = _bucket(file)
            if bucket:
                buckets.add(bucket)
            if bucket == "jobyard" and match:
                functions.add(f"{match.group('func')} ({Path(file).name})")
        for bucket in buckets:
            inclusive[bucket] += count
        for function in functions:
            jobyard_functions[function] += count
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "self_by_library_percent": share(self_libraries),
        "self_top_percent": share(self_counts),
        "inclusive_by_library_percent": share(inclusive),
        "inclusive_jobyard_functions_percent": share(jobyard_functions),
    }


def write_summary(raw: Path) -> dict[str, Any]:
    summary = summarise(raw) if raw.exists() else {"samples": 0, "error": "no profile written"}
    raw.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return summary
