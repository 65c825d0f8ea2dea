"""Killing things mid-run: a worker process (SIGKILL), the runner itself (SIGKILL, SIGTERM),
and a cluster without workers. Every group must end up persisted exactly once."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time

import dask.config
import pytest
from click.testing import CliRunner
from conftest import (
    ROOT,
    _env,
    free_port,
    run_study_cli,
    runner_command,
    start_cluster,
    write_study,
)

from dask_workspace.cli import main
from dask_workspace.results import read_results

N_TARGETS = 3  # mean_x, seeds.replicates, seeds.distinct rows per group


def slow_study(path: pathlib.Path, *, groups: int, median: float, replicates: int = 4):
    return write_study(
        path,
        parameters={"grid": {"x": list(range(groups)), "median_seconds": median, "sigma": 0.5}},
        replicates=replicates,
        outputs=["series"],
    )


def manifest_entries(uri: pathlib.Path) -> int:
    d = uri / "manifest"
    return len(list(d.glob("*.json"))) if d.is_dir() else 0


def wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_exactly_once(uri: pathlib.Path, groups: int, replicates: int) -> None:
    r = read_results(str(uri))
    assert r.persisted == set(range(groups)) and not r.failed
    agg = r.aggregates
    assert len(agg) == groups * N_TARGETS
    assert not agg.duplicated(["group_id", "target"]).any()
    mean_x = agg[agg.target == "mean_x"]
    assert (mean_x["value"] == mean_x["x"]).all()
    series = r.outputs["series"]
    assert not series.duplicated(["group_id", "replicate", "time"]).any()
    assert len(series) == groups * replicates * 4
    # Nothing outside the manifest is left behind.
    committed = set()
    for f in (uri / "manifest").glob("*.json"):
        committed.update(json.loads(f.read_text())["files"])
    on_disk = {
        p.relative_to(uri).as_posix()
        for sub in ("aggregates", "outputs", "failures")
        for p in (uri / sub).rglob("*")
        if p.is_file()
    }
    assert on_disk == committed


@pytest.fixture
def own_cluster(tmp_path):
    c = start_cluster(tmp_path / "cluster", pods=(("kp", 2, 2),))
    try:
        yield c
    finally:
        c.stop()


def test_worker_sigkill_mid_run_loses_nothing(own_cluster, tmp_path):
    groups = 16
    study = slow_study(tmp_path / "s.yaml", groups=groups, median=0.15)
    uri = tmp_path / "res"
    summary = tmp_path / "summary.json"
    cmd = runner_command(
        study,
        scheduler=own_cluster.address,
        results=str(uri),
        summary=summary,
        args=["--window", "3", "--flush-groups", "2"],
    )
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        wait_for(lambda: manifest_entries(uri) >= 1, timeout=90, what="the first part file")
        victim = sorted(own_cluster.worker_pids().values())[0]
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    s = json.loads(summary.read_text())
    assert s["groups_persisted"] == groups
    assert s["worker_deaths"] >= 1
    assert s["window_decreases"] >= 1  # AIMD: the death halved the window (3 -> 1)
    assert "window 3 -> 1 groups" in err
    assert_exactly_once(uri, groups, 4)


def test_runner_killed_or_terminated_mid_run_resumes_without_duplicates(cluster, tmp_path):
    groups = 16
    study = slow_study(tmp_path / "s.yaml", groups=groups, median=0.1)
    uri = tmp_path / "res"
    tasks_per_group = 4 + 2 + 1

    def start(summary: pathlib.Path) -> subprocess.Popen[str]:
        cmd = runner_command(
            study,
            scheduler=cluster.address,
            results=str(uri),
            summary=summary,
            args=["--window", "2", "--flush-groups", "2"],
        )
        return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)

    # 1. SIGKILL: no chance to clean up.
    first = start(tmp_path / "first.json")
    try:
        wait_for(lambda: manifest_entries(uri) >= 2, timeout=90, what="two part files")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    after_kill = read_results(str(uri)).persisted
    assert 4 <= len(after_kill) < groups

    # 2. SIGTERM: persists what finished, exits 143.
    entries = manifest_entries(uri)
    second = start(tmp_path / "second.json")
    try:
        wait_for(
            lambda: manifest_entries(uri) > entries, timeout=90, what="a part of the second run"
        )
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 143, err
    s2 = json.loads((tmp_path / "second.json").read_text())
    assert s2["status"] == "interrupted"
    assert s2["groups_resumed"] == len(after_kill)
    after_term = read_results(str(uri)).persisted
    assert after_kill < after_term
    assert s2["groups_persisted"] == len(after_term)

    # 3. A normal run finishes the rest, and only the rest.
    third = run_study_cli(
        study, scheduler=cluster.address, results=str(uri), summary=tmp_path / "third.json"
    )
    assert third.returncode == 0, third.stderr
    assert third.summary["groups_resumed"] == len(after_term)
    assert third.summary["tasks_submitted"] == (groups - len(after_term)) * tasks_per_group
    assert_exactly_once(uri, groups, 4)


def test_no_workers_exits_4_with_guidance(tmp_path):
    scheduler_only = start_cluster(tmp_path / "cluster", pods=())
    try:
        study = slow_study(tmp_path / "s.yaml", groups=2, median=0.0)
        with dask.config.set({"workspace.runner.no-workers-timeout": "2s"}):
            result = CliRunner().invoke(
                main,
                [
                    "run",
                    str(study),
                    "--scheduler",
                    scheduler_only.address,
                    "--results",
                    str(tmp_path / "res"),
                    "--summary",
                    str(tmp_path / "s.json"),
                ],
            )
        assert result.exit_code == 4, result.output
        assert "no worker joined the scheduler" in result.output
        summary = json.loads((tmp_path / "s.json").read_text())
        assert summary["status"] == "cluster-dying"
        assert summary["groups_persisted"] == 0
    finally:
        scheduler_only.stop()


def test_ctrl_c_before_the_study_starts_exits_130_without_a_traceback(tmp_path):
    """SIGINT while the runner waits for its first worker (before its own signal handler is in
    place): exit 130 and a line that says what was kept, not click's "Aborted!" and exit 1."""
    from distributed import Client

    scheduler_only = start_cluster(tmp_path / "cluster", pods=())
    try:
        study = slow_study(tmp_path / "s.yaml", groups=2, median=0.0)
        cmd = runner_command(
            study, scheduler=scheduler_only.address, results=str(tmp_path / "r"), summary=None
        )
        env = _env({"DASK_WORKSPACE__RUNNER__NO_WORKERS_TIMEOUT": "120s"})
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            with Client(scheduler_only.address, timeout=30) as probe:

                def runner_connected() -> bool:
                    n = probe.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients))
                    return n >= 3  # the scheduler's own "fire-and-forget", this probe, the runner

                wait_for(runner_connected, timeout=90, what="the runner's client")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert "interrupted (SIGINT)" in err
        assert "Aborted!" not in err and "Traceback" not in err
    finally:
        scheduler_only.stop()


def test_unreachable_scheduler_exits_4_quickly(tmp_path):
    study = slow_study(tmp_path / "s.yaml", groups=1, median=0.0)
    with dask.config.set({"workspace.runner.connect-timeout": "2s"}):
        result = CliRunner().invoke(
            main,
            [
                "run",
                str(study),
                "--scheduler",
                f"tcp://127.0.0.1:{free_port()}",
                "--results",
                str(tmp_path / "res"),
            ],
        )
    assert result.exit_code == 4, result.output
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in result.output
