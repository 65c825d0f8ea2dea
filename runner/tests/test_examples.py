"""The example models behave like what they model."""

from __future__ import annotations

import numpy as np

from dask_workspace.examples import sir, synthetic


def test_sir_is_a_consistent_stochastic_epidemic():
    params = {"beta": 0.3, "gamma": 0.1}
    a = sir.simulate(params, 1)
    assert np.array_equal(a["incidence"], sir.simulate(params, 1)["incidence"])  # seeded
    assert not np.array_equal(a["incidence"], sir.simulate(params, 2)["incidence"])
    n, i0 = sir.DEFAULTS["population"], sir.DEFAULTS["initial_infected"]
    assert len(a["prevalence"]) == sir.DEFAULTS["days"]
    assert ((a["prevalence"] >= 0) & (a["prevalence"] <= 1)).all()
    assert (np.diff(a["susceptible"]) <= 0).all()
    # Every infection is counted once: cumulative incidence = initial susceptibles - final.
    assert a["incidence"].sum() == (n - i0) - a["susceptible"][-1]


def test_sir_targets_prefer_the_reference_parameters():
    def reps(beta, gamma, k=20):
        return [sir.simulate({"beta": beta, "gamma": gamma}, s) for s in range(k)]

    near = sir.incidence_loss(reps(0.3, 0.1), {"beta": 0.3, "gamma": 0.1})
    far = sir.incidence_loss(reps(0.15, 0.1), {"beta": 0.15, "gamma": 0.1})
    assert near < far
    low = sir.attack_rate(reps(0.12, 0.1), {"beta": 0.12, "gamma": 0.1})
    high = sir.attack_rate(reps(0.5, 0.1), {"beta": 0.5, "gamma": 0.1})
    assert 0 <= low < high <= 1
    peak = sir.peak(reps(0.5, 0.1, 5), {"beta": 0.5, "gamma": 0.1})
    assert set(peak) == {"height", "day"} and 0 < peak["height"] <= 1


def test_synthetic_durations_are_lognormal_and_seeded():
    params = {"x": 1.0, "median_seconds": 1.0, "sigma": 1.0}
    d = np.array([synthetic.duration(params, s) for s in range(4000)])
    assert synthetic.duration(params, 7) == synthetic.duration(params, 7)
    assert abs(np.median(np.log(d))) < 0.1  # median 1 s
    assert abs(np.std(np.log(d)) - 1.0) < 0.05  # sigma 1
    assert synthetic.duration({"x": 1.0}, 3) == 0.0
