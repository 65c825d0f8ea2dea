"""Workers paused for good by a memory leak are recycled, so the run does not hang."""

from __future__ import annotations

import pytest
from conftest import run_study_cli, start_cluster, write_study

from dask_workspace.results import read_results
from dask_workspace.watchdog import (
    paused_idle_since,
    recyclable_now,
    stuck_workers,
    unmanaged_above_pause,
)


def test_paused_idle_since_tracks_only_idle_paused_workers():
    since = paused_idle_since({"a": {"executing": 0}, "b": {"executing": 1}}, {}, now=10.0)
    assert since == {"a": 10.0}
    since = paused_idle_since({"a": {"executing": 0}, "b": {"executing": 0}}, since, now=15.0)
    assert since == {"a": 10.0, "b": 15.0}
    assert stuck_workers(since, now=16.0, after=5.0) == ["a"]
    # A worker that unpauses (or starts a task) starts over.
    since = paused_idle_since({"b": {"executing": 0}}, since, now=17.0)
    assert since == {"b": 15.0}
    assert stuck_workers(since, now=19.0, after=5.0) == []


MiB = 2**20


def test_unmanaged_above_pause_threshold_is_hopeless():
    assert unmanaged_above_pause({"unmanaged": 81 * MiB, "limit": 100 * MiB}, 0.8)
    assert not unmanaged_above_pause({"unmanaged": 79 * MiB, "limit": 100 * MiB}, 0.8)
    # Pausing off, or no limit: nothing to compare with.
    assert not unmanaged_above_pause({"unmanaged": 99 * MiB, "limit": 100 * MiB}, None)
    assert not unmanaged_above_pause({"unmanaged": 99 * MiB, "limit": 0}, 0.8)


def test_hopeless_workers_are_recycled_on_the_second_poll_not_after_the_wait():
    paused = {
        "leaky": {"executing": 0, "unmanaged": 90 * MiB, "limit": 100 * MiB},
        "spilly": {"executing": 0, "unmanaged": 20 * MiB, "limit": 100 * MiB},
    }
    since = paused_idle_since(paused, {}, now=10.0)
    # First sighting: not yet (it may be between two polls of a task finishing).
    assert stuck_workers(since, now=10.0, after=60.0, paused=paused, pause_fraction=0.8) == []
    since = paused_idle_since(paused, since, now=11.0)
    # Second poll: the leaky one goes at once; the one paused by managed memory waits.
    assert stuck_workers(since, now=11.0, after=60.0, paused=paused, pause_fraction=0.8) == [
        "leaky"
    ]
    assert stuck_workers(since, now=70.0, after=60.0, paused=paused, pause_fraction=0.8) == [
        "leaky",
        "spilly",
    ]
    # Pausing off in the config: only the wait applies.
    assert stuck_workers(since, now=11.0, after=60.0, paused=paused, pause_fraction=None) == []


def test_with_no_running_worker_recycle_one_then_wait_for_a_recipient():
    due = ["a", "b"]
    # Some worker runs: retiring hands results to it, so every due worker goes now.
    assert recyclable_now(due, running=1, last_recycle=9.0, now=10.0) == ["a", "b"]
    # All paused: one goes (its results are lost either way) ...
    assert recyclable_now(due, running=0, last_recycle=None, now=10.0) == ["a"]
    # ... and the next waits for a worker to run again (normally the restarted one),
    assert recyclable_now(["b"], running=0, last_recycle=10.0, now=12.0) == []
    assert recyclable_now(["b"], running=1, last_recycle=10.0, now=13.0) == ["b"]
    # but not forever.
    assert recyclable_now(["b"], running=0, last_recycle=10.0, now=41.0) == ["b"]
    assert recyclable_now([], running=0, last_recycle=None, now=0.0) == []


LEAK_STUDY = {"parameters": {"grid": {"x": [0, 1, 2, 3], "leak_mib": 80}}, "replicates": 2}


LEAKY_MEMORY_CONFIG = {
    "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "False",
    "DASK_DISTRIBUTED__WORKER__MEMORY__SPILL": "False",
    "DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "0.5",
    "DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE": "0.98",
}


@pytest.fixture(scope="module")
def leaky_cluster(tmp_path_factory):
    # Each replicate leaks 80 MiB that stays in the worker process. With a 600 MiB limit and
    # pause at 50%, a worker pauses after a couple of replicates and -- running nothing -- never
    # reaches terminate (98%), so the nanny never restarts it: "paused forever".
    c = start_cluster(
        tmp_path_factory.mktemp("leaky"),
        pods=(("lk", 2, 1),),
        memory_limit="600MiB",
        # One config for the scheduler and the workers, as the workspace mounts it.
        scheduler_env=LEAKY_MEMORY_CONFIG,
        worker_env=LEAKY_MEMORY_CONFIG,
    )
    try:
        yield c
    finally:
        c.stop()


def test_without_recycling_paused_forever_is_reported_not_hung(leaky_cluster, tmp_path):
    study = write_study(tmp_path / "leak.yaml", **LEAK_STUDY)
    res = run_study_cli(
        study,
        scheduler=leaky_cluster.address,
        results=str(tmp_path / "res"),
        summary=tmp_path / "s.json",
        args=["--window", "2"],
        env={
            "DASK_WORKSPACE__RUNNER__PAUSED_RESTART_AFTER": "false",
            "DASK_WORKSPACE__RUNNER__STALL_TIMEOUT": "6s",
        },
        timeout=120,
    )
    assert res.returncode == 4, res.stderr
    assert "workers are paused (memory above the pause threshold)" in res.stderr
    assert res.summary["groups_persisted"] < 4
    assert res.summary["memory_restarts"] == 0


def test_leaking_workers_that_pause_for_good_are_recycled(leaky_cluster, tmp_path):
    # Runs after the test above left both workers paused with leaked memory. Their unmanaged
    # memory alone is above the pause threshold, so they are recycled at once: the fallback
    # wait is set far beyond the stall timeout, so without that the run would exit 4.
    study = write_study(tmp_path / "leak.yaml", **LEAK_STUDY)
    uri = str(tmp_path / "res")
    res = run_study_cli(
        study,
        scheduler=leaky_cluster.address,
        results=uri,
        summary=tmp_path / "s.json",
        args=["--window", "2"],
        env={
            "DASK_WORKSPACE__RUNNER__PAUSED_RESTART_AFTER": "1 hour",
            "DASK_WORKSPACE__RUNNER__STALL_TIMEOUT": "40s",
        },
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    assert res.summary["paused_restarts"] >= 2
    assert res.summary["memory_restarts"] == 0  # the nanny alone never acted
    # Both workers paused: a recycled worker's results had nowhere to go, so its removal was
    # unexpected -- but it is counted as a recycle, not as a worker death.
    assert res.summary["worker_deaths"] == 0
    assert "has been paused and idle" in res.stderr
    assert "above the pause threshold on its own" in res.stderr
    assert read_results(uri).persisted == {0, 1, 2, 3}
