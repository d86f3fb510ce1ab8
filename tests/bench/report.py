"""The benchmark's figures as a table, with the engine issue's targets (rich when
installed, plain text otherwise)."""

from __future__ import annotations

import importlib.util
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the engine issue: its figure and whether it is met."""
    s = result["scenarios"]
    out: list[dict[str, Any]] = []

    def goal(name: str, value: Any, met: bool) -> None:
        out.append({"goal": name, "value": value, "met": met})

    astar = s.get("a_star_bare_celery_best")
    b2 = s.get("b_0ms_2_workers")
    if astar and b2:
        ratio = round(b2["executions_per_s"] / astar["tasks_per_s"], 2)
        goal("(b) >= 2 x (a*) executions/s", f"{ratio} x", ratio >= 2)
    loud = s.get("a_star_with_events_and_info_logs")
    if loud and b2:
        ratio = round(b2["executions_per_s"] / loud["tasks_per_s"], 2)
        goal("(b) >= 2 x (a*) with events and INFO logs", f"{ratio} x", ratio >= 2)
    fanout = s.get("b_fanout_job")
    if fanout:
        goal(
            f"fan-out of {fanout['executions']:,} <= 5 s",
            f"{fanout['fanout_s']} s",
            fanout["fanout_s"] is not None and fanout["fanout_s"] <= 5,
        )
    e = s.get("e_engine_alone")
    if astar and e:
        ratio = round(e["executions_per_s"] / astar["tasks_per_s"], 2)
        goal("(e) the engine alone >= 3 x (a*) executions/s", f"{ratio} x", ratio >= 3)
    c = s.get("c_slow_2_workers")
    if c:
        goal("(c) >= 2,000 executions/s", c["executions_per_s"], c["executions_per_s"] >= 2000)
        goal("(c) >= 1,000 in flight (mean)", c["mean_in_flight"], c["mean_in_flight"] >= 1000)
        share = c.get("share_of_bound") or 0
        goal("(c) within 10% of the latency bound", f"{share:.0%}", share >= 0.9)
    d = s.get("d_uniform_2_workers")
    if d:
        goal(
            "(d) 2 s + U[0, 8 s]: >= 2,500 executions/s end to end",
            d["executions_per_s"],
            d["executions_per_s"] >= 2500,
        )
        share = d.get("share_of_bound") or 0
        goal(
            "(d) 2 s + U[0, 8 s]: >= 90% of in flight / mean latency", f"{share:.0%}", share >= 0.9
        )
    if astar and b2:
        ratio = round(b2["executions_per_s"] / astar["tasks_per_s"], 2)
        goal("(b) stays >= 1.3 x (a*)", f"{ratio} x", ratio >= 1.3)
    r = s.get("r_recovery")
    if r:
        redis_fault = r["redis_restart_empty"]["with_fault"]
        goal(
            "(r) Redis back empty: the job ends <= 30 s after",
            f"{redis_fault['ended_after_redis_back_s']} s (work again after "
            f"{redis_fault['resumed_after_redis_back_s']} s)",
            redis_fault["ended_after_redis_back_s"] <= 30,
        )
        killed = r["dispatcher_kill_during_fan_out"]["with_fault"]
        goal(
            "(r) dispatcher killed mid-fan-out: the fan-out goes on <= 30 s after its restart",
            f"{killed['fan_out_resumed_after_restart_s']} s (job ended "
            f"{killed['ended_after_restart_s']} s after)",
            killed["fan_out_resumed_after_restart_s"] <= 30,
        )
    k = s.get("k_knowledge_base_sync")
    if k:
        goal(
            "(k) sync >= 5,000 rows/s (built-in embedder)", k["rows_per_s"], k["rows_per_s"] >= 5000
        )
        goal(
            "(k) search p99 <= 50 ms at 100,000 chunks",
            k["search_p99_ms"],
            k["search_p99_ms"] <= 50,
        )
    rss = [mb for figures in s.values() for mb in figures.get("peak_rss_mb_per_worker", [])]
    if rss:
        goal("worker RSS <= 300 MB per process", f"{max(rss)} MB", max(rss) <= 300)
    jobs = [f for f in s.values() if "counters_exact" in f]
    if jobs:
        goal("counters exact in every scenario", "yes", all(f["counters_exact"] for f in jobs))
    f = s.get("f_fairness")
    if f:
        goal(
            "a 50-execution job beside a 200,000 one: within seconds",
            f"{f['small_job_beside_big_s']} s (alone {f['small_job_alone_s']} s)",
            f["small_job_beside_big_s"] < 10,
        )
    return out


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, note) rows of the summary table."""
    s = result["scenarios"]
    out: list[tuple[str, str, str]] = []
    for key, label in (
        ("a_star_bare_celery_best", "(a*)"),
        ("a_star_with_events_and_info_logs", "(a*) with events + INFO logs,"),
        ("a_procfile_bare_task", "(a)"),
    ):
        a = s.get(key)
        if a:
            out.append(
                (
                    f"{label} bare Celery no-op, {a['processes']} process(es)",
                    f"{_fmt(a['tasks_per_s'])} tasks/s",
                    f"{_fmt(a['messages'])} drained in {_fmt(a['elapsed_s'])} s; "
                    f"{_fmt(a['worker_cpu_ms_per_task'])} ms worker CPU per task",
                )
            )
    for key, label in (
        ("b_0ms_1_worker", "(b) 0 ms, 1 worker"),
        ("b_0ms_2_workers", "(b) 0 ms, 2 workers"),
        ("b_fanout_job", "(b) 0 ms, big job, 2 workers"),
        ("c_slow_2_workers", "(c) slow, 2 workers"),
        ("d_uniform_2_workers", "(d) 2 s + U[0, 8 s], 2 workers"),
        ("d_lognormal_2_workers", "(d) lognormal 3 s / p99 30 s, 2 workers"),
    ):
        b = s.get(key)
        if not b:
            continue
        cpu = b["cpu_ms_per_execution"]
        note = (
            f"{_fmt(b['executions'])} in {_fmt(b['elapsed_s'])} s; fan-out {_fmt(b['fanout_s'])} s; "
            f"CPU/execution {_fmt(cpu['workers'])} ms workers, "
            f"{_fmt(cpu['workers+dispatcher+postgres+redis'])} ms all"
        )
        out.append((label, f"{_fmt(b['executions_per_s'])} executions/s", note))
        if b.get("latency_bound_per_s"):
            out.append(
                (
                    f"{label}: in flight",
                    f"mean {_fmt(b['mean_in_flight'])}, peak {_fmt(b['peak_in_flight'])}",
                    f"bound {_fmt(b['latency_bound_per_s'])}/s at "
                    f"{_fmt(b.get('simulated_latency_ms', b.get('simulated_latency')))} ms; "
                    f"{100 * b['share_of_bound']:.0f}% of it",
                )
            )
        out.append(
            (
                f"{label}: memory",
                f"{_fmt(b['peak_rss_mb_per_worker'])} MB RSS",
                f"Redis queue peak {_fmt(b['peak_executions_queue_messages'])} msgs, "
                f"+{_fmt(b['redis_used_memory_growth_mb'])} MB",
            )
        )
    e = s.get("e_engine_alone")
    if e:
        cpu = e["cpu_ms_per_execution"]
        out.append(
            (
                f"(e) the engine alone (echo type), {e['worker_processes']} workers",
                f"{_fmt(e['executions_per_s'])} executions/s",
                f"{_fmt(e['executions'])} in {_fmt(e['elapsed_s'])} s; fan-out "
                f"{_fmt(e['fanout_s'])} s; CPU/execution {_fmt(cpu['workers'])} ms workers, "
                f"{_fmt(cpu['postgres_bench_database'])} ms PostgreSQL, "
                f"{_fmt(cpu['dispatcher'])} ms dispatcher, {_fmt(cpu['redis'])} ms Redis",
            )
        )
    f = s.get("f_fairness")
    if f:
        out.append(
            (
                "fairness: 50 executions beside a big job",
                f"{_fmt(f['small_job_beside_big_s'])} s",
                f"alone {_fmt(f['small_job_alone_s'])} s; the {_fmt(f['big_job_executions'])}"
                f"-execution job had {_fmt(f['big_job_success_when_small_done'])} done",
            )
        )
        out.append(
            (
                "fairness: Redis during the big job",
                f"{_fmt(f['peak_executions_queue_messages'])} msgs peak",
                f"+{_fmt(f['redis_used_memory_growth_mb'])} MB used memory; big job "
                f"{_fmt(f['big_job_executions_per_s'])}/s",
            )
        )
    w = s.get("w_batch_callbacks")
    if w:
        out.append(
            (
                f"(w) batch of {_fmt(w['inputs'])} with a callback each, "
                f"{_fmt(w['sender_processes'])} sender(s)",
                f"{_fmt(w['inputs_per_s'])} inputs/s",
                f"{_fmt(w['callbacks_received'])} callbacks at {_fmt(w['sends_per_s'])} sends/s "
                f"({_fmt(w['requests_unsigned'])} unsigned); all in {_fmt(w['all_callbacks_s'])} s",
            )
        )
        out.append(
            (
                "(w) finish to callback (target p99 <= 1 s)",
                f"p99 {_fmt(w['callback_delay_p99_s'])} s",
                f"p50 {_fmt(w['callback_delay_p50_s'])} s, max {_fmt(w['callback_delay_max_s'])} s",
            )
        )
        out.append(
            (
                "(w) batch completed to its last callback (target <= 2 s)",
                f"{_fmt(w['last_callback_after_batch_s'])} s",
                "the batch's own callback, after every data point's",
            )
        )
    ws = s.get("w_sender_alone")
    if ws:
        out.append(
            (
                f"(w) the sender alone, {_fmt(ws['callbacks'])} callbacks due, "
                f"{_fmt(ws['sender_processes'])} sender(s)",
                f"{_fmt(ws['sender_cpu_ms_per_callback'])} CPU ms a callback",
                f"{_fmt(ws['sends_per_s'])} sends/s ({_fmt(ws['requests_unsigned'])} unsigned); "
                f"the receiver {_fmt(ws['receiver_cpu_ms_per_callback'])} CPU ms a callback",
            )
        )
    wf = s.get("w_fairness_hanging_receiver")
    if wf:
        out.append(
            (
                f"(w) another tenant beside a hanging receiver "
                f"({_fmt(wf['hanging_backlog'])} due) (target <= 2 s)",
                f"max {_fmt(wf['other_delay_max_s'])} s",
                f"{_fmt(wf['other_callbacks_received'])} of {_fmt(wf['other_inputs'])} "
                f"callbacks from finish; the hanging receiver held "
                f"{_fmt(wf['hanging_requests_held'])} requests",
            )
        )
    k = s.get("k_knowledge_base_sync")
    if k:
        share = k["batch_time_share"]
        out.append(
            (
                f"(k) sync of {_fmt(k['rows'])} rows into a knowledge base",
                f"{_fmt(k['rows_per_s'])} rows/s",
                f"{k['worker_processes']} workers; batch time: read {share['read']:.0%}, "
                f"embed {share['embed']:.0%}, write {share['write']:.0%}; CPU per 1,000 rows: "
                f"workers {_fmt(k['cpu_ms_per_1000_rows']['worker'])} ms, PostgreSQL "
                f"{_fmt(k['cpu_ms_per_1000_rows']['postgres'])} ms",
            )
        )
        out.append(
            (
                f"(k) search over {_fmt(k['search_chunks'])} chunks",
                f"p99 {_fmt(k['search_p99_ms'])} ms",
                f"p50 {_fmt(k['search_p50_ms'])} ms; with a metadata filter p50 "
                f"{_fmt(k['filtered_search_p50_ms'])} ms, p99 {_fmt(k['filtered_search_p99_ms'])} ms",
            )
        )
    for g in result.get("goals", []):
        out.append((f"goal: {g['goal']}", "met" if g["met"] else "NOT MET", _fmt(g["value"])))
    return out


def cpu_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for name, scenario in result["scenarios"].items():
        cpu = scenario.get("cpu_seconds") or {}
        if cpu:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
            out.append((f"{name} CPU s", parts, f"over {scenario['elapsed_s']:.1f} s wall"))
    return out


def print_table(result: dict[str, Any]) -> None:
    table_rows = rows(result) + cpu_rows(result)
    if not table_rows:
        return
    if importlib.util.find_spec("rich") is not None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"jobyard bench — {result['timestamp']}")
        for column in ("figure", "value", "note"):
            table.add_column(column)
        for row in table_rows:
            table.add_row(*row)
        Console(width=200).print(table)
        return
    widths = [max(len(r[i]) for r in table_rows) for i in range(3)]
    print(f"jobyard bench — {result['timestamp']}")
    print("  ".join(h.ljust(w) for h, w in zip(("figure", "value", "note"), widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in table_rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
