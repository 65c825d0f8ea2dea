"""A model with one poisonous parameter set: for ``poison: true`` the simulation allocates
memory until its worker is killed (by the nanny at the terminate threshold, or by the kernel at the
pod limit). Every other parameter set is a quick, well-behaved simulation. The reliability tests
use it to show that one such group is isolated (recorded as failed) while the rest of the study
completes.
"""

from __future__ import annotations

import time

import numpy as np


def simulate(params: dict, seed: int) -> dict:
    """Quick and small, except for ``params['poison']``: then grows 20 MiB every 50 ms, forever."""
    if params.get("poison"):
        hog: list[bytes] = []
        while True:  # killed from outside; the nanny checks every 100 ms
            hog.append(b"\x01" * (20 << 20))
            time.sleep(0.05)
    time.sleep(float(params.get("seconds", 0.1)))
    rng = np.random.default_rng(seed)
    return {"value": rng.random(8)}


def mean_value(replicates: list[dict], params: dict) -> float:
    """The mean of every replicate's values."""
    return float(np.mean([np.mean(r["value"]) for r in replicates]))
