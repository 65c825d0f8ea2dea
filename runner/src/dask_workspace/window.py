"""How many groups may hold results in the cluster at once (the window), and admission.

``auto_window`` is the one pure decision: enough groups to keep every worker thread busy (about
``tasks-per-thread`` x threads tasks in the window, and never fewer than two groups: with one,
every group's slowest replicate would be a barrier), capped by a memory budget::

    by_threads = max(2, ceil(tasks_per_thread x threads / tasks_per_group))
    by_memory  = floor(memory_fraction x sum(worker memory limits) / group_bytes)
    group_bytes = replicates x replicate_bytes
    window     = clamp(min(by_threads, by_memory), 1, max)

``replicate_bytes`` starts at the configured ``auto-window.replicate-memory`` (32 MiB, deliberately
pessimistic for typical epidemiological outputs of a few KiB to a few MiB) and is replaced by the
largest *measured* replicate result (``dask.sizeof`` reported by the target tasks) times
``safety-factor`` once groups finish. Why only held results count: the working memory of running
tasks is bounded by the number of threads, not by the window; the window bounds what finished
replicates hold while they wait for their group's targets. Only half of the memory (the default
``memory-fraction``) is offered, because the worker's own thresholds start spilling at 60-70%.

``WindowController`` applies it at run time: a fixed ``--window N`` or the auto decision is the
ceiling, and the controller halves the window when workers are killed for memory and grows it by
one group per window's worth of clean groups (AIMD), never above the ceiling.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Capacity:
    """The cluster as the scheduler reports it."""

    workers: int
    threads: int
    #: Sum of the workers' memory limits in bytes (0 when a worker has no limit).
    memory_limit: int


@dataclass(frozen=True, kw_only=True)
class WindowDecision:
    window: int
    by_threads: int
    by_memory: int | None
    group_bytes: int
    reason: str


def auto_window(
    *,
    capacity: Capacity,
    tasks_per_group: float,
    replicates: int,
    tasks_per_thread: float,
    memory_fraction: float,
    replicate_bytes: int,
    max_window: int,
) -> WindowDecision:
    """The auto window for a cluster and a study (see the module docstring for the formula)."""
    threads = max(capacity.threads, 1)
    # At least two groups, so that the next group fills the slots while one waits for its
    # slowest replicate.
    # Fewer than one task per group: packed groups (dask_workspace.packing).
    by_threads = max(2, math.ceil(tasks_per_thread * threads / max(tasks_per_group, 1e-3)))
    group_bytes = max(replicates, 1) * max(replicate_bytes, 1)
    by_memory: int | None = None
    if capacity.memory_limit > 0:
        by_memory = max(1, math.floor(memory_fraction * capacity.memory_limit / group_bytes))
    window = min(by_threads, by_memory if by_memory is not None else by_threads, max_window)
    window = max(1, window)
    if by_memory is not None and by_memory < by_threads:
        reason = (
            f"memory: {memory_fraction:.0%} of {capacity.memory_limit / 2**30:.1f} GiB worker "
            f"memory / {group_bytes / 2**20:.1f} MiB per group"
        )
    else:
        reason = (
            f"threads: {tasks_per_thread:g} x {threads} threads / {tasks_per_group:.3g} tasks per "
            "group"
        )
    if window == max_window and max_window < by_threads:
        reason = f"capped at workspace.runner.auto-window.max = {max_window}"
    return WindowDecision(
        window=window,
        by_threads=by_threads,
        by_memory=by_memory,
        group_bytes=group_bytes,
        reason=reason,
    )


class WindowController:
    """The current window: a ceiling (fixed or auto) and AIMD below it."""

    def __init__(
        self,
        *,
        fixed: int | None,
        tasks_per_group: int,
        replicates: int,
        tasks_per_thread: float,
        memory_fraction: float,
        replicate_memory: int,
        safety_factor: float,
        max_window: int,
        decrease_cooldown: float = 10.0,
    ) -> None:
        self.fixed = fixed
        self.tasks_per_group = tasks_per_group
        self.replicates = replicates
        self.tasks_per_thread = tasks_per_thread
        self.memory_fraction = memory_fraction
        self.replicate_memory = replicate_memory
        self.safety_factor = safety_factor
        self.max_window = max_window
        self.decrease_cooldown = decrease_cooldown
        self.measured_replicate_bytes: int | None = None
        self.decision: WindowDecision | None = None
        self.ceiling = fixed or 1
        self.limit = self.ceiling
        #: The largest the limit was during the run (the summary's ``window``): packed groups
        #: (``dask_workspace.packing``) widen the auto window while they are in flight, and the
        #: groups in flight are bounded by the window of that moment, not of the run's end.
        self.peak_limit = self.limit
        self.decreases = 0
        self.increases = 0
        self._credit = 0.0
        self._last_decrease = -math.inf
        self._capacity: Capacity | None = None

    @property
    def replicate_bytes(self) -> int:
        if self.measured_replicate_bytes is None:
            return self.replicate_memory
        return max(1, int(self.measured_replicate_bytes * self.safety_factor))

    def update(self, capacity: Capacity) -> None:
        """Re-derives the ceiling from the cluster (auto) and keeps the limit below it."""
        self._capacity = capacity
        old_ceiling = self.ceiling
        if self.fixed is not None:
            self.ceiling = self.fixed
        else:
            decision = auto_window(
                capacity=capacity,
                tasks_per_group=self.tasks_per_group,
                replicates=self.replicates,
                tasks_per_thread=self.tasks_per_thread,
                memory_fraction=self.memory_fraction,
                replicate_bytes=self.replicate_bytes,
                max_window=self.max_window,
            )
            if self.decision is None or decision.window != self.decision.window:
                logger.info("window: %d groups (%s)", decision.window, decision.reason)
            self.decision = decision
            self.ceiling = decision.window
        # Not throttled by AIMD: follow the ceiling up and down. Throttled: stay below it.
        if self.limit >= old_ceiling:
            self.limit = self.ceiling
        self.limit = max(1, min(self.limit, self.ceiling))
        self.peak_limit = max(self.peak_limit, self.limit)

    @property
    def threads(self) -> int:
        return 0 if self._capacity is None else self._capacity.threads

    @property
    def group_capacity(self) -> int:
        """Groups the window could hold if each took fewer tasks (packed groups,
        ``dask_workspace.packing``): a fixed window itself; the auto window's memory budget and
        its maximum (its thread-based part follows the tasks per group); never more than a limit
        that AIMD lowered."""
        if self.fixed is not None:
            cap = self.fixed
        elif self.decision is None:
            cap = self.limit
        else:
            by_memory = self.decision.by_memory
            cap = self.max_window if by_memory is None else min(by_memory, self.max_window)
        if self.limit < self.ceiling:
            cap = min(cap, self.limit)
        return max(1, cap)

    @property
    def memory_per_thread(self) -> int:
        """Worker memory limit per worker thread in bytes (0 when unknown or unlimited)."""
        c = self._capacity
        return 0 if c is None or not c.threads else c.memory_limit // c.threads

    def set_tasks_per_group(self, tasks: float) -> None:
        """Groups now submit ``tasks`` Dask tasks (chunking; the mean over the groups in
        flight): the auto window follows, so fewer tasks per group admit more groups, still
        within the memory budget."""
        if tasks != self.tasks_per_group:
            self.tasks_per_group = tasks
            if self._capacity is not None and self.fixed is None:
                self.update(self._capacity)

    def observe_replicate_bytes(self, nbytes: int) -> None:
        """A target measured its group's R replicate results: ``nbytes`` for R replicates."""
        per_replicate = max(1, nbytes // max(self.replicates, 1))
        if self.measured_replicate_bytes is None or per_replicate > self.measured_replicate_bytes:
            self.measured_replicate_bytes = per_replicate
            if self._capacity is not None and self.fixed is None:
                self.update(self._capacity)

    def on_memory_kill(self, *, now: float | None = None) -> bool:
        """Workers were killed or restarted for memory: halve the window (once per cooldown).

        Returns True when the window shrank.
        """
        now = time.monotonic() if now is None else now
        if now - self._last_decrease < self.decrease_cooldown or self.limit <= 1:
            return False
        self._last_decrease = now
        self.decreases += 1
        self.limit = max(1, self.limit // 2)
        self._credit = 0.0
        return True

    def on_clean_group(self) -> None:
        """A group finished without memory trouble: grow by one group per window of them."""
        if self.limit >= self.ceiling:
            return
        self._credit += 1.0 / self.limit
        if self._credit >= 1.0:
            self._credit = 0.0
            self.limit = min(self.ceiling, self.limit + 1)
            self.peak_limit = max(self.peak_limit, self.limit)
            self.increases += 1
