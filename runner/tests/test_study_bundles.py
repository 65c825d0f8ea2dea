"""The study bundle reaches every worker: started after the run began, restarted by its nanny,
recycled by ``--lifetime`` and by the runner's watchdog. Real scheduler and worker processes;
the model package exists only in the study folder."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

from conftest import ROOT, _env, runner_command, start_cluster
from studyfolder import make_study_folder

from dask_workspace.results import read_results
from dask_workspace.watchdog import recycle_worker


def _persisted(results: pathlib.Path) -> int:
    manifest = results / "manifest"
    if not manifest.is_dir():
        return 0
    return sum(len(json.loads(p.read_text())["groups"]) for p in manifest.glob("*.json"))


def _wait_persisted(proc: subprocess.Popen, results: pathlib.Path, n: int, timeout=90) -> None:
    deadline = time.monotonic() + timeout
    while _persisted(results) < n:
        assert proc.poll() is None, f"the runner ended early ({proc.returncode})"
        assert time.monotonic() < deadline, f"fewer than {n} groups persisted in {timeout}s"
        time.sleep(0.1)


def _start_run(study: pathlib.Path, address: str, results: pathlib.Path, summary: pathlib.Path):
    cmd = runner_command(
        study,
        scheduler=address,
        results=str(results),
        summary=summary,
        args=["--flush-groups", "1", "--window", "2", "--fail-fast", "0"],
    )
    log = open(results.parent / "runner.log", "w")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    return proc, log


def _finish(proc: subprocess.Popen, log, summary: pathlib.Path) -> dict:
    try:
        proc.wait(timeout=180)
    finally:
        log.close()
    text = pathlib.Path(log.name).read_text()
    assert proc.returncode == 0, text
    return json.loads(summary.read_text())


def test_bundle_reaches_a_worker_that_joins_after_the_run_began(tmp_path: pathlib.Path) -> None:
    study = make_study_folder(tmp_path / "study", package="latejoin_pkg", groups=24, sleep=0.25)
    cluster = start_cluster(tmp_path / "cluster", pods=(("first", 1, 1),))
    results, summary = tmp_path / "res", tmp_path / "summary.json"
    try:
        proc, log = _start_run(study, cluster.address, results, summary)
        _wait_persisted(proc, results, 2)
        # A new worker joins mid-run (autoscaling), then the first one leaves: every later
        # group can only run on the newcomer.
        cluster.add_pod("late", nworkers=1, nthreads=1)
        cluster.wait_for_workers(2)
        with cluster.client() as c:
            first = [a for a, w in c.scheduler_info()["workers"].items() if w["name"] == "first"]
            c.retire_workers(first, close_workers=True)
        s = _finish(proc, log, summary)
    finally:
        cluster.stop()
    assert s["groups_persisted"] == s["groups_total"] == 24 and s["groups_failed"] == 0
    r = read_results(str(results))
    assert sorted(r.aggregates.group_id.unique()) == list(range(24))
    workers = set(r.outputs["who"]["worker"])
    assert workers == {"first", "late"}, workers
    late_groups = set(r.outputs["who"].query("worker == 'late'")["group_id"])
    assert len(late_groups) >= 4


def test_bundle_survives_nanny_restarts_lifetime_and_watchdog_recycles(
    tmp_path: pathlib.Path,
) -> None:
    study = make_study_folder(tmp_path / "study", package="restarts_pkg", groups=40, sleep=0.1)
    cluster = start_cluster(tmp_path / "cluster", pods=(("steady", 1, 1),))
    # A worker recycled every 3 s by Dask's own lifetime mechanism.
    cluster.add_pod(
        "short", nworkers=1, nthreads=1, extra_args=["--lifetime", "3s", "--lifetime-restart"]
    )
    cluster.wait_for_workers(2)
    results, summary = tmp_path / "res", tmp_path / "summary.json"
    try:
        with cluster.client() as c:
            pid_before = c.run(os.getpid)
            proc, log = _start_run(study, cluster.address, results, summary)
            _wait_persisted(proc, results, 4)
            steady = [a for a, w in c.scheduler_info()["workers"].items() if w["name"] == "steady"]
            # A nanny restart (what a memory restart does): a new worker process.
            c.restart_workers(steady)
            _wait_persisted(proc, results, 12)
            steady = [a for a, w in c.scheduler_info()["workers"].items() if w["name"] == "steady"]
            # The runner's watchdog recycle: retire, then the nanny starts a fresh process.
            c.run(recycle_worker, workers=steady, wait=False)
            s = _finish(proc, log, summary)
    finally:
        cluster.stop()
    assert s["groups_persisted"] == s["groups_total"] == 40 and s["groups_failed"] == 0
    who = read_results(str(results)).outputs["who"]
    pids = who.groupby("worker")["pid"].unique()
    # Tasks ran in the first steady process, after its restart and after its recycle ...
    assert len(pids["steady"]) >= 3, pids["steady"]
    # ... and in more than one generation of the lifetime-recycled worker.
    assert len(pids["short"]) >= 2, pids["short"]
    assert len(set(pids["steady"]) - set(pid_before.values())) >= 2
