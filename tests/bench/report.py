"""Print the benchmark's figures as a table (rich when installed, plain text otherwise)."""

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
    return str(value)


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, note) rows of the summary table."""
    out: list[tuple[str, str, str]] = []
    a = result["scenarios"].get("a_baseline")
    b = result["scenarios"].get("b_trigger_0ms")
    c = result["scenarios"].get("c_trigger_slow")
    if a:
        out += [
            (
                "(a) bare Celery no-op",
                f"{_fmt(a['tasks_per_s'])} tasks/s",
                f"{_fmt(a['messages'])} msgs in {_fmt(a['elapsed_s'])} s "
                f"(worker log: {_fmt(a['log_tasks_per_s'])}/s)",
            ),
            (
                "(a) pre-filled queue drain",
                f"{_fmt(a['prefilled_tasks_per_s'])} tasks/s",
                "worker alone: first receipt -> queue empty",
            ),
            (
                "(a) publish rate",
                f"{_fmt(a['publish_per_s'])} msgs/s",
                f"{_fmt(a['publish_s'])} s to publish",
            ),
            ("(a) worker peak RSS", f"{_fmt(a['peak_rss_mb'])} MB", ""),
        ]
    for key, label in ((b, "(b)"), (c, "(c)")):
        if not key:
            continue
        s = key["stages"]
        bound = key["theoretical_bound_per_s"]
        out += [
            (
                f"{label} trigger, {_fmt(key['simulated_latency_ms'])} ms latency",
                f"{_fmt(key['executions_per_s'])} executions/s",
                f"{_fmt(key['executions'])} in {_fmt(key['elapsed_s'])} s"
                + (f"; bound {_fmt(bound)}/s ({100 * key['share_of_bound']:.0f}%)" if bound else "")
                + f"; exact end {_fmt(key['exact_executions_per_s'])}/s",
            ),
            (f"{label} trigger request", f"{_fmt(key['trigger_latency_ms'])} ms", "test client"),
            (
                f"{label} fan-out",
                f"{_fmt(s['fanout_duration_s'])} s",
                f"done at +{_fmt(s['fanout_finished_s'])} s; "
                f"{_fmt(s['rate_during_fanout_per_s'])}/s during, "
                f"{_fmt(s['rate_after_fanout_per_s'])}/s after",
            ),
            (
                f"{label} time in task",
                f"p50 {_fmt(s['in_task_p50_ms'])} ms",
                f"p95 {_fmt(s['in_task_p95_ms'])} ms (claim -> finish)",
            ),
            (
                f"{label} peak in flight",
                _fmt(key["peak_in_flight"]),
                f"live leases, 0.2 s samples (mean {_fmt(key['mean_in_flight'])}); "
                f"backends waiting on a lock: peak {_fmt(key['peak_lock_waiters'])}, "
                f"mean {_fmt(key['mean_lock_waiters'])}",
            ),
            (f"{label} worker peak RSS", f"{_fmt(key['peak_rss_mb'])} MB", ""),
        ]
    for key, label, count in (
        (a, "(a)", "messages"),
        (b, "(b)", "executions"),
        (c, "(c)", "executions"),
    ):
        if key and (key.get("cpu_seconds") or {}).get("worker"):
            per_item = 1000 * key["cpu_seconds"]["worker"] / key[count]
            out.append(
                (f"{label} worker CPU per item", f"{per_item:.2f} ms", "what bounds a 2-core box")
            )
    ratio = result.get("ratio_b_over_a")
    if ratio is not None:
        out.append(("(b)/(a)", _fmt(ratio), "executions/s over tasks/s"))
        out.append(("goal (b)/(a) >= 0.8", "met" if ratio >= 0.8 else "not met", ""))
    if c:
        met = c["executions_per_s"] >= 1000 and c["peak_in_flight"] >= 500
        out.append(
            (
                "goal (c) >= 1,000/s, >= 500 in flight",
                "met" if met else "not met",
                f"{_fmt(c['executions_per_s'])}/s, peak {_fmt(c['peak_in_flight'])} in flight",
            )
        )
    out.append(
        (
            "worker concurrency",
            _fmt(result["worker_concurrency"]),
            f"threads pool; {result['machine']['cores']} cores",
        )
    )
    return out


def cpu_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for name, scenario in result["scenarios"].items():
        cpu = scenario.get("cpu_seconds") or {}
        elapsed = scenario.get("elapsed_s") or 0
        parts = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
        out.append((f"{name} CPU s", parts, f"over {elapsed:.1f} s wall"))
    return out


def print_table(result: dict[str, Any]) -> None:
    table_rows = rows(result) + cpu_rows(result)
    if importlib.util.find_spec("rich") is not None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"jobyard bench — {result['timestamp']}")
        for column in ("figure", "value", "note"):
            table.add_column(column)
        for row in table_rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max(len(r[i]) for r in table_rows) for i in range(3)]
    print(f"jobyard bench — {result['timestamp']}")
    print("  ".join(h.ljust(w) for h, w in zip(("figure", "value", "note"), widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in table_rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
