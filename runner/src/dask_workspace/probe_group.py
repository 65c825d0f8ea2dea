"""The probe group: its first replicates are measured, the rest of it is planned from them.

Adaptive chunking packs nothing until replicate durations are measured
(``dask_workspace.probe``). The first group of a run used to be submitted whole, one task per
replicate: on the bundled sir-grid study (R = 30 replicates of a few ms, 4 worker threads) that
is 30 tiny tasks and 4 target/outputs tasks, each paying a scheduler round trip, and the single
largest loss of the run's start. Now the first group goes in two stages::

    head  = its first k = min(R, worker threads) replicates, one task each (the unchunked keys
            and tasks: exactly the measurement the probe takes; they run side by side)
    rest  = replicates k..R-1, its targets and outputs, planned once the head is measured:
              - whole group short (the sizing rule would fuse it): the rest in ONE chunk, and
                ONE task that runs every target and the outputs over head + rest, in replicate
                order (keyed as the group's first target);
              - otherwise the rest in chunks of the measured size (one replicate per task when
                replicates are long), then the targets and outputs tasks over head + rest.

Why not the rest and the targets in one task: that task would depend on the head's tasks, and
Dask's task groups are named by key prefix (``simulate-<study>``), so the group of simulation
tasks would depend on itself. The scheduler then no longer treats the run's simulation tasks
as root tasks and stops queuing them (``worker-saturation``): it would hand every admitted
group to a worker at once, and a worker death would count against every group queued on that
worker (``allowed-failures``), not only the one it was running. Targets and outputs depend on
simulation tasks only, as in every other group's graph.

The rest is submitted as soon as one of these holds (``rest_ready``):

    - the estimate is known (all k head durations measured: ``dask_workspace.probe``);
    - one head replicate took at least ``chunk-seconds``: replicates are long, nothing will be
      packed, so the rest goes at once, one task per replicate as unchunked (no thread waits
      for the slowest head replicate);
    - every head task is done without a measurement (the probe events are best effort): the rest
      is planned with what is known, one task per replicate if nothing.

Only when R > k (otherwise the head would be the whole group) and only on a group's first
attempt (a retried group is planned as usual). Every replicate keeps its seed and its result
goes to the targets in replicate order, so values are identical bit for bit; a head task lost
with its worker is recomputed by Dask (the runner holds its future), and a head that ends erred
makes the rest's tasks err, which the runner handles as any lost group (retry with new keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dask._task_spec import Task, TaskRef

from dask_workspace.tasks import (
    collect_outputs,
    evaluate_target,
    outputs_key,
    target_key,
)

if TYPE_CHECKING:
    from distributed import Future

    from dask_workspace.chunking import ChunkResult, Finished
    from dask_workspace.study import Study


def should_stage(*, replicates: int, head: int, attempt: int) -> bool:
    """The probe group is staged when its head (one replicate per worker thread) is not already
    the whole group, on its first attempt."""
    return attempt == 0 and 0 < head < replicates


def rest_ready(
    *,
    estimated: bool,
    longest_sample: float | None,
    target_seconds: float,
    head_done: bool,
) -> bool:
    """Whether the rest of a staged group can be planned now (see the module docstring)."""
    if estimated or head_done:
        return True
    return longest_sample is not None and longest_sample >= target_seconds


@dataclass
class StagedGroup:
    """A probe group whose head is on the cluster and whose rest is not submitted yet."""

    group_id: int
    attempt: int
    priority: int
    #: The head's futures, one per replicate 0..k-1 (held so the results stay for the rest; the
    #: runner never gathers them).
    head: list[Future] = field(default_factory=list)

    def head_done(self) -> bool:
        return all(f.done() for f in self.head)


def group_finals(
    targets: Sequence[tuple[str, str]],
    outputs: Sequence[str],
    group_id: int,
    params: dict[str, Any],
    parameter_types: dict[str, str],
    *chunks: ChunkResult,
) -> Finished:
    """Every target and the outputs of a group in one task, over its chunks' replicates in
    order (the head's, then the rest's), with the seconds the replicates took."""
    from dask_workspace.chunking import Finished

    results = [r for c in chunks for r in c.results]
    parts: list[tuple[str, Any]] = [
        ("target", evaluate_target(ref, name, params, *results)) for name, ref in targets
    ]
    if outputs:
        parts.append(
            ("outputs", collect_outputs(outputs, group_id, params, parameter_types, *results))
        )
    seconds = sum(c.seconds for c in chunks)
    return Finished(parts=tuple(parts), seconds=seconds, replicates=len(results))


def finals_key(*, study: Study, group_id: int, attempt: int) -> str:
    """The one task of a staged group's targets and outputs: keyed as its first target (its
    outputs task without targets), so a failure of it names the stage it ran."""
    if study.targets:
        return target_key(token=study.token, group_id=group_id, target_index=0, attempt=attempt)
    return outputs_key(token=study.token, group_id=group_id, attempt=attempt)


def rest_whole(
    *,
    study: Study,
    group_id: int,
    attempt: int,
    head_keys: Sequence[str],
    start: int,
) -> tuple[dict[str, Task], list[str]]:
    """The rest of a short staged group: replicates ``start``..R-1 in one chunk and one task of
    targets and outputs over head + chunk."""
    from dask_workspace.chunking import chunk_key, run_chunk

    params = study.groups[group_id]
    rest = range(start, study.replicates)
    seeds = [study.seed_for(group_id=group_id, replicate=r) for r in rest]
    chunk = chunk_key(token=study.token, group_id=group_id, replicates=rest, attempt=attempt)
    final = finals_key(study=study, group_id=group_id, attempt=attempt)
    graph = {
        chunk: Task(chunk, run_chunk, study.model, params, seeds),
        final: Task(
            final,
            group_finals,
            list(study.targets.items()),
            list(study.outputs),
            group_id,
            params,
            study.parameter_types,
            *[TaskRef(k) for k in head_keys],
            TaskRef(chunk),
        ),
    }
    return graph, [final]


def rest_graph(
    *,
    study: Study,
    group_id: int,
    attempt: int,
    head_keys: Sequence[str],
    chunks: Sequence[range],
) -> tuple[dict[str, Task], list[str]]:
    """The rest of a staged group that is not one task: ``chunks`` (ranges of replicates k..R-1)
    and the targets and outputs tasks over the head's results and the chunks', in order."""
    from dask_workspace.chunking import add_final_tasks, chunk_key, run_chunk

    params = study.groups[group_id]
    token = study.token
    graph: dict[str, Task] = {}
    for c in chunks:
        seeds = [study.seed_for(group_id=group_id, replicate=r) for r in c]
        key = chunk_key(token=token, group_id=group_id, replicates=c, attempt=attempt)
        graph[key] = Task(key, run_chunk, study.model, params, seeds)
    refs = [TaskRef(k) for k in head_keys] + [TaskRef(k) for k in graph]
    return graph, add_final_tasks(graph, study=study, group_id=group_id, attempt=attempt, refs=refs)
