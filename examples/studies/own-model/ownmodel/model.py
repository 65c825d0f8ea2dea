"""A small stochastic SIR model: the signatures a study's model and targets follow.

``simulate(params, seed)`` runs one replicate: ``params`` is the group's parameter set (a dict),
``seed`` an integer the runner derives from the study seed, the group and the replicate number,
so the same study always draws the same numbers. It returns a dict of named outputs.

A target ``target(replicates, params)`` gets the list of the group's replicate dicts and returns
a float (or a dict of floats).
"""

from __future__ import annotations

from typing import Any

import numpy as np

POPULATION = 1000
DAYS = 60


def simulate(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Daily binomial SIR steps; ``infected`` is the number infected on each day."""
    rng = np.random.default_rng(seed)
    beta, gamma = float(params["beta"]), float(params["gamma"])
    s, i, r = POPULATION - 5, 5, 0
    infected = np.zeros(DAYS, dtype=np.int64)
    for day in range(DAYS):
        new_i = rng.binomial(s, 1.0 - np.exp(-beta * i / POPULATION))
        new_r = rng.binomial(i, 1.0 - np.exp(-gamma))
        s, i, r = s - new_i, i + new_i - new_r, r + new_r
        infected[day] = i
    return {"infected": infected, "recovered": r}


def peak_infected(replicates: list[dict[str, Any]], params: dict[str, Any]) -> float:
    """Mean over replicates of the highest daily number infected."""
    return float(np.mean([rep["infected"].max() for rep in replicates]))


def attack_rate(replicates: list[dict[str, Any]], params: dict[str, Any]) -> float:
    """Mean share of the population infected by the end (recovered or still infected)."""
    final = [(rep["recovered"] + rep["infected"][-1]) / POPULATION for rep in replicates]
    return float(np.mean(final))
