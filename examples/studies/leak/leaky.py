"""A model that leaks memory on purpose: the reliability tests' stand-in for a real simulation
whose worker process grows with every task (CPython/glibc fragmentation, caches, C extensions;
docs/why.md, failure 4).

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
    """Leak ``leak_mib`` MiB (default 20) and take ``seconds`` (default 0.2); with
    ``shared_mib`` > 0, make sure the run's shared table of that size exists first; with
    ``spike_mib`` > 0 and ``k`` below ``spike_below``, spike once (see ``_spike``)."""
    t0 = time.monotonic()
    if int(params.get("shared_mib", 0)) > 0:
        _shared_table(int(params["shared_mib"]))
    if int(params.get("spike_mib", 0)) > 0 and int(params.get("k", 0)) < int(
        params.get("spike_below", 0)
    ):
        _spike(int(params["spike_mib"]), seed=seed)
    # A non-zero fill byte forces every page to be touched (calloc'd zeros might stay virtual).
    _LEAK.append(b"\x01" * (int(params.get("leak_mib", 20)) << 20))
    time.sleep(max(0.0, float(params.get("seconds", 0.2)) - (time.monotonic() - t0)))
    rng = np.random.default_rng(seed)
    return {"value": rng.random(8)}


def _shared_table(mib: int) -> None:
    """Once per run and machine, writes a ``mib`` MiB table to shared memory (/dev/shm), as a
    model that shares a lookup table between its worker processes would. The kernel charges it to
    the pod's memory cgroup, but it is in no worker process's RSS, so no Dask memory limit sees it:
    only the pod's headroom can hold it. The file ends with the name of the run's temporary
    directory (``npm run local`` makes one per run), so the launcher removes it at teardown, as a
    pod's /dev/shm disappears with the pod."""
    base = Path(dask.config.get("temporary-directory", None) or tempfile.gettempdir())
    path = Path("/dev/shm") / f"leaky-table-{base.name}"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another worker process of this run wrote it already
    with os.fdopen(fd, "wb") as f:
        for _ in range(mib):
            f.write(b"\x03" * (1 << 20))


def _spike(mib: int, *, seed: int) -> None:
    """The first time this replicate runs, grows a ``mib`` MiB working set at about 800 MiB/s (the
    rate the headroom rule budgets for) and holds it for 5 s: more than a worker process's memory
    limit, so its nanny restarts the process (``worker-restart-memory``), as it would for a
    simulation whose working set does not fit. The size is capped, so the pod's headroom holds
    the overshoot. A marker in the run's temporary directory makes the rerun of the same
    replicate (on a fresh process) run normally: a transient spike, not a poison group."""
    base = Path(dask.config.get("temporary-directory", None) or tempfile.gettempdir())
    marker = base / f"leaky-spiked-{seed}"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return  # spiked before: this is the rerun
    work: list[bytes] = []
    for _ in range(0, mib, 20):
        work.append(b"\x02" * (20 << 20))
        time.sleep(0.025)
    time.sleep(5.0)  # the nanny (100 ms ticks) restarts the process long before this ends
    work.clear()


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
