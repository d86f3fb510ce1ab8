"""``make bench``: jobyard's engine against bare Celery at its best, in one run.

Scenarios (``--only``, comma-separated; all by default):

- ``astar`` (a*) bare Celery at its best: one solo-pool process per core, prefetch 4,
  early acks, no task events, WARNING logs, the queue filled first — the engine's own
  limit; and the same with task events and INFO logs, as workers run for Flower;
- ``a``     (a) the Procfile's bare task (``bench.noop``, late acks, the ``worker`` line);
- ``b``     (b) one trigger of ``--executions`` at 0 ms with 1, then 2, worker processes,
  and one ``--fanout-executions`` job (its fan-out time);
- ``c``     (c) ``--slow-executions`` at ``--slow-latency-ms`` with 2 worker processes;
- ``d``     (d) long calls: ``--long-executions`` at 2 s + U[0, 8 s], then at a lognormal
  latency (median 3 s, p99 30 s), 2 worker processes of ``--capacity`` executions each:
  throughput, peak and mean in flight, the ratio to ``in flight / mean latency``, RSS per
  1,000 in flight (tests/bench/long_calls.py);
- ``e``     (e) the engine alone: one ``--engine-executions`` job of the ``echo`` type
  (examples/echo_job_type, installed) with the dispatcher and 2 worker processes: executions/s
  and CPU per execution in the workers and PostgreSQL, against (a*) (which runs with it);
- ``f``     fairness: a 50-execution job of another organisation, alone and beside a
  ``--fairness-executions`` job at 20 ms;
- ``k``     knowledge-base sync: a sync job's run over 100,000 source rows by the Procfile's
  processes (rows/s, where the time goes), and search latency over them;
- ``w``     a batch of ``--webhook-inputs`` inputs with a signed callback per input to a
  loopback receiver, through the Procfile's ``sender``: inputs/s, sends/s, the delay from
  finish to callback, and from the batch's end to its last callback; and another
  tenant's small batch while one receiver hangs (30 s) behind ``--webhook-backlog``
  callbacks: its delay from finish to callback; and as many callbacks already due, sent
  by the ``sender`` alone: its CPU per callback;
- ``r``     recovery with the default settings: Redis restarted empty in the middle of a
  job, and the dispatcher killed in the middle of a 100,000-execution fan-out — how long
  after each is back the work goes on and the job ends (tests/bench/recovery.py).

The run owns a PostgreSQL database (``jobyard_bench``, recreated, migrated, dropped at the
end) and a Redis DB (``redis://127.0.0.1:6379/12``, flushed). Figures are printed with the
targets of the engine issue and written to ``var/bench.json``; logs go to ``var/bench-*.log``.
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
    JOBYARD_ALLOW_PRIVATE_URLS="true",  # (k)'s source database is on loopback
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
from tests.bench.engine_alone import run_engine_alone  # noqa: E402
from tests.bench.infra import ROOT, drop_database, machine, recreate_database  # noqa: E402
from tests.bench.kb import run_kb  # noqa: E402
from tests.bench.long_calls import LOGNORMAL, UNIFORM, run_long_calls  # noqa: E402
from tests.bench.recovery import run_recovery  # noqa: E402
from tests.bench.scenarios import BenchContext, run_bare, run_fairness, run_job  # noqa: E402
from tests.bench.webhooks import (  # noqa: E402
    run_sender_alone,
    run_webhooks,
    run_webhooks_fairness,
)

SCENARIOS = ("astar", "a", "b", "c", "d", "e", "f", "w", "k", "r")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="no-ops of (a*) and (a)")
    parser.add_argument("--executions", type=int, default=20_000, help="executions of (b)")
    parser.add_argument("--fanout-executions", type=int, default=100_000, help="(b) fan-out job")
    parser.add_argument("--slow-executions", type=int, default=40_000, help="executions of (c)")
    parser.add_argument("--slow-latency-ms", type=float, default=500.0, help="latency of (c)")
    parser.add_argument("--long-executions", type=int, default=100_000, help="each job of (d)")
    parser.add_argument(
        "--capacity", type=int, default=10_000, help="executions in flight per worker in (d)"
    )
    parser.add_argument(
        "--long-latencies",
        default="uniform,lognormal",
        help="the latencies of (d): uniform (2 s + U[0, 8 s]), lognormal (median 3 s, p99 30 s)",
    )
    parser.add_argument("--engine-executions", type=int, default=100_000, help="executions of (e)")
    parser.add_argument("--fairness-executions", type=int, default=200_000, help="big job of (f)")
    parser.add_argument("--webhook-inputs", type=int, default=10_000, help="inputs of (w)")
    parser.add_argument(
        "--webhook-backlog", type=int, default=30_000, help="(w) hanging receiver's backlog"
    )
    parser.add_argument("--webhook-senders", type=int, default=1, help="sender processes of (w)")
    parser.add_argument(
        "--claimers",
        type=int,
        default=int(os.environ.get("WORKER_CLAIMERS", "4")),
        help="claimer threads per worker process, as the Procfile (default $WORKER_CLAIMERS or 4)",
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios to run")
    parser.add_argument(
        "--output", type=Path, default=VAR_DIR / "bench.json", help="JSON file of the figures"
    )
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        help="path of a py-spy binary: profile the first worker of (b)/(c)/(d)/(e), the sender of (w) (slows it down)",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the benchmark database afterwards"
    )
    args = parser.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not args.only <= set(SCENARIOS):
        parser.error(f"--only takes {', '.join(SCENARIOS)}")
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
        "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # (k)'s source database is on loopback
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
    cores = os.cpu_count() or 2
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "command": " ".join([Path(sys.executable).name, "-m", "tests.bench.run", *sys.argv[1:]]),
        "claimers_per_worker": args.claimers,
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
        claimers=args.claimers,
        cores=cores,
        var_dir=VAR_DIR,
        worker_env=worker_env,
        profiler=profiler if args.profile else None,
    )
    plan: list[tuple[str, str, Callable[[], dict[str, Any]]]] = []
    if "astar" in args.only or "e" in args.only:  # (e) is a ratio to (a*) of the same run
        plan.append(
            ("a*", "a_star_bare_celery_best", lambda: run_bare(ctx, args.messages, best=True))
        )
    if "astar" in args.only:
        plan.append(
            (
                "a*",
                "a_star_with_events_and_info_logs",
                lambda: run_bare(ctx, args.messages, best=True, quiet=False),
            )
        )
    if "a" in args.only:
        plan.append(("a", "a_procfile_bare_task", lambda: run_bare(ctx, args.messages, best=False)))
    if "b" in args.only:
        plan.append(("b", "b_0ms_1_worker", lambda: run_job(ctx, "b1", args.executions, 0, 1)))
        plan.append(("b", "b_0ms_2_workers", lambda: run_job(ctx, "b2", args.executions, 0, 2)))
        plan.append(("b", "b_fanout_job", lambda: run_job(ctx, "bf", args.fanout_executions, 0, 2)))
    if "c" in args.only:
        plan.append(
            (
                "c",
                "c_slow_2_workers",
                lambda: run_job(ctx, "c", args.slow_executions, args.slow_latency_ms, 2),
            )
        )
    if "d" in args.only:
        latencies = {"uniform": UNIFORM, "lognormal": LOGNORMAL}
        for name in args.long_latencies.split(","):
            key, latency = f"d_{name}_2_workers", latencies[name]
            plan.append(
                (
                    "d",
                    key,
                    lambda latency=latency, key=key: run_long_calls(
                        ctx, key.split("_")[1], args.long_executions, latency, 2, args.capacity
                    ),
                )
            )
    if "e" in args.only:
        plan.append(
            ("e", "e_engine_alone", lambda: run_engine_alone(ctx, args.engine_executions, 2))
        )
    if "f" in args.only:
        plan.append(
            ("f", "f_fairness", lambda: run_fairness(ctx, args.fairness_executions, 50, 20, 2))
        )

    if "k" in args.only:
        plan.append(("k", "k_knowledge_base_sync", lambda: run_kb(ctx)))
    if "w" in args.only:
        plan.append(
            (
                "w",
                "w_batch_callbacks",
                lambda: run_webhooks(ctx, args.webhook_inputs, senders=args.webhook_senders),
            )
        )
        plan.append(
            (
                "w",
                "w_sender_alone",
                lambda: run_sender_alone(ctx, args.webhook_inputs, args.webhook_senders),
            )
        )
        plan.append(
            (
                "w",
                "w_fairness_hanging_receiver",
                lambda: run_webhooks_fairness(ctx, args.webhook_backlog),
            )
        )
    if "r" in args.only:
        plan.append(("r", "r_recovery", lambda: run_recovery(ctx)))

    print(
        f"bench: database {BENCH_DB}, broker {REDIS_URL}, {cores} cores, {args.claimers} claimers"
    )
    recreate_database(SERVER_URL, BENCH_DB)
    reset_settings_cache()
    interrupted = False
    try:
        upgrade_database(DATABASE_URL)
        for letter, key, run in plan:
            print(f"bench: ({letter}) {key} ...", flush=True)
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
                rate = (
                    figures.get("tasks_per_s")
                    or figures.get("executions_per_s")
                    or figures.get("inputs_per_s")
                    or figures.get("rows_per_s")
                    or figures.get("sends_per_s")
                )
                print(f"bench: ({letter}) {key}: {rate}/s in {figures['elapsed_s']} s", flush=True)
    finally:
        dispose_engine(close=True)
        ctx.flush_broker()
        if not args.keep_db:
            drop_database(SERVER_URL, BENCH_DB)

    result["goals"] = report.goals(result)
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
