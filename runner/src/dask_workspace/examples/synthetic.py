"""A synthetic model for tests and benchmarks: lognormal task durations, outputs that encode
their parameters, and switches for failures, leaks and worker kills.

Parameters (all optional unless noted):

* ``x`` (number, required): echoed back, so a target's value can be checked against its group;
* ``median_seconds`` / ``sigma``: each replicate sleeps ``median x exp(sigma x N(0, 1))`` seconds
  (a lognormal duration drawn from the replicate's seed);
* ``points``: length of the ``series`` output (default 4);
* ``fail_seed_mod``: the replicate raises when ``seed % fail_seed_mod == 0``;
* ``fail_target``: true -> the targets raise;
* ``leak_mib``: each replicate keeps this many MiB alive in the worker process (a leak);
* ``kill_worker``: true -> the replicate SIGKILLs its own worker process (a poison group);
* ``busy``: true -> the replicate spins the CPU for its duration instead of sleeping (a
  CPU-bound model, for the autoscaling benchmark's CPU-driven policy).
"""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

import numpy as np

# Memory "leaked" by replicates with leak_mib: kept alive for the life of the worker process.
_LEAKED: list[bytearray] = []


def duration(params: dict[str, Any], seed: int) -> float:
    """The replicate's lognormal sleep in seconds (0 without ``median_seconds``)."""
    median = float(params.get("median_seconds", 0.0))
    if median <= 0:
        return 0.0
    sigma = float(params.get("sigma", 0.0))
    z = np.random.default_rng(seed).standard_normal()
    return median * math.exp(sigma * z)


def simulate(params: dict[str, Any], seed: int) -> dict[str, Any]:
    x = float(params["x"])
    mod = int(params.get("fail_seed_mod", 0))
    if mod and seed % mod == 0:
        raise ValueError(f"synthetic failure for seed {seed} (seed % {mod} == 0)")
    if params.get("kill_worker"):
        os.kill(os.getpid(), signal.SIGKILL)
    leak = int(params.get("leak_mib", 0))
    if leak > 0:
        block = bytearray(leak * 2**20)
        block[::4096] = b"\1" * len(block[::4096])  # touch every page so it is resident
        _LEAKED.append(block)
    seconds = duration(params, seed)
    if seconds > 0 and params.get("busy"):
        end = time.process_time() + seconds  # CPU seconds, whatever else shares the machine
        while time.process_time() < end:
            pass
    elif seconds > 0:
        time.sleep(seconds)
    points = int(params.get("points", 4))
    return {
        "x": x,
        "seed": seed,
        "slept": seconds,
        "series": x + np.arange(points, dtype=np.float64),
    }


def _check(params: dict[str, Any]) -> None:
    if params.get("fail_target"):
        raise RuntimeError(f"synthetic target failure for x={params['x']}")


def mean_x(replicates: list[dict[str, Any]], params: dict[str, Any]) -> float:
    """Mean of the replicates' echoed ``x``: equals the group's parameter ``x``."""
    _check(params)
    return float(np.mean([r["x"] for r in replicates]))


def seeds(replicates: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, float]:
    """Replicate count and distinct seeds (a dict-valued target): both equal R."""
    _check(params)
    return {
        "replicates": float(len(replicates)),
        "distinct": float(len({r["seed"] for r in replicates})),
    }
