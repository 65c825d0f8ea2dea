"""Several short groups in one Dask task (a *pack*).

Chunking (``dask_workspace.chunking``) makes a short group one task: its replicates, targets and
outputs fused. When that whole group still takes less than ``chunk-seconds``, every group pays
the per-task costs chunking exists to avoid: a scheduler hand-off between two tasks of a worker
thread (10-20 ms on a busy 2-core machine with ``worker-saturation`` 1.0) and the runner's
round trip per result. A pack runs k consecutive groups in one task, each exactly as its own
fused task would (``chunking.run_group``: the same seeds, the same values bit for bit), and
returns their results in order::

    group seconds = replicate seconds (the chunking estimate) x R
    k = 1                                   unmeasured, a retry, not fused, or
                                            2 x group seconds > chunk-seconds
      = floor(chunk-seconds / group seconds), capped by
          - the window: at most window / (2 x threads) groups, so the window still holds two
            tasks per worker thread (one running, one ready); and the room left in it;
          - the end of the run: at most ceil(pending / (2 x threads)) (guided self-scheduling),
            so the last tasks are small and the threads finish together;
          - the consecutive pending groups (a pack's key names a range of group ids);
          - MAX_PACK.

What stays per group:

- the window counts each group of a pack (a pack of 4 is 4 groups in flight) and its memory
  budget is per group, as before;
- a replicate or target that raises is recorded for its group only (``TaskError`` values, as in
  a fused task); the pack's other groups are persisted;
- a pack lost with its worker is retried by Dask like any task (``allowed-failures``); when it
  ends as ``KilledWorker``, each of its groups is retried by the runner on its own (retries are
  never packed), so a poison group is isolated on its retry and recorded as failed alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dask_workspace.chunking import Finished

#: The most groups in one pack: bounds one task's result (k groups' target values and outputs).
MAX_PACK = 64

#: Tasks per worker thread a pack leaves room for in the window, and the share of the pending
#: groups per thread one pack may take near the end of the run (guided self-scheduling).
PACK_SPREAD = 2


def pack_size(
    *,
    group_seconds: float | None,
    target_seconds: float,
    window: int,
    room: int,
    threads: int,
    pending: int,
    consecutive: int,
) -> int:
    """Groups in the next pack (1: a group of its own). See the module docstring.

    Args:
        group_seconds: estimated seconds of one group's replicates; None while unmeasured.
        target_seconds: ``chunk-seconds``.
        window: the window's current limit in groups.
        room: groups the window may still admit now.
        threads: worker threads in the cluster.
        pending: groups of the run not yet submitted.
        consecutive: how many of the next pending group ids are consecutive.
    """
    if group_seconds is None or 2 * group_seconds > target_seconds:
        return 1
    spread = PACK_SPREAD * max(threads, 1)
    k = math.floor(target_seconds / max(group_seconds, 1e-9))
    k = min(
        k,
        max(1, window // spread),
        max(1, math.ceil(pending / spread)),
        room,
        consecutive,
        MAX_PACK,
    )
    return max(1, k)


def leading_run(ids: Sequence[int], limit: int) -> int:
    """How many of ``ids`` (from the start, at most ``limit``) are consecutive integers."""
    n = 0
    for i, gid in enumerate(ids):
        if n >= limit or (i > 0 and gid != ids[i - 1] + 1):
            break
        n += 1
    return n


def pack_key(*, token: str, first: int, last: int, attempt: int) -> str:
    """The key of a pack of groups ``first``..``last`` (``tasks.parse_groups`` reads it)."""
    return f"simulate-{token}-g{first}to{last}-packed-a{attempt}"


def run_pack(
    model: str,
    groups: Sequence[tuple[int, dict[str, Any], Sequence[int]]],
    targets: Sequence[tuple[str, str]],
    outputs: Sequence[str],
    parameter_types: dict[str, str],
) -> list[Finished]:
    """Runs each ``(group_id, params, seeds)`` exactly as its own fused task would, in order."""
    # Imported here: chunking plans packs with this module's rule (no import cycle).
    from dask_workspace.chunking import run_group

    return [
        run_group(model, params, seeds, targets, outputs, group_id, parameter_types)
        for group_id, params, seeds in groups
    ]
