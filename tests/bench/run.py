"""``make bench``: how fast does jobyard turn one trigger into finished executions?

Three scenarios, each with fresh worker processes started from the Procfile's own lines
(``worker``: the executions queue on a thread pool of ``$WORKER_CONCURRENCY`` threads,
default 200; ``dispatcher``: fan-out and maintenance, started for (b) and (c)):

(a) baseline — bare Celery: ``bench.noop`` x N through the same broker, queue and pool;
(b) one trigger of N executions through the API, simulated provider at 0 ms;
(c) the same at 500 ms simulated latency (bounded by concurrency / latency).

The run owns a PostgreSQL database (``jobyard_bench``, recreated, migrated, dropped at
the end) and a Redis DB (``redis://127.0.0.1:6379/12``, flushed). Figures are printed
and written to ``var/bench.json``; worker logs go to ``var/bench-worker-<s>.log``.

    .venv/bin/python -m tests.bench.run [--executions N] [--slow-executions N]
        [--only a,b,c] [--concurrency C] [--slow-latency-ms MS] [--profile PY_SPY]
"""

from __future__ import annotations

import os

# Every process of the run (this one and its workers) reads these; they must be set
# before any ``shared`` module reads its settings.
SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BENCH_DB = os.environ.get("BENCH_DB_NAME", "jobyard_bench")
DATABASE_URL = SERVER_URL.rsplit("/", 1)[0] + f"/{BENCH_DB}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ.update(
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    SECRET_KEY="bench-secret-key-for-jobyard-benchmarks-only-0123456789",
    JOBYARD_SIMULATE="true",
    JOBYARD_SIMULATED_LATENCY_MS="0",
    JOBYARD_SIMULATED_FAILURE_RATE="0",
)

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import AbstractContextManager  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any  # noqa: E402

from shared.db import dispose_engine  # noqa: E402
from shared.migrate import upgrade_database  # noqa: E402
from shared.settings import VAR_DIR, reset_settings_cache  # noqa: E402
from tests.bench import profiling, report  # noqa: E402
from tests.bench.infra import ROOT, drop_database, machine, recreate_database  # noqa: E402
from tests.bench.scenarios import BenchContext, run_baseline, run_trigger  # noqa: E402

DEFAULT_EXECUTIONS = 20_000
DEFAULT_SLOW_LATENCY_MS = 500.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument(
        "--executions",
        type=int,
        default=DEFAULT_EXECUTIONS,
        help="messages of (a) and executions of (b) (default %(default)s)",
    )
    parser.add_argument(
        "--slow-executions",
        type=int,
        default=DEFAULT_EXECUTIONS,
        help="executions of (c) (default %(default)s)",
    )
    parser.add_argument(
        "--slow-latency-ms",
        type=float,
        default=DEFAULT_SLOW_LATENCY_MS,
        help="simulated provider latency of (c) (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("WORKER_CONCURRENCY", "200")),
        help="worker threads, as the Procfile (default $WORKER_CONCURRENCY or 200)",
    )
    parser.add_argument(
        "--only", default="a,b,c", help="scenarios to run, comma-separated (default a,b,c)"
    )
    parser.add_argument(
        "--output", type=Path, default=VAR_DIR / "bench.json", help="JSON file of the figures"
    )
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        help="path of a py-spy binary: profile each scenario's worker (slows it down)",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the benchmark database afterwards"
    )
    args = parser.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not args.only <= {"a", "b", "c"}:
        parser.error("--only takes a, b and/or c")
    for name in ("executions", "slow_executions", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def worker_env(latency_ms: float) -> dict[str, str]:
    """The worker's environment: this run's database and broker, and the latency."""
    return {
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": os.environ["SECRET_KEY"],
        "JOBYARD_SIMULATE": "true",
        "JOBYARD_SIMULATED_LATENCY_MS": f"{latency_ms:g}",
        "JOBYARD_SIMULATED_FAILURE_RATE": "0",
    }


def git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}{'-dirty' if dirty else ''}" if head else None


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # clean up (workers, database) on SIGTERM too
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    n, n_slow = args.executions, args.slow_executions
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "command": " ".join([Path(sys.executable).name, "-m", "tests.bench.run", *sys.argv[1:]]),
        "worker_concurrency": args.concurrency,
        "worker_pool": "threads",
        "machine": machine(),
        "database": DATABASE_URL,
        "broker": REDIS_URL,
        "profiled": bool(args.profile),
        "scenarios": {},
        "errors": {},
    }

    profiles: dict[str, Path] = {}

    def profiler(scenario: str, pid: int) -> AbstractContextManager[None]:
        raw = VAR_DIR / f"bench-profile-{scenario}.txt"
        profiles[scenario] = raw
        return profiling.py_spy(args.profile, pid, raw)

    ctx = BenchContext(
        database_url=DATABASE_URL,
        redis_url=REDIS_URL,
        concurrency=args.concurrency,
        var_dir=VAR_DIR,
        worker_env=worker_env,
        profiler=profiler if args.profile else None,
    )
    plan: list[tuple[str, str, Callable[[], dict[str, Any]]]] = []
    if "a" in args.only:
        plan.append(("a", "a_baseline", lambda: run_baseline(ctx, n, timeout=120 + n / 100)))
    if "b" in args.only:
        plan.append(
            ("b", "b_trigger_0ms", lambda: run_trigger(ctx, "b", n, 0, timeout=120 + n / 20))
        )
    if "c" in args.only:
        latency = args.slow_latency_ms
        bound = args.concurrency / (latency / 1000) if latency else 1000.0
        plan.append(
            (
                "c",
                "c_trigger_slow",
                lambda: run_trigger(ctx, "c", n_slow, latency, timeout=120 + 3 * n_slow / bound),
            )
        )

    print(f"bench: database {BENCH_DB}, broker {REDIS_URL}, concurrency {args.concurrency}")
    recreate_database(SERVER_URL, BENCH_DB)
    reset_settings_cache()
    interrupted = False
    try:
        upgrade_database(DATABASE_URL)
        for letter, key, run in plan:
            print(f"bench: scenario ({letter}) {key} ...", flush=True)
            try:
                result["scenarios"][key] = run()
            except KeyboardInterrupt:
                interrupted = True
                result["errors"][key] = "interrupted"
                break
            except Exception as exc:
                traceback.print_exc()
                result["errors"][key] = repr(exc)
            else:
                figures = result["scenarios"][key]
                rate = figures.get("tasks_per_s") or figures.get("executions_per_s")
                print(f"bench: ({letter}) {rate}/s in {figures['elapsed_s']} s", flush=True)
    finally:
        dispose_engine(close=True)
        ctx.flush_broker()
        if not args.keep_db:
            drop_database(SERVER_URL, BENCH_DB)

    a = result["scenarios"].get("a_baseline")
    b = result["scenarios"].get("b_trigger_0ms")
    result["ratio_b_over_a"] = (
        round(b["executions_per_s"] / a["tasks_per_s"], 3) if a and b else None
    )
    result["worker_logs"] = ctx.logs
    if profiles:
        result["profiles"] = {s: profiling.write_summary(p) for s, p in profiles.items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    report.print_table(result)
    if result.get("profiles"):
        for scenario, summary in result["profiles"].items():
            print(f"\nprofile ({scenario}): {summary.get('samples', 0)} samples")
            for label in (
                "self_by_library_percent",
                "inclusive_by_library_percent",
                "inclusive_jobyard_functions_percent",
                "self_top_percent",
            ):
                print(f" {label}:")
                for name, pct in summary.get(label, [])[:10]:
                    print(f"  {pct:5.1f}%  {name}")
    for key, error in result["errors"].items():
        print(f"ERROR in {key}: {error}", file=sys.stderr)
    print(f"\nfigures written to {args.output}")
    if interrupted:
        return 130
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
