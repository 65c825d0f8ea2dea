"""Workers paused for good by a memory leak are recycled, so the run does not hang."""

from __future__ import annotations

import pytest
from conftest import run_study_cli, start_cluster, write_study

from dask_workspace.results import read_results
from dask_workspace.watchdog import paused_idle_since, stuck_workers


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


LEAK_STUDY = {"parameters": {"grid": {"x": [0, 1, 2, 3], "leak_mib": 80}}, "replicates": 2}


@pytest.fixture(scope="module")
def leaky_cluster(tmp_path_factory):
    # Each replicate leaks 80 MiB that stays in the worker process. With a 600 MiB limit and
    # pause at 50%, a worker pauses after a couple of replicates and -- running nothing -- never
    # reaches terminate (98%), so the nanny never restarts it: "paused forever".
    c = start_cluster(
        tmp_path_factory.mktemp("leaky"),
        pods=(("lk", 2, 1),),
        memory_limit="600MiB",
        worker_env={
            "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "False",
            "DASK_DISTRIBUTED__WORKER__MEMORY__SPILL": "False",
            "DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "0.5",
            "DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE": "0.98",
        },
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
    # Runs after the test above left both workers paused with leaked memory.
    study = write_study(tmp_path / "leak.yaml", **LEAK_STUDY)
    uri = str(tmp_path / "res")
    res = run_study_cli(
        study,
        scheduler=leaky_cluster.address,
        results=uri,
        summary=tmp_path / "s.json",
        args=["--window", "2"],
        env={"DASK_WORKSPACE__RUNNER__PAUSED_RESTART_AFTER": "2s"},
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    assert res.summary["paused_restarts"] >= 2
    assert res.summary["memory_restarts"] == 0  # the nanny alone never acted
    assert "has been paused and idle" in res.stderr
    assert read_results(uri).persisted == {0, 1, 2, 3}
