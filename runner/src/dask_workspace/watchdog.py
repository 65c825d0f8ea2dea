"""Recycling workers that are paused for good (BACKGROUND.md failure mode 4).

A worker pauses when its process memory passes ``distributed.worker.memory.pause`` (80%). If the
memory is unmanaged (a leak, fragmentation), nothing brings it down: a paused worker runs no
task, so it never reaches the terminate threshold either, and the nanny never restarts it. With
every worker in that state the run hangs forever.

The runner's watchdog recycles a worker that has been paused *and idle* (executing nothing) for
``workspace.runner.paused-restart-after``: the same graceful path as ``--lifetime-restart``
(retire: move its results to other workers, then the nanny starts a fresh process). A worker
still executing a task is left alone: it may finish and release memory.
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


def stuck_workers(since: Mapping[str, float], *, now: float, after: float) -> list[str]:
    """Workers paused and idle for at least ``after`` seconds."""
    return sorted(a for a, t in since.items() if now - t >= after)


async def recycle_worker(dask_worker: Any) -> None:
    """Runs on the worker (``Client.run``): retire gracefully, then the nanny restarts it."""
    await dask_worker.close_gracefully(restart=True, reason="paused-without-progress")
