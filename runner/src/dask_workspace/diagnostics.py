"""What the scheduler itself observes about one run: a ``SchedulerPlugin``.

The runner registers one ``RunStatsPlugin`` per run (named after the study token and run id) and
reads its ``snapshot()`` at every progress tick. Measuring on the scheduler, rather than in the
runner, gives numbers that do not depend on the runner's bookkeeping:

* ``task_seconds``: the compute time workers report for every task of the study (the
  ``startstops`` of each processing -> memory/erred transition; the same data as the dashboard's
  task stream), so ``utilization = task_seconds / thread_seconds`` is measured, not estimated;
* ``thread_seconds``: worker threads integrated over time (follows workers joining and leaving);
* ``peak_groups``: the most groups that had *any* task held by the scheduler at once -- a check
  that released groups are really freed on the cluster, independent of the runner's counter;
* ``worker_deaths`` (unexpected ``remove-worker`` events: killed, OOM-killed, lost) and
  ``memory_restarts`` (the nanny's ``worker-restart-memory`` events; the removal that follows
  a memory restart is not counted again as a death);
* ``tasks_recomputed``: tasks computed again after their result was lost with a worker.

It also publishes the compute time and result size of the run's first few single-replicate
tasks as scheduler events, when the runner asks for them (``dask_workspace.probe``): adaptive
chunking sizes its first chunks, and the auto window its first memory budget, from them.

The scheduler must be able to import this module (the workspace's Dask image installs the
``dask_workspace`` package on the scheduler and the workers).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import dask.config
from distributed.diagnostics.plugin import SchedulerPlugin

from dask_workspace.tasks import parse_groups

if TYPE_CHECKING:
    from distributed import Scheduler

    from dask_workspace.probe import ProbeRequest

logger = logging.getLogger(__name__)

_INACTIVE = frozenset({"released", "forgotten"})
#: The end of a one-replicate simulation task's key (``dask_workspace.tasks.simulate_key``).
_ONE_REPLICATE = re.compile(r"-g\d+-r\d+-a\d+$")


class RunStatsPlugin(SchedulerPlugin):
    """Per-run counters kept on the scheduler. Cheap: O(1) work per transition of this run's
    tasks, nothing for other keys beyond a prefix check."""

    def __init__(self, *, token: str, name: str, probe: ProbeRequest | None = None) -> None:
        self.token = token
        self.name = name
        self._prefixes = tuple(f"{kind}-{token}-" for kind in ("simulate", "target", "outputs"))
        #: Publish the compute seconds of the first ``probe.count`` one-replicate simulation
        #: tasks on ``probe.topic`` (``dask_workspace.probe``).
        self.probe_topic = None if probe is None else probe.topic
        self.probe_count = 0 if probe is None else probe.count

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.started = time.monotonic()
        self._last = self.started
        self._threads = scheduler.total_nthreads
        self.thread_seconds = 0.0
        self.task_seconds = 0.0
        self.tasks_computed = 0
        self.tasks_erred = 0
        self.tasks_recomputed = 0
        self.active_tasks = 0
        self.peak_tasks = 0
        self.active: dict[int, int] = {}
        self.peak_groups = 0
        self._computed: dict[int, set[str]] = {}
        self.worker_deaths = 0
        self.memory_restarts = 0
        # A nanny memory restart also removes the worker (an unexpected remove-worker event);
        # the two events travel on different connections, so either may come first. Workers
        # whose removal is accounted for already (memory restarts, and the runner's recycles:
        # ``expect_removal``) until that removal is seen, and workers removed (counted as deaths)
        # whose memory restart may still arrive, so one restart is not also a death.
        self._accounted: set[str] = set()
        self._died: deque[str] = deque(maxlen=64)
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=20)
        self._no_workers_since: float | None = None if scheduler.workers else self.started
        # getattr: a plugin pickled by an older runner has no probe settings.
        self.probe_topic = getattr(self, "probe_topic", None)
        self._probes_left = getattr(self, "probe_count", 0)

    # -- time integration of worker threads -------------------------------------------------

    def _integrate(self) -> None:
        now = time.monotonic()
        self.thread_seconds += self._threads * (now - self._last)
        self._last = now
        self._threads = self.scheduler.total_nthreads
        if self.scheduler.workers:
            self._no_workers_since = None
        elif self._no_workers_since is None:
            self._no_workers_since = now

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        self._integrate()

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        self._integrate()

    # -- tasks ----------------------------------------------------------------------------

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str, **kwargs: Any
    ) -> None:
        if not (isinstance(key, str) and key.startswith(self._prefixes)):
            return
        groups = parse_groups(key, token=self.token)
        if groups is None:
            return
        gid = groups.start  # a pack's keys are remembered under its first group
        delta = (finish not in _INACTIVE) - (start not in _INACTIVE)
        if delta:
            self.active_tasks += delta
            self.peak_tasks = max(self.peak_tasks, self.active_tasks)
            for g in groups:  # a pack holds each of its groups
                count = self.active.get(g, 0) + delta
                if count > 0:
                    self.active[g] = count
                else:
                    self.active.pop(g, None)
                    self._computed.pop(g, None)  # a finished group's keys never run again
            self.peak_groups = max(self.peak_groups, len(self.active))
        if start == "processing" and finish in ("memory", "erred"):
            seconds = 0.0
            for ss in kwargs.get("startstops") or ():
                if ss.get("action") == "compute":
                    seconds += ss["stop"] - ss["start"]
            self.task_seconds += seconds
            if finish == "erred":
                self.tasks_erred += 1
                return
            if self._probes_left and key.startswith(self._prefixes[0]):
                self._probe(key, seconds)
            self.tasks_computed += 1
            seen = self._computed.setdefault(gid, set())
            if key in seen:
                self.tasks_recomputed += 1
            else:
                seen.add(key)

    def _probe(self, key: str, seconds: float) -> None:
        if _ONE_REPLICATE.search(key) is None:
            return
        self._probes_left -= 1
        ts = self.scheduler.tasks.get(key)
        nbytes = -1 if ts is None else int(ts.nbytes)
        try:
            self.scheduler.log_event(
                self.probe_topic, {"seconds": seconds, "replicates": 1, "nbytes": nbytes}
            )
        except Exception:  # best effort: chunking then waits for the first group's targets
            logger.debug("could not publish a probe event", exc_info=True)

    # -- events ---------------------------------------------------------------------------

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == "worker-restart-memory":
            self.memory_restarts += 1
            worker = msg.get("worker") if isinstance(msg, dict) else None
            self.recent_events.append(
                {"time": time.time(), "event": "memory-restart", "worker": worker}
            )
            if worker in self._died:
                self._died.remove(worker)  # its removal was counted as a death: it was not one
                self.worker_deaths -= 1
            elif worker is not None:
                self.expect_removal(worker)
        elif topic == "all" and isinstance(msg, dict) and msg.get("action") == "remove-worker":
            worker = msg.get("worker")
            if worker in self._accounted:
                self._accounted.discard(worker)  # a memory restart or a recycle, counted already
                return
            if msg.get("expected"):
                return
            self.worker_deaths += 1
            if worker is not None:
                self._died.append(worker)
            self.recent_events.append(
                {"time": time.time(), "event": "worker-died", "worker": worker}
            )

    def expect_removal(self, address: str) -> None:
        """The removal of ``address`` is accounted for elsewhere (a memory restart, or a recycle
        by the runner, counted as ``paused_restarts``): not a worker death."""
        self._accounted.add(address)

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        self._integrate()
        workers = self.scheduler.workers.values()
        now = time.monotonic()
        return {
            "elapsed": now - self.started,
            "thread_seconds": self.thread_seconds,
            "task_seconds": self.task_seconds,
            "tasks_computed": self.tasks_computed,
            "tasks_erred": self.tasks_erred,
            "tasks_recomputed": self.tasks_recomputed,
            "active_tasks": self.active_tasks,
            "peak_tasks": self.peak_tasks,
            "active_groups": len(self.active),
            "peak_groups": self.peak_groups,
            "worker_deaths": self.worker_deaths,
            "memory_restarts": self.memory_restarts,
            "recent_events": list(self.recent_events),
            "workers": len(self.scheduler.workers),
            "threads": self.scheduler.total_nthreads,
            "memory_limit": sum(ws.memory_limit or 0 for ws in workers),
            "workers_paused": sum(1 for ws in workers if ws.status.name == "paused"),
            "workers_running": sum(1 for ws in workers if ws.status.name == "running"),
            "paused": {
                ws.address: {
                    "name": str(ws.name),
                    "executing": ws.metrics.get("task_counts", {}).get("executing", 0),
                    "unmanaged": ws.memory.unmanaged,
                    "limit": ws.memory_limit,
                }
                for ws in workers
                if ws.status.name == "paused"
            },
            # The workspace gives the scheduler and the workers one Dask config, so the
            # scheduler's pause threshold is the workers' (False: pausing is off).
            "pause_fraction": dask.config.get("distributed.worker.memory.pause", None) or None,
            "no_workers_for": None
            if self._no_workers_since is None
            else now - self._no_workers_since,
        }


def mark_recycling(dask_scheduler: Scheduler, name: str, address: str) -> bool:
    """For ``Client.run_on_scheduler``: the runner is recycling ``address``; its removal is a
    recycle (counted by the runner as ``paused_restarts``), not a worker death."""
    plugin = dask_scheduler.plugins.get(name)
    if not isinstance(plugin, RunStatsPlugin):
        return False
    plugin.expect_removal(address)
    return True


def stats_snapshot(dask_scheduler: Scheduler, name: str) -> dict[str, Any] | None:
    """For ``Client.run_on_scheduler``: the named plugin's snapshot (None if not registered)."""
    plugin = dask_scheduler.plugins.get(name)
    if not isinstance(plugin, RunStatsPlugin):
        return None
    return plugin.snapshot()
