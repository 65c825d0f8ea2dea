"""Executes a study on a Dask cluster: a bounded sliding window of groups (or barrier batches).

Window mode, in short::

    admit groups while fewer than W hold results in the cluster
    for each finished target/outputs future (distributed.as_completed):
        record its small result
        if it was its group's last one:
            buffer the group for the next part file, drop every future of the group
            (the cluster frees the group's results), admit the next group at once

Memory stays bounded by the window, not by the study: each group goes to the scheduler as one
graph and the runner gets futures only for its targets and outputs task, so it never holds a
simulation (the scheduler keeps a replicate only while a target still needs it); it never
gathers a replicate's raw result (kept outputs are reduced to Arrow tables on the workers by one
task per group and gathered once); and it releases a finished group's futures at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future, as_completed

from dask_workspace import dashboard, identity, retry
from dask_workspace.bundle import Bundle
from dask_workspace.chunking import ChunkPlanner, ChunkSettings
from dask_workspace.cluster_bundles import ShippedBundle, ship_bundle
from dask_workspace.config import RunnerSettings
from dask_workspace.connect import in_kubernetes, probe, refused_grace
from dask_workspace.diagnostics import RunStatsPlugin, mark_recycling, stats_snapshot
from dask_workspace.distribute import activate_locally
from dask_workspace.errors import (
    EXIT_CLUSTER,
    EXIT_FAILED_GROUPS,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_STORAGE,
    ClusterError,
    StorageError,
)
from dask_workspace.failfast import FailFast, FailFastStop
from dask_workspace.imports import check_on_workers
from dask_workspace.kube import PodOomWatcher, watcher_from_environment
from dask_workspace.progress import RunSummary, format_progress
from dask_workspace.results import Failure, GroupRecord, ResultStore, ResumeState
from dask_workspace.study import Study
from dask_workspace.tasks import (
    TargetValue,
    TaskError,
    key_stage,
)
from dask_workspace.wake import wake_workers
from dask_workspace.watchdog import (
    paused_idle_since,
    recyclable_now,
    recycle_worker,
    stuck_workers,
    unmanaged_above_pause,
)
from dask_workspace.window import Capacity, WindowController

logger = logging.getLogger(__name__)

#: Why a worker recycled at once is hopeless (its log line).
HOPELESS = ": above the pause threshold on its own, memory that spilling cannot free (a leak?)"

#: Seconds between health checks / scheduler statistics polls (progress lines are rarer).
POLL_SECONDS = 1.0

GUIDANCE = (
    "Lower the window (--window N or DASK_WORKSPACE__RUNNER__WINDOW), run fewer worker "
    "processes per pod with more memory each (workers.nprocs / workers.memoryPerProcess), or "
    "raise workers.podMemory."
)


@dataclass
class _Group:
    """A group in flight: only its completion futures (targets + outputs) and small results."""

    gid: int
    params: dict[str, Any]
    attempt: int
    seq: int
    futures: dict[str, Future] = field(default_factory=dict)
    pending: int = 0
    values: dict[str, float] = field(default_factory=dict)
    failure: Failure | None = None
    cluster_error: Failure | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    trouble_at_admit: int = 0


class _Buffer:
    """Finished groups waiting for the next part file."""

    def __init__(self) -> None:
        self.records: list[GroupRecord] = []
        self.nbytes = 0
        self.oldest: float | None = None

    def add(self, record: GroupRecord, *, now: float) -> None:
        self.records.append(record)
        self.nbytes += record.nbytes
        if self.oldest is None:
            self.oldest = now

    def due(self, *, now: float, settings: RunnerSettings, draining: bool = False) -> bool:
        """``draining``: every group is admitted and the writer is idle -- write what finished
        while the last groups still run, so the final flush after them is small."""
        if not self.records:
            return False
        return (
            draining
            or len(self.records) >= settings.flush_groups
            or self.nbytes >= settings.flush_bytes
            or (self.oldest is not None and now - self.oldest >= settings.flush_seconds)
        )

    def take(self) -> list[GroupRecord]:
        records, self.records, self.nbytes, self.oldest = self.records, [], 0, None
        return records


async def _loop_barrier() -> None:
    """Returns after the client's event loop has run every callback queued before it (and the
    ones those queued)."""
    for _ in range(2):
        await asyncio.sleep(0)


class _StopRequestedError(Exception):
    """Raised inside the loop when a stop signal arrived."""


def _capacity(client: Client) -> Capacity:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return Capacity(
        workers=len(workers),
        threads=sum(w.get("nthreads", 0) for w in workers),
        memory_limit=sum(w.get("memory_limit") or 0 for w in workers),
    )


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def _last_line(text: str) -> str:
    """The end of a traceback is the exception: the line worth logging."""
    return (text.strip().splitlines() or [""])[-1][:300]


def _describe_exception(exc: BaseException, key: str) -> Failure:
    task_key = getattr(exc, "task", None) or key
    stage = key_stage(str(task_key)) if isinstance(task_key, str) else "cluster"
    text = f"{type(exc).__name__}: {exc}".strip()
    return Failure(stage=stage, task=str(task_key), error=text)


class StudyRunner:
    """One run of one study against one cluster and one results location."""

    def __init__(
        self,
        *,
        client: Client,
        study: Study,
        store: ResultStore,
        resume: ResumeState,
        settings: RunnerSettings,
        pod_watcher: PodOomWatcher | None = None,
    ) -> None:
        self.client = client
        self.pod_watcher = pod_watcher
        self.study = study
        self.store = store
        self.resume = resume
        self.settings = settings
        self.pending: deque[int] = deque(
            g for g in range(len(study.groups)) if g not in resume.done
        )
        self.inflight: dict[int, _Group] = {}
        self.key_group: dict[str, int] = {}
        #: The groups of each pack in flight, by the pack's key (``dask_workspace.packing``).
        self.pack_groups: dict[str, list[int]] = {}
        self.controller = WindowController(
            fixed=settings.window,
            tasks_per_group=study.tasks_per_group,
            replicates=study.replicates,
            tasks_per_thread=settings.tasks_per_thread,
            memory_fraction=settings.memory_fraction,
            replicate_memory=settings.replicate_memory,
            safety_factor=settings.safety_factor,
            max_window=settings.max_window,
        )
        self.chunks = ChunkPlanner(
            settings=ChunkSettings(
                mode=settings.chunking,
                target_seconds=settings.chunk_seconds,
                fold=settings.chunk_fold,
                pack=settings.chunk_pack_groups,
            )
        )
        self.buffer = _Buffer()
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="results-flush")
        self._flush_future: ThreadFuture[Any] | None = None
        self._seq = 0
        self._released = False
        self._completed = False
        self.stop_signal: int | None = None
        # counters
        self.tasks_submitted = 0
        self.peak_inflight = 0
        self.groups_finished = 0
        self.groups_failed_run = 0
        self.groups_persisted_run = 0
        self.groups_failed_persisted_run = 0
        self.groups_retried = 0
        self.parts_written = 0
        self.stats: dict[str, Any] | None = None
        self._trouble_seen = 0
        self._paused_since: dict[str, float] = {}
        self._last_recycle: float | None = None
        self.paused_restarts = 0
        self.fail_fast = FailFast(threshold=settings.fail_fast)
        self._plugin_name = f"dask-workspace-{study.token}-{store.run_id}"
        # Completion futures of every group in flight; groups are added as they are admitted.
        self._ac = as_completed(loop=client.loop, with_results=True, raise_errors=False)
        self.started_at = time.monotonic()
        self._last_progress_group = time.monotonic()
        self._trouble_at_last_group = 0

    # -- submission -------------------------------------------------------------------------

    def _submit_group(self, gid: int, *, attempt: int) -> None:
        """Submits one group as one graph: its simulation tasks (one per replicate, or chunks of
        replicates: ``dask_workspace.chunking``), T targets, the outputs task.

        One ``update-graph`` message per group (not one per task), and the runner receives
        futures only for the targets and the outputs task: it never holds a simulation, and the
        scheduler keeps each replicate only while a target or the outputs task still needs it.
        """
        study = self.study
        params = study.groups[gid]
        # Older groups first: their targets can run sooner, so their slot in the window frees
        # sooner. Dask runs higher priorities first.
        self._seq += 1
        plan = self.chunks.plan(
            study=study,
            replicate_bytes=self.controller.replicate_bytes,
            memory_per_thread=self.controller.memory_per_thread,
            memory_fraction=self.settings.memory_fraction,
            attempt=attempt,
        )
        futures = self.chunks.submit(
            self.client, study=study, group_id=gid, attempt=attempt, plan=plan, priority=-self._seq
        )
        group = _Group(
            gid=gid,
            params=params,
            attempt=attempt,
            seq=self._seq,
            futures={f.key: f for f in futures},
            pending=len(futures),
            trouble_at_admit=self._trouble_seen,
        )
        self.tasks_submitted += plan.tasks
        self.inflight[gid] = group
        if not plan.probe:  # groups planned before a measurement do not size the window
            self.controller.set_tasks_per_group(
                self.chunks.tasks_per_group(self.inflight) or plan.tasks
            )
        for key in group.futures:
            self.key_group[key] = gid
        self._ac.update(futures)

    def _submit_pack(self, gids: list[int]) -> None:
        """Consecutive short groups as one task (``dask_workspace.packing``): each is a group in
        flight of its own, all waiting on the pack's one future."""
        self._seq += 1
        fut = self.chunks.submit_pack(
            self.client, study=self.study, group_ids=gids, priority=-self._seq
        )
        for gid in gids:
            self.inflight[gid] = _Group(
                gid=gid,
                params=self.study.groups[gid],
                attempt=0,
                seq=self._seq,
                futures={fut.key: fut},
                pending=1,
                trouble_at_admit=self._trouble_seen,
            )
        self.pack_groups[fut.key] = gids
        self.tasks_submitted += 1
        self.controller.set_tasks_per_group(self.chunks.tasks_per_group(self.inflight) or 1.0)
        self._ac.update([fut])

    def _submit_rests(self) -> None:
        """Probe groups submitted in two stages (``dask_workspace.probe_group``): their rest
        goes once their head is measured; the group waits on the rest's final tasks."""
        for gid in self.chunks.rests_ready():
            group = self.inflight[gid]
            finals, held, tasks = self.chunks.submit_rest(
                self.client,
                study=self.study,
                group_id=gid,
                replicate_bytes=self.controller.replicate_bytes,
                memory_per_thread=self.controller.memory_per_thread,
                memory_fraction=self.settings.memory_fraction,
            )
            self.tasks_submitted += tasks
            group.futures.update({f.key: f for f in [*held, *finals]})
            group.pending += len(finals)
            for fut in finals:
                self.key_group[fut.key] = gid
            self._ac.update(finals)

    def _release_barrier(self) -> None:
        """Makes sure the scheduler hears about released groups before new ones arrive.

        ``Future.release`` reaches the scheduler in two hops of the client's event loop, a new
        submission in one; without this barrier a new group's tasks could overtake the release
        of the group it replaces and the cluster would briefly hold W + 1 groups.
        """
        if self._released:
            self._released = False
            self.client.sync(_loop_barrier)

    def _admit(self) -> None:
        if self.stop_signal is not None:
            return
        self._release_barrier()
        self._submit_rests()
        if self.settings.mode == "window":
            self.chunks.poll()  # probe measurements first: they may widen the window
            # Asked again after each group: a packed group's plan widens the auto window.
            while self.pending:
                room = self.chunks.admission_limit(
                    window=self.controller.limit,
                    threads=self.controller.threads,
                    tasks_per_thread=self.settings.tasks_per_thread,
                    tasks_per_group=self.study.tasks_per_group,
                    inflight=self.inflight,
                ) - len(self.inflight)
                if room <= 0:
                    break
                k = self.chunks.pack_size(
                    study=self.study,
                    pending=self.pending,
                    window=self.controller.group_capacity,
                    room=room,
                    threads=self.controller.threads,
                    replicate_bytes=self.controller.replicate_bytes,
                    memory_per_thread=self.controller.memory_per_thread,
                    memory_fraction=self.settings.memory_fraction,
                )
                if k > 1:
                    self._submit_pack([self.pending.popleft() for _ in range(k)])
                else:
                    self._submit_group(self.pending.popleft(), attempt=0)
        elif not self.inflight:
            # Barrier batches: the next batch only once every group of the last one finished.
            for _ in range(min(self.settings.batch_size, len(self.pending))):
                self._submit_group(self.pending.popleft(), attempt=0)
        self.peak_inflight = max(self.peak_inflight, len(self.inflight))

    # -- completion -------------------------------------------------------------------------

    def _wait(self, timeout: float) -> list[tuple[Future, Any]]:
        ac = self._ac
        cond = getattr(ac, "thread_condition", None)
        if cond is None:  # pragma: no cover -- older/newer distributed without the attribute
            if not ac.has_ready():
                time.sleep(min(timeout, 0.05))
        else:
            with cond:
                if not ac.has_ready() and not self.chunks.has_news():
                    cond.wait(timeout)
        return ac.next_batch(block=False)

    def _on_done(self, fut: Future, result: Any) -> None:
        # Read once: a pack's first group to finish releases the pack's future, which changes
        # its status before the pack's other groups are handled.
        finished = fut.status == "finished"
        packed = self.pack_groups.pop(fut.key, None)
        if packed is not None:
            # A finished pack returns each group's result in order; an erred one fails them all
            # (each is then retried on its own: _finish).
            parts = result if finished else [result] * len(packed)
            for gid, part in zip(packed, parts, strict=True):
                self._deliver(self.inflight[gid], fut, part, finished=finished)
            return
        gid = self.key_group.pop(fut.key, None)
        if gid is None:
            return
        self._deliver(self.inflight[gid], fut, result, finished=finished)

    def _deliver(self, group: _Group, fut: Future, result: Any, *, finished: bool) -> None:
        """One final task's result (or error) for ``group``."""
        if finished:
            # A chunked group's final task may carry several results (chunking.Finished).
            for kind, part in self.chunks.unpack(key_stage(fut.key), result):
                if isinstance(part, TaskError):
                    if group.failure is None:
                        group.failure = Failure(stage=part.stage, task=part.task, error=part.error)
                elif kind == "target" and isinstance(part, TargetValue):
                    group.values.update(part.values)
                    self.controller.observe_replicate_bytes(part.replicate_bytes)
                elif kind == "outputs" and isinstance(part, dict):
                    group.outputs = part
        else:
            exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result
            if not isinstance(exc, BaseException):
                exc = RuntimeError(f"task {fut.key} ended as {fut.status}")
            if group.cluster_error is None:
                group.cluster_error = _describe_exception(exc, fut.key)
        group.pending -= 1
        if group.pending == 0:
            self._finish(group)

    def _finish(self, group: _Group) -> None:
        del self.inflight[group.gid]
        # Release explicitly rather than waiting for garbage collection: the cluster frees the
        # group's results now, whatever else might still point at these Future objects.
        for fut in group.futures.values():
            fut.release()
        group.futures.clear()
        self._released = True
        if group.cluster_error is not None and group.failure is None:
            if group.attempt < self.settings.group_retries and self.stop_signal is None:
                self.groups_retried += 1
                logger.warning(
                    "group %d lost to the cluster (%s); submitting it again with new keys "
                    "(attempt %d of %d)",
                    group.gid,
                    _first_line(group.cluster_error.error),
                    group.attempt + 2,
                    self.settings.group_retries + 1,
                )
                self._submit_group(group.gid, attempt=group.attempt + 1)
                return
            group.failure = group.cluster_error
        now = time.monotonic()
        failed = group.failure is not None
        record = GroupRecord(
            group_id=group.gid,
            params=group.params,
            values={} if failed else group.values,
            failure=group.failure,
            outputs=group.outputs,
        )
        self.buffer.add(record, now=now)
        self.groups_finished += 1
        self._last_progress_group = now
        self._trouble_at_last_group = self._trouble_seen
        if failed:
            self.groups_failed_run += 1
            logger.warning(
                "group %d (%s) failed in %s (%s): %s",
                group.gid,
                retry.format_params(group.params),
                group.failure.stage,
                group.failure.task,
                _last_line(group.failure.error),
            )
        elif group.trouble_at_admit == self._trouble_seen:
            self.controller.on_clean_group()
        failure = group.failure
        if self.fail_fast.observe(
            group_id=group.gid,
            stage=None if failure is None else failure.stage,
            error=None if failure is None else failure.error,
        ):
            raise FailFastStop(self.fail_fast.message())

    def _handle(self, batch: list[tuple[Future, Any]]) -> None:
        for fut, result in batch:
            self._on_done(fut, result)
        batch.clear()

    # -- persistence ------------------------------------------------------------------------

    def _collect_flush(self, *, wait: bool) -> None:
        fut = self._flush_future
        if fut is None or (not wait and not fut.done()):
            return
        self._flush_future = None
        entry = fut.result()  # re-raises StorageError
        self.parts_written += 1
        self.groups_persisted_run += len(entry.groups)
        self.groups_failed_persisted_run += len(entry.failed)

    def _flush(self, *, wait: bool = False) -> None:
        """Hands the buffer to the writer thread (one write at a time, in order)."""
        self._collect_flush(wait=True)
        if self.buffer.records:
            records = self.buffer.take()
            self._flush_future = self._flusher.submit(self.store.write, records)
        if wait:
            self._collect_flush(wait=True)

    # -- monitoring -------------------------------------------------------------------------

    def _poll_stats(self) -> dict[str, Any] | None:
        try:
            stats = self.client.run_on_scheduler(stats_snapshot, name=self._plugin_name)
        except Exception:  # statistics are best effort; the run goes on
            logger.debug("could not read scheduler statistics", exc_info=True)
            return self.stats
        if stats is not None:
            self.stats = stats
        return self.stats

    def _check_health(self, stats: dict[str, Any] | None, now: float) -> None:
        if stats is None:
            return
        self._recycle_stuck_workers(stats, now)
        trouble = (
            stats["worker_deaths"]
            + stats["memory_restarts"]
            + self.pod_oom_kills
            + self.paused_restarts
        )
        if trouble > self._trouble_seen:
            new = trouble - self._trouble_seen
            self._trouble_seen = trouble
            before = self.controller.limit
            if self.settings.mode == "window" and self.controller.on_memory_kill(now=now):
                logger.warning(
                    "%d worker death(s)/memory restart(s): window %d -> %d groups. %s",
                    new,
                    before,
                    self.controller.limit,
                    GUIDANCE,
                )
        no_workers_for = stats.get("no_workers_for")
        if no_workers_for is not None and no_workers_for > self.settings.no_workers_timeout:
            raise ClusterError(
                f"the cluster has had no workers for {no_workers_for:.0f}s "
                f"(workspace.runner.no-workers-timeout = {self.settings.no_workers_timeout:.0f}s)"
                f"; {stats['worker_deaths']} worker deaths and {stats['memory_restarts']} "
                f"memory restarts so far. Check the worker pods (kubectl describe / logs). "
                f"{GUIDANCE}"
            )
        stalled_for = now - self._last_progress_group
        if stalled_for > self.settings.stall_timeout:
            deaths = self._trouble_seen - self._trouble_at_last_group
            paused = stats.get("workers_paused", 0)
            if deaths:
                raise ClusterError(
                    f"no group finished for {stalled_for:.0f}s while {deaths} workers died or "
                    "were restarted for memory: the groups need more memory than the workers "
                    f"have. {GUIDANCE}"
                )
            if paused:
                raise ClusterError(
                    f"no group finished for {stalled_for:.0f}s and {paused} of "
                    f"{stats['workers']} workers are paused (memory above the pause threshold). "
                    "Enable the runner's recycling (workspace.runner.paused-restart-after) or "
                    f"worker lifetimes (workers.lifetime). {GUIDANCE}"
                )

    def _recycle_stuck_workers(self, stats: dict[str, Any], now: float) -> None:
        after = self.settings.paused_restart_after
        if after is None:
            return
        paused = stats.get("paused", {})
        self._paused_since = paused_idle_since(paused, self._paused_since, now=now)
        pause_fraction = stats.get("pause_fraction")
        due = stuck_workers(
            self._paused_since,
            now=now,
            after=after,
            paused=paused,
            pause_fraction=pause_fraction,
        )
        for address in recyclable_now(
            due,
            running=stats.get("workers_running", 0),
            last_recycle=self._last_recycle,
            now=now,
        ):
            info = paused[address]
            hopeless = unmanaged_above_pause(info, pause_fraction)
            logger.warning(
                "worker %s (%s) has been paused and idle for %.0fs with %.0f MiB unmanaged "
                "memory of a %.0f MiB limit%s. Recycling it (retire, then restart). Consider "
                "workers.lifetime to recycle workers regularly, or more memory per process.",
                info["name"],
                address,
                now - self._paused_since[address],
                info["unmanaged"] / 2**20,
                (info["limit"] or 0) / 2**20,
                HOPELESS if hopeless else "",
            )
            try:
                self.client.run_on_scheduler(
                    mark_recycling, name=self._plugin_name, address=address
                )
                self.client.run(recycle_worker, workers=[address], wait=False)
                self.paused_restarts += 1
                self._last_recycle = now
            except Exception as exc:  # the worker may be gone already
                logger.warning("could not recycle %s: %s", address, exc)
            del self._paused_since[address]

    @property
    def pod_oom_kills(self) -> int:
        return 0 if self.pod_watcher is None else self.pod_watcher.new_kills

    def _progress_line(self, stats: dict[str, Any] | None) -> str:
        done_before = len(self.resume.done)
        elapsed = max(time.monotonic() - self.started_at, 1e-9)
        window: int | str = (
            self.controller.limit
            if self.settings.mode == "window"
            else f"batch {self.settings.batch_size}"
        )
        return format_progress(
            study=self.study.name,
            done=done_before + self.groups_finished,
            total=len(self.study.groups),
            inflight=len(self.inflight),
            window=window,
            rate_per_second=self.groups_finished / elapsed,
            failed=len(self.resume.failed) + self.groups_failed_run,
            worker_deaths=stats["worker_deaths"] if stats else 0,
            memory_restarts=stats["memory_restarts"] if stats else 0,
            workers=stats["workers"] if stats else 0,
            threads=stats["threads"] if stats else 0,
            pod_oom_kills=None if self.pod_watcher is None else self.pod_oom_kills,
            workers_paused=stats.get("workers_paused", 0) if stats else 0,
        )

    # -- the loop ---------------------------------------------------------------------------

    def execute(self) -> None:
        """Runs every pending group. Raises ClusterError / StorageError / _StopRequestedError."""
        client = self.client
        self.controller.update(_capacity(client))
        probe = self.chunks.listen(
            client,
            topic=self._plugin_name,
            replicates=self.study.replicates,
            threads=self.controller.threads,
            wake=getattr(self._ac, "thread_condition", None),
            on_replicate_bytes=self.controller.observe_replicate_bytes,
        )
        client.register_plugin(
            RunStatsPlugin(token=self.study.token, name=self._plugin_name, probe=probe),
            name=self._plugin_name,
        )
        self.started_at = time.monotonic()
        self._last_progress_group = self.started_at
        if self.settings.mode == "window":
            logger.info(
                "window mode: at most %d groups in flight (%s)",
                self.controller.limit,
                "fixed" if self.settings.window else "auto",
            )
        else:
            logger.info("batch mode: barrier batches of %d groups", self.settings.batch_size)
        next_poll = self.started_at + POLL_SECONDS
        next_progress = self.started_at + self.settings.progress_interval
        while self.pending or self.inflight:
            if self.stop_signal is not None:
                raise _StopRequestedError()
            self._admit()
            now = time.monotonic()
            timeout = max(0.0, min(next_poll, next_progress) - now)
            self._handle(self._wait(timeout))
            now = time.monotonic()
            draining = not self.pending and self._flush_future is None
            if self.buffer.due(now=now, settings=self.settings, draining=draining):
                self._flush()
            self._collect_flush(wait=False)
            if now >= next_poll:
                stats = self._poll_stats()
                self._check_health(stats, now)
                if self.settings.window is None and stats is not None and stats["threads"]:
                    self.controller.update(
                        Capacity(
                            workers=stats["workers"],
                            threads=stats["threads"],
                            memory_limit=stats["memory_limit"],
                        )
                    )
                next_poll = now + POLL_SECONDS
            if now >= next_progress:
                logger.info("%s", self._progress_line(self.stats))
                next_progress = now + self.settings.progress_interval
        self._completed = True

    def finish(self) -> None:
        """Persists the buffer and reads the final statistics (also after errors)."""
        self._flush(wait=True)
        self._poll_stats()
        if self._completed:
            # The last word on progress, however short the run was (from the final statistics:
            # no extra scheduler round trip between the last group and the final flush).
            logger.info("%s", self._progress_line(self.stats))
        self.chunks.close()
        with contextlib.suppress(Exception):
            self.client.unregister_scheduler_plugin(self._plugin_name)
        self._flusher.shutdown(wait=True)

    def release_all(self) -> None:
        """Drops every in-flight future (used when stopping early)."""
        self.inflight.clear()
        self.key_group.clear()
        self.pack_groups.clear()
        self._ac.clear()
        self.chunks.drop_staged()


# ---------------------------------------------------------------------------------------------
# Entry point


def _check_importable(client: Client, study: Study) -> None:
    """The model and targets must import on the workers (checked on one worker), else exit 2."""
    check_on_workers(client, study)


def _wait_for_any_worker(client: Client, *, timeout: float) -> bool:
    """Waits for at least one worker in any state. (``Client.wait_for_workers`` counts only
    running workers: a cluster whose workers are all paused would block it -- exactly the
    situation the watchdog is there to repair.)"""
    deadline = time.monotonic() + timeout
    while True:
        if client.scheduler_info(n_workers=-1)["workers"]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def connect(address: str, *, timeout: float, refused_timeout: float = 3.0) -> Client:
    """A client for the scheduler, or ClusterError with the address and what to check (in
    seconds when nothing listens there, see ``dask_workspace.connect``)."""
    grace = refused_grace(
        refused_timeout=refused_timeout, connect_timeout=timeout, kubernetes=in_kubernetes()
    )
    probe(address, grace=grace, connect_timeout=timeout)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:.0f}s ({exc}). Check "
            "--scheduler (tcp://HOST:8786) and that the scheduler is running."
        ) from None


def _write_summary(path: str | None, summary: RunSummary) -> None:
    if not path:
        return
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)


@contextlib.contextmanager
def _stop_on_signals(runner_ref: Callable[[], StudyRunner | None]) -> Iterator[None]:
    """SIGINT/SIGTERM stop admission; the runner then persists what finished and exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        runner = runner_ref()
        if runner is not None and runner.stop_signal is None:
            logger.warning("signal %d: persisting finished groups, then stopping", signum)
            runner.stop_signal = signum
        else:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _summary_without_run(
    *,
    base: dict[str, Any],
    resume: ResumeState,
    settings: RunnerSettings,
    started: float,
    code: int,
    status: str,
    message: str,
) -> RunSummary:
    """The summary when nothing was executed (nothing left to do, or no usable cluster)."""
    return RunSummary(
        **base,
        groups_persisted=len(resume.persisted),
        groups_failed=len(resume.failed),
        peak_inflight_groups=0,
        tasks_submitted=0,
        worker_deaths=0,
        memory_restarts=0,
        wall_seconds=round(time.monotonic() - started, 3),
        utilization=None,
        window=settings.window,
        exit_code=code,
        status=status,
        message=message,
    )


def run_study(
    *,
    study: Study,
    scheduler: str,
    results: str,
    settings: RunnerSettings,
    summary_path: str | None = None,
    bundle: Bundle | None = None,
    retry_failed: bool = False,
    argv: list[str] | None = None,
) -> RunSummary:
    """Runs (or resumes) a study and returns its summary; the summary's ``exit_code`` follows
    the contract. Raises UsageError (exit 2) for bad input found before anything runs.

    ``bundle``: the study folder's code, shipped to every worker and checked against the code
    the location's results were made with. ``retry_failed``: run the failed groups again.
    ``argv``: this run's command line, for the retry command printed after failures."""
    started = time.monotonic()
    store = ResultStore.open(results, study=study)
    recorded = store.prepare()
    if bundle is not None:
        identity.enforce(
            store=store,
            bundle=bundle,
            # A retry after a fix runs with the fixed code: that is what it is for.
            allow_code_change=settings.allow_code_change or retry_failed,
            results=results,
            reason="--allow-code-change" if settings.allow_code_change else retry.RETRY_FLAG,
        )
        activate_locally(bundle.study_dir)
    line = retry.resume_line(
        recorded, total=len(study.groups), results=results, retry_failed=retry_failed
    )
    if line:
        logger.info("%s", line)
    resume = retry.plan(recorded, retry_failed=retry_failed)
    total = len(study.groups)
    base = {
        "study": study.name,
        "results": results,
        "mode": settings.mode,
        "batch_size": settings.batch_size if settings.mode == "batch" else None,
        "groups_total": total,
        "groups_resumed": len(resume.done),
    }
    if len(resume.done) == total:
        code = EXIT_FAILED_GROUPS if resume.failed else EXIT_OK
        summary = _summary_without_run(
            base=base,
            resume=resume,
            settings=settings,
            started=started,
            code=code,
            status="complete" if code == EXIT_OK else "failed-groups",
            message=retry.nothing_to_do(failed=len(resume.failed))
            + (f"\n{retry.failure_hint(results=results, argv=argv)}" if resume.failed else ""),
        )
        logger.info("%s", summary.message.splitlines()[0])
        _write_summary(summary_path, summary)
        return summary

    runner: StudyRunner | None = None
    shipped: ShippedBundle | None = None
    status, message, code = "complete", "", EXIT_OK
    try:
        client = connect(
            scheduler,
            timeout=settings.connect_timeout,
            refused_timeout=settings.connect_refused_timeout,
        )
    except ClusterError as exc:
        logger.error("%s", exc)
        summary = _summary_without_run(
            base=base,
            resume=resume,
            settings=settings,
            started=started,
            code=EXIT_CLUSTER,
            status="cluster-dying",
            message=str(exc),
        )
        _write_summary(summary_path, summary)
        return summary
    try:
        dashboard.register(client)
        if bundle is not None:
            # Before any worker is needed: workers that join later get it from the scheduler.
            # Refused (exit 2) if a study running now brings other code under a module name.
            shipped = ship_bundle(
                client, study=study.name, bundle=bundle, results=store.backend.description
            )
        wake = wake_workers(client)  # scale from zero: a waiting no-op asks for a worker
        if not _wait_for_any_worker(client, timeout=settings.no_workers_timeout):
            raise ClusterError(
                f"no worker joined the scheduler at {scheduler} within "
                f"{settings.no_workers_timeout:.0f}s; check the worker pods."
            )
        wake.release()
        _check_importable(client, study)
        pod_watcher = watcher_from_environment(
            selector=settings.worker_selector, interval=settings.kube_poll_interval
        )
        runner = StudyRunner(
            client=client,
            study=study,
            store=store,
            resume=resume,
            settings=settings,
            pod_watcher=pod_watcher.start() if pod_watcher is not None else None,
        )
        with _stop_on_signals(lambda: runner):
            try:
                runner.execute()
            except _StopRequestedError:
                signum = runner.stop_signal
                status = "interrupted"
                code = EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT
                message = (
                    f"stopped by signal {signum}; finished groups are persisted, rerun to resume"
                )
            except ClusterError as exc:
                status, code, message = "cluster-dying", EXIT_CLUSTER, str(exc)
                logger.error("%s", exc)
            except FailFastStop as exc:
                status, code, message = "failed-fast", EXIT_FAILED_GROUPS, str(exc)
                logger.error("%s", exc)
            finally:
                runner.release_all()
                try:
                    runner.finish()
                except StorageError as exc:
                    status, code, message = "storage-failed", EXIT_STORAGE, str(exc)
                    logger.error("%s", exc)
    except StorageError as exc:
        status, code, message = "storage-failed", EXIT_STORAGE, str(exc)
        logger.error("%s", exc)
    except ClusterError as exc:
        status, code, message = "cluster-dying", EXIT_CLUSTER, str(exc)
        logger.error("%s", exc)
    finally:
        if runner is not None and runner.pod_watcher is not None:
            runner.pod_watcher.stop()
        if shipped is not None:
            shipped.release()  # the workers drop the bundle, unless another run of it goes on
        with contextlib.suppress(Exception):
            client.close(timeout=10)

    if runner is None:
        summary = _summary_without_run(
            base=base,
            resume=resume,
            settings=settings,
            started=started,
            code=code,
            status=status,
            message=message,
        )
        _write_summary(summary_path, summary)
        return summary

    stats = runner.stats or {}
    groups_failed = len(resume.failed) + runner.groups_failed_persisted_run
    groups_persisted = len(resume.persisted) + runner.groups_persisted_run
    if code == EXIT_OK and groups_failed:
        code, status = EXIT_FAILED_GROUPS, "failed-groups"
        message = f"{groups_failed} groups failed; see the failures table in {results}"
    if code == EXIT_FAILED_GROUPS:
        message = f"{message}\n{retry.failure_hint(results=results, argv=argv)}"
    if code == EXIT_OK and groups_persisted + groups_failed < total:  # pragma: no cover
        code, status = EXIT_CLUSTER, "incomplete"
        message = f"only {groups_persisted + groups_failed} of {total} groups were persisted"
    thread_seconds = stats.get("thread_seconds")
    task_seconds = stats.get("task_seconds")
    utilization = (
        round(task_seconds / thread_seconds, 4)
        if task_seconds is not None and thread_seconds
        else None
    )
    summary = RunSummary(
        **base,
        groups_persisted=groups_persisted,
        groups_failed=groups_failed,
        peak_inflight_groups=runner.peak_inflight,
        tasks_submitted=runner.tasks_submitted,
        worker_deaths=stats.get("worker_deaths", 0),
        memory_restarts=stats.get("memory_restarts", 0),
        wall_seconds=round(time.monotonic() - runner.started_at, 3),
        utilization=utilization,
        window=runner.controller.peak_limit if settings.mode == "window" else None,
        exit_code=code,
        status=status,
        message=message,
        groups_run=runner.groups_finished,
        groups_retried=runner.groups_retried,
        peak_cluster_groups=stats.get("peak_groups"),
        peak_scheduler_tasks=stats.get("peak_tasks"),
        tasks_computed=stats.get("tasks_computed"),
        tasks_recomputed=stats.get("tasks_recomputed"),
        task_seconds=None if task_seconds is None else round(task_seconds, 3),
        thread_seconds=None if thread_seconds is None else round(thread_seconds, 3),
        window_decreases=runner.controller.decreases,
        window_increases=runner.controller.increases,
        parts_written=runner.parts_written,
        paused_restarts=runner.paused_restarts,
        # Only on Kubernetes (the local launcher adds its own, from the pods' cgroups).
        extra={
            **runner.chunks.summary(),
            **({} if runner.pod_watcher is None else {"pod_oom_kills": runner.pod_oom_kills}),
        },
    )
    logger.info(
        "%s: %d/%d groups persisted, %d failed, %d tasks submitted, utilization %s, %.1fs",
        status,
        groups_persisted,
        total,
        groups_failed,
        runner.tasks_submitted,
        "n/a" if utilization is None else f"{utilization:.2f}",
        summary.wall_seconds,
    )
    # The whole summary on one line: on Kubernetes, `kubectl logs` is where a Job's summary is read.
    logger.info("summary %s", json.dumps(summary.to_dict(), separators=(",", ":")))
    _write_summary(summary_path, summary)
    return summary
