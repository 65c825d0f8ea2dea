"""A stochastic SIR epidemic (chain-binomial tau-leaping, one step per day).

``simulate(params, seed)`` returns daily ``prevalence`` (I / N), ``incidence`` (new infections)
and ``susceptible``. Targets compare replicates with a reference epidemic: the deterministic SIR
curve of ``REFERENCE`` parameters stands in for observed data, as in a calibration study.

Parameters (all optional but ``beta`` and ``gamma``): ``beta`` (transmission rate per day),
``gamma`` (recovery rate per day), ``population`` (10,000), ``initial_infected`` (10),
``days`` (160).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

REFERENCE = {"beta": 0.3, "gamma": 0.1}
DEFAULTS = {"population": 10_000, "initial_infected": 10, "days": 160}


def _settings(params: dict[str, Any]) -> tuple[float, float, int, int, int]:
    p = {**DEFAULTS, **params}
    return (
        float(p["beta"]),
        float(p["gamma"]),
        int(p["population"]),
        int(p["initial_infected"]),
        int(p["days"]),
    )


def simulate(params: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """One stochastic epidemic. Each day, with I infectious among N people::

    new infections ~ Binomial(S, 1 - exp(-beta * I / N))
    recoveries     ~ Binomial(I, 1 - exp(-gamma))
    """
    beta, gamma, n, i0, days = _settings(params)
    rng = np.random.default_rng(seed)
    s, i = n - i0, i0
    prevalence = np.empty(days)
    incidence = np.empty(days, dtype=np.int64)
    susceptible = np.empty(days, dtype=np.int64)
    p_recover = 1.0 - np.exp(-gamma)
    for day in range(days):
        new_inf = rng.binomial(s, 1.0 - np.exp(-beta * i / n)) if i else 0
        new_rec = rng.binomial(i, p_recover) if i else 0
        s -= new_inf
        i += new_inf - new_rec
        prevalence[day] = i / n
        incidence[day] = new_inf
        susceptible[day] = s
    return {"prevalence": prevalence, "incidence": incidence, "susceptible": susceptible}


@functools.lru_cache(maxsize=8)
def deterministic_incidence(
    beta: float, gamma: float, population: int, initial_infected: int, days: int
) -> np.ndarray:
    """Daily new infections of the deterministic SIR with the same daily discretisation."""
    s, i = float(population - initial_infected), float(initial_infected)
    out = np.empty(days)
    for day in range(days):
        new_inf = s * (1.0 - np.exp(-beta * i / population))
        new_rec = i * (1.0 - np.exp(-gamma))
        s -= new_inf
        i += new_inf - new_rec
        out[day] = new_inf
    return out


def _reference(params: dict[str, Any]) -> np.ndarray:
    _, _, n, i0, days = _settings(params)
    return deterministic_incidence(REFERENCE["beta"], REFERENCE["gamma"], n, i0, days)


def incidence_loss(replicates: list[dict[str, Any]], params: dict[str, Any]) -> float:
    """Root mean square error between the replicates' mean daily incidence and the reference
    epidemic's (lower is a better fit)."""
    mean = np.mean([r["incidence"] for r in replicates], axis=0)
    return float(np.sqrt(np.mean((mean - _reference(params)) ** 2)))


def peak(replicates: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, float]:
    """Peak prevalence and its day, averaged over replicates (a dict-valued target)."""
    heights = [float(np.max(r["prevalence"])) for r in replicates]
    days = [float(np.argmax(r["prevalence"])) for r in replicates]
    return {"height": float(np.mean(heights)), "day": float(np.mean(days))}


def attack_rate(replicates: list[dict[str, Any]], params: dict[str, Any]) -> float:
    """Share of the population infected by the end, averaged over replicates."""
    _, _, n, _, _ = _settings(params)
    return float(np.mean([(n - r["susceptible"][-1]) / n for r in replicates]))
