"""The progress line and the run summary (pure formatting, no I/O)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def format_duration(seconds: float | None) -> str:
    """``3h02m``, ``4m10s``, ``12s``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def eta_seconds(*, remaining: int, rate_per_second: float) -> float | None:
    if remaining <= 0:
        return 0.0
    if rate_per_second <= 0:
        return None
    return remaining / rate_per_second


def format_progress(
    *,
    study: str,
    done: int,
    total: int,
    inflight: int,
    window: int | str,
    rate_per_second: float,
    failed: int,
    worker_deaths: int,
    memory_restarts: int,
    workers: int,
    threads: int,
    pod_oom_kills: int | None = None,
    workers_paused: int = 0,
) -> str:
    """One progress line: groups done/total, in flight, rate, ETA, failures and worker trouble."""
    pct = 100.0 * done / total if total else 100.0
    eta = eta_seconds(remaining=total - done, rate_per_second=rate_per_second)
    rate_per_minute = rate_per_second * 60
    pods = "" if pod_oom_kills is None else f" | pod OOM kills {pod_oom_kills}"
    paused = f" ({workers_paused} paused)" if workers_paused else ""
    return (
        f"[{study}] {done}/{total} groups ({pct:.0f}%) | in flight {inflight} (window {window}) | "
        f"{rate_per_minute:.1f} groups/min | ETA {format_duration(eta)} | failed {failed} | "
        f"worker deaths {worker_deaths} | memory restarts {memory_restarts}{pods} | "
        f"{workers} workers{paused}, {threads} threads"
    )


@dataclass(kw_only=True)
class RunSummary:
    """The ``--summary`` JSON (contract fields first; more are allowed)."""

    groups_total: int
    groups_persisted: int
    groups_failed: int
    peak_inflight_groups: int
    tasks_submitted: int
    worker_deaths: int
    memory_restarts: int
    wall_seconds: float
    utilization: float | None
    # -- more detail -----------------------------------------------------------------------
    study: str
    results: str
    mode: str
    window: int | None
    batch_size: int | None
    exit_code: int
    status: str
    message: str = ""
    groups_resumed: int = 0
    groups_run: int = 0
    groups_retried: int = 0
    #: Most groups with any task held by the scheduler at once (measured on the scheduler).
    peak_cluster_groups: int | None = None
    #: Most of this run's tasks held by the scheduler at once.
    peak_scheduler_tasks: int | None = None
    tasks_computed: int | None = None
    tasks_recomputed: int | None = None
    task_seconds: float | None = None
    thread_seconds: float | None = None
    window_decreases: int = 0
    #: Times the window grew back by one group after clean groups (AIMD).
    window_increases: int = 0
    #: Workers recycled by the runner's watchdog (paused and idle too long).
    paused_restarts: int = 0
    parts_written: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d
