"""A model that leaks memory on purpose: the reliability tests' stand-in for a real simulation
whose worker process grows with every task (CPython/glibc fragmentation, caches, C extensions;
BACKGROUND.md failure mode 4).

Every call keeps ``leak_mib`` MiB in a module-level list that is never freed, so the worker's
*unmanaged* memory grows by that much per task until the worker is recycled. The bytes are written,
not just reserved, so the kernel really charges them to the pod's memory cgroup.
"""

from __future__ import annotations

import time

import numpy as np

# Module-level on purpose: this is the leak. It lives as long as the worker process.
_LEAK: list[bytes] = []


def simulate(params: dict, seed: int) -> dict:
    """Leak ``params['leak_mib']`` MiB (default 20), sleep ``params['seconds']`` (default 0.2)."""
    leak_mib = int(params.get("leak_mib", 20))
    # A non-zero fill byte forces every page to be touched (calloc'd zeros might stay virtual).
    _LEAK.append(b"\x01" * (leak_mib << 20))
    time.sleep(float(params.get("seconds", 0.2)))
    rng = np.random.default_rng(seed)
    return {"value": rng.random(8)}


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
