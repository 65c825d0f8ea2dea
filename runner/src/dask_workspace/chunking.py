"""Adaptive task granularity: several replicates of a group in one Dask task (a *chunk*).

Dask costs a fraction of a millisecond to a few milliseconds of scheduler and worker time per
task (a few ms on a busy 2-core machine: bench/REPORT.md, section 5). A model that runs one
replicate in milliseconds therefore spends most of the cluster's time on scheduling when every
replicate is its own task. The runner measures how long replicates take as the study runs and
packs the replicates of a group into chunks of about ``chunk-seconds`` each::

    per-replicate seconds: unknown until the first replicates report (the first k =
                           min(R, threads) replicates run one task each, as with chunking off;
                           the scheduler publishes their durations at once:
                           dask_workspace.probe; when R > k only those k go first and the rest of
                           that group is planned from them: dask_workspace.probe_group); then an
                           estimate that follows the measurements (up at once, down smoothly)
    size   = 1                                  if unknown or seconds >= chunk-seconds
           = R                                  if R x seconds <= 2 x chunk-seconds (the whole
                                                group is one task: see WHOLE_GROUP)
           = floor(chunk-seconds / seconds)     otherwise,
             capped by R and by memory: size x replicate bytes <= memory-fraction x the memory
             of one worker thread (a chunk's replicates' outputs live in one worker)
    chunks = ceil(R / size) contiguous, balanced ranges of replicates
    fused  = the whole group fits one chunk: that one task also runs the group's targets and
             collects its outputs (one task per group instead of R + T + 1)

Every replicate keeps its seed (``Study.seed_for``) and runs through the same
``simulate_replicate`` as an unchunked task, so values are identical bit for bit, and a
replicate that raises is reported as that replicate with its seed. A chunk is one Dask task: a
chunk lost with its worker is retried by Dask and counts toward ``allowed-failures`` once, like
a single task, and a group whose chunk ends as ``KilledWorker`` is retried by the runner with new
keys and then recorded as failed, exactly as before.

Chunk results carry their measured seconds to the group's first target (or outputs) task,
which hands them back to the runner with its value: the runner never gathers a replicate.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal

from dask._task_spec import Task, TaskRef
from dask.sizeof import sizeof

from dask_workspace.packing import MAX_PACK, leading_run, pack_key, pack_size, run_pack
from dask_workspace.probe import (
    ProbeFeed,
    ProbeRequest,
    ProbeSample,
    first_estimate,
    probe_count,
)
from dask_workspace.probe_group import (
    StagedGroup,
    rest_graph,
    rest_ready,
    rest_whole,
    should_stage,
)
from dask_workspace.tasks import (
    collect_outputs,
    evaluate_target,
    outputs_key,
    simulate_key,
    simulate_replicate,
    target_key,
)

if TYPE_CHECKING:
    from distributed import Client, Future

    from dask_workspace.study import Study

logger = logging.getLogger(__name__)

Chunking = Literal["auto", "off"]

#: Weight of a new measurement when the per-replicate estimate goes down (it goes up at once).
DECAY = 0.25

#: A group of short replicates whose estimated total is at most this many ``chunk-seconds`` runs
#: as one task (fused with its targets). Splitting it would give chunks far below the target
#: (two of at most one chunk-seconds each) and cost T + 1 more tasks: R = 30 replicates of 8 ms
#: (0.24 s) are one task of 1 x overhead rather than 2 chunks + 3 targets + 1 outputs task of
#: 6 x overhead, and a whole group of up to 2 x 0.2 s still keeps a few milliseconds of
#: per-task overhead to a few percent.
WHOLE_GROUP = 2.0


def parse_chunking(value: Any) -> Chunking:
    """``auto`` (pack short replicates) or ``off`` (one task per replicate)."""
    if isinstance(value, bool):  # YAML reads a bare off as False
        value = "auto" if value else "off"
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()  # type: ignore[return-value]
    raise ValueError(f"must be 'auto' or 'off', got {value!r}")


def parse_fold(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"must be true or false, got {value!r}")


# ---------------------------------------------------------------------------------------------
# The sizing rule (pure)


@dataclass(frozen=True, kw_only=True)
class GroupPlan:
    """How one group is submitted: contiguous replicate ranges, and whether its targets run in
    the same task (only when the whole group is one chunk)."""

    chunks: tuple[range, ...]
    fused: bool
    #: Dask tasks the group submits.
    tasks: int
    #: Planned before any replicate was measured (one task per replicate).
    probe: bool = False
    #: Only the group's head (its first replicates, measured): the rest is planned once they
    #: are (``dask_workspace.probe_group``). ``tasks`` counts the head's tasks.
    staged: bool = False


def chunk_size(
    *,
    replicate_seconds: float | None,
    target_seconds: float,
    replicates: int,
    replicate_bytes: int,
    memory_per_thread: int,
    memory_fraction: float,
) -> int:
    """Replicates per chunk (see the module docstring).

    Args:
        replicate_seconds: the estimated seconds of one replicate; None while unmeasured.
        target_seconds: ``chunk-seconds``, the duration a chunk aims at.
        replicates: R, the group's replicates (no chunk is larger).
        replicate_bytes: the (pessimistic) size of one replicate's result.
        memory_per_thread: worker memory limit per worker thread in bytes (0: no limit known).
        memory_fraction: share of that memory one chunk's results may take.
    """
    if replicate_seconds is None or replicate_seconds >= target_seconds:
        return 1
    seconds = max(replicate_seconds, 1e-9)
    if seconds * replicates <= WHOLE_GROUP * target_seconds:
        size = replicates
    else:
        size = math.floor(target_seconds / seconds)
    if memory_per_thread > 0:
        by_memory = math.floor(memory_fraction * memory_per_thread / max(replicate_bytes, 1))
        size = min(size, by_memory)
    return max(1, min(size, replicates))


def split(*, replicates: int, size: int) -> tuple[range, ...]:
    """``ceil(R / size)`` contiguous ranges covering 0..R-1 whose lengths differ by at most one
    (10 replicates at size 4: 4, 3, 3 rather than 4, 4, 2)."""
    n = math.ceil(replicates / max(size, 1))
    base, extra = divmod(replicates, n)
    out, start = [], 0
    for i in range(n):
        stop = start + base + (1 if i < extra else 0)
        out.append(range(start, stop))
        start = stop
    return tuple(out)


def plan_group(
    *,
    size: int,
    replicates: int,
    targets: int,
    outputs: bool,
    measured_short: bool,
    fold: bool,
) -> GroupPlan:
    """The group's chunks; fused when ``fold`` and the measured-short group fits one chunk."""
    chunks = split(replicates=replicates, size=size)
    fused = fold and measured_short and len(chunks) == 1
    tasks = 1 if fused else len(chunks) + targets + (1 if outputs else 0)
    return GroupPlan(chunks=chunks, fused=fused, tasks=tasks)


def admission_limit(
    *,
    window: int,
    probing: bool,
    probe_groups_in_flight: int,
    threads: int,
    tasks_per_thread: float,
    tasks_per_group: int,
) -> int:
    """Groups the window may hold now.

    - unmeasured (``probing``): ``probe_window``;
    - measured, while groups planned before the measurement (one task per replicate) are still
      in flight: those groups plus one packed group per worker thread -- the older groups' tasks
      run first (priority), and the packed ones are ready the moment a thread runs out of them,
      without putting more tasks on the scheduler than the unchunked start did (a staged
      probe group, ``dask_workspace.probe_group``, is not one of them: its head is one task
      per thread and its rest is packed);
    - then the window.
    """
    if probing:
        return probe_window(
            window=window,
            threads=threads,
            tasks_per_thread=tasks_per_thread,
            tasks_per_group=tasks_per_group,
        )
    if probe_groups_in_flight:
        return max(1, min(window, probe_groups_in_flight + max(threads, 1)))
    return window


def probe_window(
    *, window: int, threads: int, tasks_per_thread: float, tasks_per_group: int
) -> int:
    """Groups admitted while no duration is measured yet: the window, but no more groups than
    ``tasks-per-thread`` x threads tasks need (at least one). A study whose single group already
    gives every thread several tasks is probed with that one group, so the unchunked start does
    not flood the scheduler (the peak of scheduler tasks falls with chunking, not rises)."""
    by_threads = math.floor(tasks_per_thread * max(threads, 1) / max(tasks_per_group, 1))
    return max(1, min(window, by_threads))


class DurationEstimate:
    """Seconds per replicate, from the groups' measurements: it follows a slower measurement at
    once (so a slow region of the parameter space is not packed on stale numbers) and a faster
    one smoothly (``DECAY``), so one lucky group does not inflate the chunks."""

    def __init__(self) -> None:
        self.value: float | None = None
        self.observations = 0

    def observe(self, seconds_per_replicate: float) -> None:
        x = max(float(seconds_per_replicate), 0.0)
        self.observations += 1
        if self.value is None or x >= self.value:
            self.value = x
        else:
            self.value += DECAY * (x - self.value)


# ---------------------------------------------------------------------------------------------
# Worker-side functions


@dataclass(frozen=True)
class ChunkResult:
    """The results of a chunk's replicates, in replicate order, and the seconds they took."""

    results: list[Any]
    seconds: float


@sizeof.register(ChunkResult)
def _sizeof_chunk(chunk: ChunkResult) -> int:
    # Workers account for (and spill) a chunk by its replicates' outputs.
    return int(sizeof(chunk.results)) + 64


@dataclass(frozen=True)
class Finished:
    """What a chunked group's final task returns: ``(stage, value)`` parts as the unchunked
    target / outputs tasks would have returned them, and (from one task per group) the seconds
    its replicates took."""

    parts: tuple[tuple[str, Any], ...]
    seconds: float | None = None
    replicates: int = 0


def run_chunk(model: str, params: dict[str, Any], seeds: Sequence[int]) -> ChunkResult:
    """Runs replicates one after the other, each exactly as a single task would."""
    started = time.perf_counter()
    results = [simulate_replicate(model, params, seed) for seed in seeds]
    return ChunkResult(results=results, seconds=time.perf_counter() - started)


def _flatten(chunks: Sequence[ChunkResult]) -> list[Any]:
    return [r for chunk in chunks for r in chunk.results]


def chunk_target(
    target: str, name: str, params: dict[str, Any], report: bool, *chunks: ChunkResult
) -> Finished:
    """``evaluate_target`` over the group's replicates (flattened from its chunks, in order)."""
    value = evaluate_target(target, name, params, *_flatten(chunks))
    if not report:
        return Finished(parts=(("target", value),))
    replicates = sum(len(c.results) for c in chunks)
    seconds = sum(c.seconds for c in chunks)
    return Finished(parts=(("target", value),), seconds=seconds, replicates=replicates)


def chunk_outputs(
    names: Sequence[str],
    group_id: int,
    params: dict[str, Any],
    parameter_types: dict[str, str],
    report: bool,
    *chunks: ChunkResult,
) -> Finished:
    """``collect_outputs`` over the group's replicates (flattened from its chunks, in order)."""
    value = collect_outputs(names, group_id, params, parameter_types, *_flatten(chunks))
    if not report:
        return Finished(parts=(("outputs", value),))
    replicates = sum(len(c.results) for c in chunks)
    seconds = sum(c.seconds for c in chunks)
    return Finished(parts=(("outputs", value),), seconds=seconds, replicates=replicates)


def run_group(
    model: str,
    params: dict[str, Any],
    seeds: Sequence[int],
    targets: Sequence[tuple[str, str]],
    outputs: Sequence[str],
    group_id: int,
    parameter_types: dict[str, str],
) -> Finished:
    """A whole short group in one task: its replicates, then its targets and outputs."""
    chunk = run_chunk(model, params, seeds)
    parts: list[tuple[str, Any]] = [
        ("target", evaluate_target(ref, name, params, *chunk.results)) for name, ref in targets
    ]
    if outputs:
        parts.append(
            ("outputs", collect_outputs(outputs, group_id, params, parameter_types, *chunk.results))
        )
    return Finished(parts=tuple(parts), seconds=chunk.seconds, replicates=len(seeds))


# ---------------------------------------------------------------------------------------------
# Keys


def chunk_key(*, token: str, group_id: int, replicates: range, attempt: int) -> str:
    """A one-replicate chunk keeps the unchunked key; a longer one names its replicate range."""
    if len(replicates) == 1:
        return simulate_key(
            token=token, group_id=group_id, replicate=replicates.start, attempt=attempt
        )
    return f"simulate-{token}-g{group_id}-r{replicates.start}to{replicates.stop - 1}-a{attempt}"


def fused_key(*, token: str, group_id: int, replicates: int, attempt: int) -> str:
    """A whole group in one task (its stage is ``simulate``: failures say so)."""
    return f"simulate-{token}-g{group_id}-r0to{replicates - 1}-fused-a{attempt}"


# ---------------------------------------------------------------------------------------------
# The runner's side


@dataclass(frozen=True, kw_only=True)
class ChunkSettings:
    mode: Chunking
    target_seconds: float
    fold: bool
    #: Several whole short groups in one task (``dask_workspace.packing``).
    pack: bool = True


class ChunkPlanner:
    """Plans each group's graph from the current estimate and records what it did."""

    def __init__(self, *, settings: ChunkSettings) -> None:
        self.settings = settings
        self.estimate = DurationEstimate()
        #: chunk size (replicates per simulation task) -> number of such tasks submitted
        self.sizes: Counter[int] = Counter()
        self.groups_fused = 0
        self.feed: ProbeFeed | None = None
        self._samples: list[ProbeSample] = []
        self._on_replicate_bytes: Callable[[int], None] | None = None
        self._replicates = 1
        #: Groups submitted before the first measurement (one task per replicate).
        self._probe_groups: set[int] = set()
        #: Where the first estimate came from: "replicates" (the probe) or "group" (a target).
        self.first_measured_by: str | None = None
        #: Probe groups whose head is submitted and whose rest is not (``probe_group``).
        self._staged: dict[int, StagedGroup] = {}
        #: The longest replicate the probe reported (a long one releases a staged rest early).
        self._longest_sample: float | None = None
        #: Groups submitted in two stages.
        self.groups_staged = 0
        #: Dask tasks of each group in flight that was planned from a measurement (1 / k for
        #: each group of a pack of k).
        self._group_tasks: dict[int, float] = {}
        #: groups per pack -> number of packs submitted (``dask_workspace.packing``)
        self.packs: Counter[int] = Counter()

    @property
    def enabled(self) -> bool:
        return self.settings.mode == "auto"

    @property
    def probing(self) -> bool:
        """Auto chunking without a measurement yet: admission is held to ``probe_window``."""
        self.poll()
        return self.enabled and self.estimate.value is None

    # -- the probe ----------------------------------------------------------------------------

    def listen(
        self,
        client: Client,
        *,
        topic: str,
        replicates: int,
        threads: int,
        wake: Any,
        on_replicate_bytes: Callable[[int], None] | None = None,
    ) -> ProbeRequest | None:
        """Subscribes to the probe events of the run's scheduler plugin (call it before the
        plugin is registered) and returns what to ask the plugin for (None: chunking off).
        ``on_replicate_bytes`` receives the probe's measured bytes of R replicates (the window's
        ``observe_replicate_bytes``)."""
        if not self.enabled:
            return None
        self._on_replicate_bytes = on_replicate_bytes
        self._replicates = max(replicates, 1)
        request = ProbeRequest(
            topic=topic, count=probe_count(replicates=replicates, threads=threads)
        )
        self.feed = ProbeFeed(request=request, wake=wake)
        self.feed.subscribe(client)
        return request

    def has_news(self) -> bool:
        """Probe samples arrived that the runner's loop has not seen, or a staged head is done
        (its rest can go, measured or not)."""
        if self.feed is not None and self.feed.has_news():
            return True
        return any(s.head_done() for s in self._staged.values())

    def close(self) -> None:
        self.drop_staged()
        if self.feed is not None:
            self.feed.close()

    def poll(self) -> None:
        """Takes in the probe samples that arrived (the first estimate, the replicate bytes)."""
        if self.feed is None or not self.feed.has_news():
            return
        samples = self.feed.drain()
        for sample in samples:
            self._longest_sample = max(self._longest_sample or 0.0, sample.seconds)
        if self.estimate.value is not None:
            return  # measured already: the groups' own reports take it from here
        self._samples.extend(samples)
        first = first_estimate(self._samples, needed=self.feed.request.count)
        if first is None:
            return
        if first.nbytes >= 0 and self._on_replicate_bytes is not None:
            self._on_replicate_bytes(first.nbytes * self._replicates)
        self._observe(first.seconds, source="replicates")

    def _observe(self, seconds_per_replicate: float, *, source: str) -> None:
        before = self.estimate.value
        self.estimate.observe(seconds_per_replicate)
        if before is None:
            self.first_measured_by = source
            logger.info(
                "chunking: replicates take %.4fs each (measured by the first %s); packing "
                "about %gs of them per task",
                self.estimate.value,
                f"{len(self._samples)} replicates" if source == "replicates" else "group",
                self.settings.target_seconds,
            )

    # -- admission and planning -----------------------------------------------------------------

    def admission_limit(
        self,
        *,
        window: int,
        threads: int,
        tasks_per_thread: float,
        tasks_per_group: int,
        inflight: Collection[int] = (),
    ) -> int:
        """Groups the window may hold now (``admission_limit``, the pure rule)."""
        probing = self.probing
        self._probe_groups.intersection_update(inflight)
        if probing and self._staged:
            # The staged head has one replicate per thread: nothing more until it is measured.
            return 1
        return admission_limit(
            window=window,
            probing=probing,
            probe_groups_in_flight=len(self._probe_groups),
            threads=threads,
            tasks_per_thread=tasks_per_thread,
            tasks_per_group=tasks_per_group,
        )

    def note_group(self, group_id: int, plan: GroupPlan) -> None:
        """Records a submitted group's tasks (those planned from a measurement)."""
        if not plan.probe:
            self._group_tasks[group_id] = plan.tasks

    def tasks_per_group(self, inflight: Collection[int]) -> float | None:
        """Mean Dask tasks of the measured groups in flight (None: none). The auto window sizes
        by it: one group split into chunks (its estimate crossed ``WHOLE_GROUP``) among fused
        ones moves the window a little, instead of cutting it to that group's shape (a 7-task
        group among 1-task ones took the sir-grid's window from 12 groups to 2)."""
        for gid in [g for g in self._group_tasks if g not in inflight]:
            del self._group_tasks[gid]
        if not self._group_tasks:
            return None
        return sum(self._group_tasks.values()) / len(self._group_tasks)

    def plan(
        self,
        *,
        study: Study,
        replicate_bytes: int,
        memory_per_thread: int,
        memory_fraction: float,
        attempt: int = 0,
    ) -> GroupPlan:
        self.poll()
        estimate = self.estimate.value if self.enabled else None
        if self.enabled and estimate is None and self.feed is not None and not self._staged:
            head = self.feed.request.count
            if should_stage(replicates=study.replicates, head=head, attempt=attempt):
                return GroupPlan(
                    chunks=split(replicates=head, size=1),
                    fused=False,
                    tasks=head,
                    probe=True,
                    staged=True,
                )
        size = chunk_size(
            replicate_seconds=estimate,
            target_seconds=self.settings.target_seconds,
            replicates=study.replicates,
            replicate_bytes=replicate_bytes,
            memory_per_thread=memory_per_thread,
            memory_fraction=memory_fraction,
        )
        plan = plan_group(
            size=size,
            replicates=study.replicates,
            targets=len(study.targets),
            outputs=bool(study.outputs),
            measured_short=estimate is not None and estimate < self.settings.target_seconds,
            fold=self.settings.fold,
        )
        if self.enabled and estimate is None:
            plan = replace(plan, probe=True)
        return plan

    def submit(
        self,
        client: Client,
        *,
        study: Study,
        group_id: int,
        attempt: int,
        plan: GroupPlan,
        priority: int,
    ) -> list[Future]:
        """Sends the group to the scheduler in one message; futures for its final tasks.

        A fused group is one task without dependencies: ``Client.submit`` sends it without
        building a graph collection, which is most of the runner's work per short group.
        """
        self.note_group(group_id, plan)
        if self.enabled and plan.fused:
            self.sizes[study.replicates] += 1
            self.groups_fused += 1
            seeds = [study.seed_for(group_id=group_id, replicate=r) for r in plan.chunks[0]]
            key = fused_key(
                token=study.token, group_id=group_id, replicates=study.replicates, attempt=attempt
            )
            return [
                client.submit(
                    run_group,
                    study.model,
                    study.groups[group_id],
                    seeds,
                    list(study.targets.items()),
                    list(study.outputs),
                    group_id,
                    study.parameter_types,
                    key=key,
                    priority=priority,
                    pure=False,
                )
            ]
        if plan.probe and not plan.staged:
            # R single-replicate tasks: admission holds back beside them (admission_limit). A
            # staged group's head is a few tasks and its rest is packed: the window applies.
            self._probe_groups.add(group_id)
        if plan.staged:
            self._submit_head(
                client,
                study=study,
                group_id=group_id,
                attempt=attempt,
                plan=plan,
                priority=priority,
            )
            return []
        graph, finals = self.graph(study=study, group_id=group_id, attempt=attempt, plan=plan)
        return client.get(graph, finals, sync=False, priority=priority)

    # -- packs of whole groups (dask_workspace.packing) -----------------------------------------

    def pack_size(
        self,
        *,
        study: Study,
        pending: Sequence[int],
        window: int,
        room: int,
        threads: int,
        replicate_bytes: int,
        memory_per_thread: int,
        memory_fraction: float,
    ) -> int:
        """Groups the next submission packs into one task (1: the next group on its own)."""
        if not (self.enabled and self.settings.pack and self.settings.fold) or room < 2:
            return 1
        plan = self.plan(
            study=study,
            replicate_bytes=replicate_bytes,
            memory_per_thread=memory_per_thread,
            memory_fraction=memory_fraction,
        )
        estimate = self.estimate.value
        if not plan.fused or estimate is None:
            return 1
        return pack_size(
            group_seconds=estimate * study.replicates,
            target_seconds=self.settings.target_seconds,
            window=window,
            room=room,
            threads=threads,
            pending=len(pending),
            consecutive=leading_run(list(islice(pending, MAX_PACK)), MAX_PACK),
        )

    def submit_pack(
        self, client: Client, *, study: Study, group_ids: Sequence[int], priority: int
    ) -> Future:
        """Sends consecutive whole groups as one task (first try only: retries are never
        packed); each group counts 1 / k tasks toward the auto window."""
        k = len(group_ids)
        for gid in group_ids:
            self._group_tasks[gid] = 1 / k
        self.packs[k] += 1
        self.sizes[k * study.replicates] += 1
        self.groups_fused += k
        groups = [
            (
                gid,
                study.groups[gid],
                [study.seed_for(group_id=gid, replicate=r) for r in range(study.replicates)],
            )
            for gid in group_ids
        ]
        key = pack_key(token=study.token, first=group_ids[0], last=group_ids[-1], attempt=0)
        return client.submit(
            run_pack,
            study.model,
            groups,
            list(study.targets.items()),
            list(study.outputs),
            study.parameter_types,
            key=key,
            priority=priority,
            pure=False,
        )

    # -- the staged probe group (dask_workspace.probe_group) ----------------------------------

    def _submit_head(
        self,
        client: Client,
        *,
        study: Study,
        group_id: int,
        attempt: int,
        plan: GroupPlan,
        priority: int,
    ) -> None:
        """The head of a probe group: its first replicates, one task each (the unchunked keys).
        The planner holds their futures (never gathered) until the rest is submitted."""
        params = study.groups[group_id]
        graph: dict[str, Task] = {}
        for c in plan.chunks:
            self.sizes[len(c)] += 1
            seeds = [study.seed_for(group_id=group_id, replicate=r) for r in c]
            key = chunk_key(token=study.token, group_id=group_id, replicates=c, attempt=attempt)
            graph[key] = Task(key, run_chunk, study.model, params, seeds)
        head = client.get(graph, list(graph), sync=False, priority=priority)
        if self.feed is not None:
            for f in head:
                f.add_done_callback(self.feed.notify)
        self.groups_staged += 1
        self._staged[group_id] = StagedGroup(
            group_id=group_id, attempt=attempt, priority=priority, head=list(head)
        )

    def rests_ready(self) -> list[int]:
        """Staged groups whose rest can be planned now (``probe_group.rest_ready``)."""
        if not self._staged:
            return []
        self.poll()
        return [
            gid
            for gid, staged in self._staged.items()
            if rest_ready(
                estimated=self.estimate.value is not None,
                longest_sample=self._longest_sample,
                target_seconds=self.settings.target_seconds,
                head_done=staged.head_done(),
            )
        ]

    def submit_rest(
        self,
        client: Client,
        *,
        study: Study,
        group_id: int,
        replicate_bytes: int,
        memory_per_thread: int,
        memory_fraction: float,
    ) -> tuple[list[Future], list[Future], int]:
        """Submits the rest of a staged group, planned with what is measured now. Returns the
        futures of its final tasks (for the runner to wait on), the head's futures (the runner
        holds them with the group's and releases them with it) and the Dask tasks submitted."""
        staged = self._staged.pop(group_id)
        head = staged.head
        k, replicates = len(head), study.replicates
        estimate = self.estimate.value
        size = chunk_size(
            replicate_seconds=estimate,
            target_seconds=self.settings.target_seconds,
            replicates=replicates,
            replicate_bytes=replicate_bytes,
            memory_per_thread=memory_per_thread,
            memory_fraction=memory_fraction,
        )
        measured_short = estimate is not None and estimate < self.settings.target_seconds
        head_keys = [f.key for f in head]
        if self.settings.fold and measured_short and size >= replicates:
            # The whole group would be one task: the rest is one chunk, the targets and outputs
            # one task (``probe_group.rest_whole``).
            self.sizes[replicates - k] += 1
            graph, finals = rest_whole(
                study=study,
                group_id=group_id,
                attempt=staged.attempt,
                head_keys=head_keys,
                start=k,
            )
        else:
            chunks = tuple(
                range(k + c.start, k + c.stop) for c in split(replicates=replicates - k, size=size)
            )
            for c in chunks:
                self.sizes[len(c)] += 1
            graph, finals = rest_graph(
                study=study,
                group_id=group_id,
                attempt=staged.attempt,
                head_keys=head_keys,
                chunks=chunks,
            )
        futures = client.get(graph, finals, sync=False, priority=staged.priority)
        return list(futures), head, len(graph)

    def drop_staged(self) -> None:
        """Forgets staged groups (the runner is stopping): their head futures are released."""
        self._staged.clear()

    def graph(
        self, *, study: Study, group_id: int, attempt: int, plan: GroupPlan
    ) -> tuple[dict[str, Task], list[str]]:
        """The graph of a group that is not fused, and the keys of its final tasks (the ones the
        runner holds futures for): its chunks (or, chunking off, its replicates) feed the targets
        and the outputs task.

        Built directly as Dask task specs (``dask._task_spec``, what ``dask.delayed`` itself
        produces) with our explicit keys: no delayed objects to tokenize and no graph
        optimization pass, which was most of the runner's CPU per short group."""
        params = study.groups[group_id]
        token = study.token
        seeds = [study.seed_for(group_id=group_id, replicate=r) for r in range(study.replicates)]
        for chunk in plan.chunks:
            self.sizes[len(chunk)] += 1
        if not self.enabled:
            return _unchunked(study=study, group_id=group_id, attempt=attempt, seeds=seeds)
        graph: dict[str, Task] = {}
        for c in plan.chunks:
            key = chunk_key(token=token, group_id=group_id, replicates=c, attempt=attempt)
            graph[key] = Task(key, run_chunk, study.model, params, seeds[c.start : c.stop])
        chunks = [TaskRef(key) for key in graph]
        return graph, add_final_tasks(
            graph, study=study, group_id=group_id, attempt=attempt, refs=chunks
        )

    def unpack(self, kind: str, result: Any) -> Iterator[tuple[str, Any]]:
        """``(stage, value)`` pairs of a finished final task, as the unchunked tasks return
        them; a measurement it carries updates the estimate."""
        if not isinstance(result, Finished):
            yield kind, result
            return
        if result.seconds is not None and result.replicates > 0:
            self._observe(result.seconds / result.replicates, source="group")
        yield from result.parts

    def summary(self) -> dict[str, Any]:
        """Summary fields: the chunk sizes used (a histogram and min/median/max)."""
        sizes = sorted(self.sizes.elements())
        return {
            "chunking": self.settings.mode,
            "chunk_seconds": self.settings.target_seconds,
            "chunk_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "chunk_size_min": sizes[0] if sizes else None,
            "chunk_size_median": statistics.median(sizes) if sizes else None,
            "chunk_size_max": sizes[-1] if sizes else None,
            "groups_fused": self.groups_fused,
            "groups_packed": sum(k * n for k, n in self.packs.items() if k > 1),
            "pack_sizes": {str(k): v for k, v in sorted(self.packs.items())},
            "groups_staged": self.groups_staged,
            "chunk_first_measured_by": self.first_measured_by,
            "replicate_seconds_estimate": None
            if self.estimate.value is None
            else round(self.estimate.value, 6),
        }


def add_final_tasks(
    graph: dict[str, Task], *, study: Study, group_id: int, attempt: int, refs: list[TaskRef]
) -> list[str]:
    """Adds a group's final tasks to ``graph``, over ``refs`` (its chunks' results, in replicate
    order): one task per target, then the outputs task. Returns their keys, the ones the runner
    holds futures for. Shared by planned groups and the rest of a staged (probe) group."""
    params = study.groups[group_id]
    token = study.token
    finals: list[str] = []
    for t, (name, ref) in enumerate(study.targets.items()):
        key = target_key(token=token, group_id=group_id, target_index=t, attempt=attempt)
        # One task per group reports the durations (the first target).
        graph[key] = Task(key, chunk_target, ref, name, params, t == 0, *refs)
        finals.append(key)
    if study.outputs:
        key = outputs_key(token=token, group_id=group_id, attempt=attempt)
        graph[key] = Task(
            key,
            chunk_outputs,
            list(study.outputs),
            group_id,
            params,
            study.parameter_types,
            not study.targets,
            *refs,
        )
        finals.append(key)
    return finals


def _unchunked(
    *, study: Study, group_id: int, attempt: int, seeds: Sequence[int]
) -> tuple[dict[str, Task], list[str]]:
    """``--chunking off``: R simulation tasks, one per target and the outputs task (the graph
    the runner has always submitted), and the keys of the final tasks."""
    params = study.groups[group_id]
    token = study.token
    graph: dict[str, Task] = {}
    for r in range(study.replicates):
        key = simulate_key(token=token, group_id=group_id, replicate=r, attempt=attempt)
        graph[key] = Task(key, simulate_replicate, study.model, params, seeds[r])
    sims = [TaskRef(key) for key in graph]
    finals: list[str] = []
    for t, (name, ref) in enumerate(study.targets.items()):
        key = target_key(token=token, group_id=group_id, target_index=t, attempt=attempt)
        graph[key] = Task(key, evaluate_target, ref, name, params, *sims)
        finals.append(key)
    if study.outputs:
        key = outputs_key(token=token, group_id=group_id, attempt=attempt)
        graph[key] = Task(
            key,
            collect_outputs,
            list(study.outputs),
            group_id,
            params,
            study.parameter_types,
            *sims,
        )
        finals.append(key)
    return graph, finals
