"""A model that leaks memory on purpose: the reliability tests' stand-in for a real simulation
whose worker process grows with every task (CPython/glibc fragmentation, caches, C extensions;
BACKGROUND.md failure mode 4).

Every call keeps ``leak_mib`` MiB in a module-level list that is never freed, so the worker's
*unmanaged* memory grows by that much per task until the worker is recycled. The bytes are written,
not just reserved, so the kernel really charges them to the pod's memory cgroup.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import dask
import numpy as np

# Module-level on purpose: this is the leak. It lives as long as the worker process.
_LEAK: list[bytes] = []


def simulate(params: dict, seed: int) -> dict:
    """Leak ``leak_mib`` MiB (default 20); build a ``work_mib`` MiB working set (default 0) and
    hold it ``work_seconds`` (default 0.03), as a simulation's temporaries; take ``seconds``
    (default 0.2) in all. ``burst_together: N`` makes N simulations of the same ``k`` start their
    working sets at the same moment (the worst case for a pod running them side by side)."""
    t0 = time.monotonic()
    # A non-zero fill byte forces every page to be touched (calloc'd zeros might stay virtual).
    _LEAK.append(b"\x01" * (int(params.get("leak_mib", 20)) << 20))
    work_mib = int(params.get("work_mib", 0))
    if work_mib > 0:
        _barrier(f"{params.get('k')}", parties=int(params.get("burst_together", 1)), seed=seed)
        # Grown in steps of ``step_mib`` every 10 ms, as a simulation fills its arrays: about
        # 90 MiB per 100 ms nanny tick with the default 20 MiB steps (on a 1.5 GB/s machine).
        step = int(params.get("step_mib", 20))
        work: list[bytes] = []
        for _ in range(0, work_mib, step):
            work.append(b"\x02" * (step << 20))
            time.sleep(0.01)
        time.sleep(float(params.get("work_seconds", 0.03)))
        work.clear()  # large bytes objects are mmap'd: freeing returns the memory to the OS
    time.sleep(max(0.0, float(params.get("seconds", 0.2)) - (time.monotonic() - t0)))
    rng = np.random.default_rng(seed)
    return {"value": rng.random(8)}


def _barrier(name: str, *, parties: int, seed: int, timeout: float = 3.0) -> None:
    """Waits (at most ``timeout`` s) until ``parties`` simulations reached the barrier ``name``:
    the replicates of a group then burst at the same moment, the worst case for the pod. Files in
    the run's temporary directory (``npm run local`` sets one per run) are the meeting point."""
    if parties <= 1:
        return
    base = dask.config.get("temporary-directory", None) or tempfile.gettempdir()
    meeting = Path(base) / f"leaky-barrier-{name}"
    meeting.mkdir(parents=True, exist_ok=True)
    (meeting / f"{seed}-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while len(list(meeting.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.005)


def mean_value(replicates: list[dict], params: dict) -> float:
    """The mean of every replicate's values (a cheap aggregation)."""
    return float(np.mean([np.mean(r["value"]) for r in replicates]))


def leaked_mib() -> int:
    """How much this process has leaked so far (for measurements)."""
    return sum(len(b) for b in _LEAK) >> 20


def leak_task(i: int, *, leak_mib: int = 20, seconds: float = 0.2) -> int:
    """A plain Dask task with the same leak, for measurements that bypass the runner."""
    simulate({"leak_mib": leak_mib, "seconds": seconds}, i)
    return i
