"""Recycling workers that are paused for good (a leak: see runner/README.md, "How it runs").

A worker pauses when its process memory passes ``distributed.worker.memory.pause`` (80%). If the
memory is unmanaged (a leak, fragmentation), nothing brings it down: a paused worker runs no
task, so it never reaches the terminate threshold either, and the nanny never restarts it. With
every worker in that state the run hangs forever.

The runner's watchdog recycles a worker that has been paused *and idle* (executing nothing) for
``workspace.runner.paused-restart-after``: the same graceful path as ``--lifetime-restart``
(retire: move its results to other workers, then the nanny starts a fresh process). A worker
still executing a task is left alone: it may finish and release memory.

A worker whose *unmanaged* memory alone is above the pause threshold cannot be unpaused by
spilling (spilling only frees managed memory), so it is recycled as soon as it has been seen
paused and idle on two polls in a row, rather than after the full wait. The long wait remains
for workers paused by managed memory, which spilling may still bring down. Measured in
``bench/PAUSED-FOREVER.md``: the hang ends either way; recycling hopeless workers at once
finishes close to the speed of turning pausing off, without killing a running task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def paused_idle_since(
    paused: Mapping[str, Mapping[str, Any]], previous: Mapping[str, float], *, now: float
) -> dict[str, float]:
    """Since when each worker has been paused and idle, given the paused workers now.

    Args:
        paused: address -> {"executing": tasks running now, ...} for every paused worker.
        previous: the result of the last call.
        now: the current time (monotonic seconds).
    """
    since: dict[str, float] = {}
    for address, info in paused.items():
        if int(info.get("executing", 0)) > 0:
            continue  # still working: not stuck yet
        since[address] = previous.get(address, now)
    return since


def unmanaged_above_pause(info: Mapping[str, Any], pause_fraction: float | None) -> bool:
    """Whether a paused worker's unmanaged memory alone is above its pause threshold.

    Args:
        info: the worker's ``{"unmanaged": bytes, "limit": bytes, ...}``.
        pause_fraction: ``distributed.worker.memory.pause`` (None or False: pausing is off).
    """
    limit = info.get("limit") or 0
    if not pause_fraction or limit <= 0:
        return False
    return float(info.get("unmanaged") or 0) >= float(pause_fraction) * limit


def stuck_workers(
    since: Mapping[str, float],
    *,
    now: float,
    after: float,
    paused: Mapping[str, Mapping[str, Any]] | None = None,
    pause_fraction: float | None = None,
) -> list[str]:
    """Workers to recycle now.

    A worker qualifies when it has been paused and idle for at least ``after`` seconds, or when
    it was already paused and idle at an earlier poll (``since < now``) and its unmanaged memory
    alone is above the pause threshold (``paused`` gives the memory of each paused worker).
    """
    paused = paused or {}
    return sorted(
        a
        for a, t in since.items()
        if now - t >= after
        or (t < now and unmanaged_above_pause(paused.get(a, {}), pause_fraction))
    )


def recyclable_now(
    candidates: list[str],
    *,
    running: int,
    last_recycle: float | None,
    now: float,
    handover_wait: float = 30.0,
) -> list[str]:
    """Which of the workers due for recycling to recycle at this poll.

    Retiring a worker hands its results to a running worker. When no worker is running (all
    paused), there is nowhere to hand them, so they are lost and recomputed: then recycle one
    worker, and wait (up to ``handover_wait`` seconds) until a worker runs again -- normally the
    recycled one, restarted -- so the next one's results can move to it.

    Args:
        candidates: workers due for recycling (``stuck_workers``).
        running: workers running now (not paused, not closing).
        last_recycle: when the runner last recycled a worker (monotonic seconds), or None.
        now: the current time (monotonic seconds).
    """
    if running > 0 or not candidates:
        return list(candidates)
    if last_recycle is not None and now - last_recycle < handover_wait:
        return []
    return list(candidates[:1])


async def recycle_worker(dask_worker: Any) -> None:
    """Runs on the worker (``Client.run``): retire gracefully, then the nanny restarts it."""
    await dask_worker.close_gracefully(restart=True, reason="paused-without-progress")
