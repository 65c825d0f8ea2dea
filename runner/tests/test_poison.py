"""Groups whose tasks kill their workers: retried once with new keys, then recorded as failed
(exit 3); and when workers keep dying with no group finishing, the runner gives up (exit 4)."""

from __future__ import annotations

import pytest
from conftest import run_poison, run_study_cli, start_cluster, write_study

from dask_workspace.results import read_results


@pytest.fixture(scope="module")
def fragile_cluster(tmp_path_factory):
    # allowed-failures=1: a task that was running on 2 workers that died becomes KilledWorker
    # (Dask's default is 3; lowered to keep the test short -- the mechanism is the same).
    c = start_cluster(
        tmp_path_factory.mktemp("fragile"),
        pods=(("fp", 2, 1),),
        scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
    )
    try:
        yield c
    finally:
        c.stop()


def test_poison_group_is_retried_once_then_failed_and_the_run_goes_on(fragile_cluster, tmp_path):
    res, uri = run_poison(
        fragile_cluster, tmp_path, kills=[False, True, False], replicates=1, args=["--window", "1"]
    )
    s = res.summary
    assert s["groups_retried"] == 1
    assert s["groups_failed"] == 1 and s["groups_persisted"] == 2
    assert s["worker_deaths"] >= 4  # two attempts x (allowed-failures + 1) deaths
    assert "submitting it again with new keys" in res.stderr
    r = read_results(uri)
    assert r.persisted == {0, 2} and r.failed == {1}
    failure = r.failures.set_index("group_id").loc[1]
    assert failure["stage"] == "simulate"
    assert "KilledWorker" in failure["error"]
    assert "-a1" in failure["task"]  # the second attempt ran under new keys


def test_workers_dying_without_progress_exit_4_with_guidance(fragile_cluster, tmp_path):
    study = write_study(
        tmp_path / "doom.yaml",
        parameters={"sets": [{"x": 0.0, "kill_worker": True}]},
        replicates=1,
    )
    res = run_study_cli(
        study,
        scheduler=fragile_cluster.address,
        results=str(tmp_path / "res"),
        summary=tmp_path / "s.json",
        env={
            "DASK_WORKSPACE__RUNNER__GROUP_RETRIES": "1000",
            "DASK_WORKSPACE__RUNNER__STALL_TIMEOUT": "4s",
        },
        timeout=240,
    )
    assert res.returncode == 4, res.stderr
    assert "no group finished for" in res.stderr
    for hint in ("--window", "workers.nprocs", "workers.podMemory"):
        assert hint in res.stderr
    assert res.summary["status"] == "cluster-dying"
    assert res.summary["worker_deaths"] >= 2
