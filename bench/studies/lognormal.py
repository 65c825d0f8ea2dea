"""The benchmark's model: simulations whose durations follow a lognormal distribution.

Each replicate sleeps for ``mean_seconds * X`` with ``X ~ LogNormal(-sigma**2 / 2, sigma)`` (so
the mean duration is ``mean_seconds`` whatever sigma), drawn from its own seed, and returns
``result_kib`` KiB of float64 values. Sleeping keeps the CPU free, so on a 2-core machine the
benchmark measures scheduling (barriers, stragglers, admission) rather than CPU contention between
worker threads.
"""

from __future__ import annotations

import time

import numpy as np


def simulate(params: dict, seed: int) -> dict:
    """Sleep a lognormal time (``mean_seconds``, ``sigma``); return ``result_kib`` KiB."""
    rng = np.random.default_rng(seed)
    sigma = float(params.get("sigma", 1.0))
    mean = float(params.get("mean_seconds", 0.2))
    if mean > 0:
        time.sleep(mean * rng.lognormal(-(sigma**2) / 2, sigma))
    n = max(1, int(params.get("result_kib", 64)) * 128)
    return {"value": np.full(n, rng.random())}


def mean_value(replicates: list[dict], params: dict) -> float:
    """The mean of the replicates' first values (a cheap aggregation)."""
    return float(np.mean([r["value"][0] for r in replicates]))
