"""End-to-end runs of ``python -m dask_workspace run`` against a real Dask cluster."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pandas as pd
from click.testing import CliRunner
from conftest import ROOT, _env, run_study_cli, runner_command, write_study

from dask_workspace.cli import main
from dask_workspace.results import read_results
from dask_workspace.seeds import replicate_seed

R = 3


def grid_study(tmp_path, n=12, **extra):
    params = {"x": list(range(n)), "median_seconds": 0.02, "sigma": 1.0, "points": 3}
    params.update(extra)
    return write_study(
        tmp_path / "study.yaml",
        parameters={"grid": params},
        replicates=R,
        outputs=["series"],
    )


def sorted_frame(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys).reset_index(drop=True)


def test_window_and_batch_give_identical_correct_results_and_resume_submits_nothing(
    cluster, tmp_path
):
    study = grid_study(tmp_path)
    window_uri = str(tmp_path / "window")
    summary = tmp_path / "window.json"
    # Run the window in the background and sample the scheduler while it runs.
    cmd = runner_command(
        study,
        scheduler=cluster.address,
        results=window_uri,
        summary=summary,
        # One task per replicate here (the window's bookkeeping); the batch run below packs
        # replicates (chunking auto, the default), and both must give the same results.
        args=["--window", "2", "--progress-interval", "1", "--chunking", "off"],
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
    )

    def groups_on_scheduler(dask_scheduler, prefix: str) -> int:
        """Distinct groups with any task the scheduler still holds: a test-side check that is
        independent of the runner's own plugin (a local function, so it pickles by value)."""
        groups = set()
        for key, ts in dask_scheduler.tasks.items():
            if isinstance(key, str) and prefix in key and ts.state not in ("released", "forgotten"):
                groups.add(key.split("-g")[-1].split("-")[0])
        return len(groups)

    sampled = []
    with cluster.client() as client:
        while proc.poll() is None:
            sampled.append(client.run_on_scheduler(groups_on_scheduler, prefix="syn-"))
            time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "groups/min" in err  # progress lines
    w = json.loads(summary.read_text())
    assert w["groups_total"] == w["groups_persisted"] == 12
    assert w["groups_failed"] == 0
    assert w["tasks_submitted"] == 12 * (R + 2 + 1)
    assert w["peak_inflight_groups"] == 2  # the window fills up ...
    assert w["peak_cluster_groups"] <= 2  # ... and the cluster never holds more (scheduler-side)
    assert max(sampled) <= 2 and max(sampled) >= 1
    assert 0 < w["utilization"] <= 1
    assert w["worker_deaths"] == 0 and w["memory_restarts"] == 0

    batch_uri = str(tmp_path / "batch")
    b = run_study_cli(
        study,
        scheduler=cluster.address,
        results=batch_uri,
        summary=tmp_path / "batch.json",
        args=["--mode", "batch", "--batch-size", "5"],
    )
    assert b.returncode == 0, b.stderr
    assert b.summary["peak_inflight_groups"] == 5
    assert b.summary["peak_cluster_groups"] <= 5

    wr, br = read_results(window_uri), read_results(batch_uri)
    keys = ["group_id", "target"]
    pd.testing.assert_frame_equal(
        sorted_frame(wr.aggregates, keys), sorted_frame(br.aggregates, keys)
    )
    okeys = ["group_id", "replicate", "time"]
    pd.testing.assert_frame_equal(
        sorted_frame(wr.outputs["series"], okeys), sorted_frame(br.outputs["series"], okeys)
    )

    # Per-group correctness: each target's value matches its own group's parameters.
    agg = wr.aggregates
    assert sorted(agg.group_id.unique()) == list(range(12))
    assert len(agg) == 12 * 3  # mean_x, seeds.replicates, seeds.distinct; no duplicates
    mean_x = agg[agg.target == "mean_x"]
    assert (mean_x["value"] == mean_x["x"]).all()
    assert (mean_x["x"] == mean_x["group_id"]).all()
    assert (agg[agg.target.str.startswith("seeds.")]["value"] == R).all()
    series = wr.outputs["series"]
    assert len(series) == 12 * R * 3
    assert np.allclose(series["value"], series["x"] + series["time"])

    # Resume: the same URI again recomputes nothing and changes nothing.
    parts_before = wr.parts
    again = run_study_cli(
        study, scheduler=cluster.address, results=window_uri, summary=tmp_path / "again.json"
    )
    assert again.returncode == 0, again.stderr
    assert again.summary["tasks_submitted"] == 0
    assert again.summary["groups_resumed"] == 12
    assert read_results(window_uri).parts == parts_before


def test_task_exceptions_are_recorded_not_fatal(cluster, tmp_path):
    seed, mod = 7, 3
    sets = [
        {"x": 0.0, "fail_seed_mod": 0, "fail_target": False},
        {"x": 1.0, "fail_seed_mod": mod, "fail_target": False},  # some replicates raise
        {"x": 2.0, "fail_seed_mod": 0, "fail_target": True},  # targets raise
        {"x": 3.0, "fail_seed_mod": 0, "fail_target": False},
    ]
    # Pick the replicate count so that group 1 has at least one failing and one good replicate.
    reps = 6
    failing = [
        r
        for r in range(reps)
        if replicate_seed(study_seed=seed, group_index=1, replicate=r) % mod == 0
    ]
    assert 0 < len(failing) < reps
    study = write_study(
        tmp_path / "fail.yaml",
        parameters={"sets": sets},
        replicates=reps,
        seed=seed,
        outputs=["series"],
    )
    uri = str(tmp_path / "res")
    res = run_study_cli(study, scheduler=cluster.address, results=uri, summary=tmp_path / "s.json")
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr.split("failed in")[0]
    assert res.summary["groups_failed"] == 2
    assert res.summary["groups_persisted"] == 2
    # The same summary, whole, on one log line (what `kubectl logs` shows for a runner Job).
    logged = [ln for ln in res.stderr.splitlines() if " summary {" in ln]
    assert len(logged) == 1, res.stderr[-2000:]
    assert json.loads(logged[0].split(" summary ", 1)[1]) == res.summary
    r = read_results(uri)
    assert r.persisted == {0, 3} and r.failed == {1, 2}
    f = r.failures.set_index("group_id")
    assert f.loc[1, "stage"] == "simulate"
    assert "synthetic failure for seed" in f.loc[1, "error"]
    assert f.loc[2, "stage"] == "target"
    assert "synthetic target failure for x=2.0" in f.loc[2, "error"]
    assert set(r.aggregates.group_id) == {0, 3}
    # Raw outputs skip exactly the failed replicates.
    out = r.outputs["series"]
    kept = sorted(out[out.group_id == 1]["replicate"].unique())
    assert kept == [x for x in range(reps) if x not in failing]
    assert sorted(out[out.group_id == 0]["replicate"].unique()) == list(range(reps))

    # Failed groups are final for this URI: a rerun submits nothing and still exits 3.
    again = run_study_cli(
        study, scheduler=cluster.address, results=uri, summary=tmp_path / "a.json"
    )
    assert again.returncode == 3
    assert again.summary["tasks_submitted"] == 0


def test_bad_input_exits_2_with_the_field_and_no_traceback(cluster, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nmodel: dask_workspace.examples.synthetic:simulate\nreplicate: 3\n"
        "targets: {m: dask_workspace.examples.synthetic:mean_x}\n"
        "parameters: {grid: {x: {start: 0, stop: 1, num: 0}}}\n"
    )
    res = run_study_cli(bad, scheduler=cluster.address, results=str(tmp_path / "r"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "replicates: required" in res.stderr
    assert "replicate: unknown field; did you mean 'replicates'?" in res.stderr
    assert "parameters.grid.x.num: must be an integer >= 1, got 0" in res.stderr
    assert not (tmp_path / "r").exists()  # nothing written on bad input

    # The other cases run the same click command in-process (faster than a subprocess each).
    good = grid_study(tmp_path, n=2)

    def cli(*args: str):
        result = CliRunner().invoke(main, ["run", str(good), *args])
        assert isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.output

    code, out = cli(
        "--scheduler",
        "not an address",
        "--results",
        str(tmp_path / "r"),
        "--window",
        "0",
        "--mode",
        "fast",
        "--batch-size",
        "-1",
    )
    assert code == 2
    for text in (
        "--window: must be 'auto' or a positive integer",
        "--mode: must be 'window' or 'batch'",
        "--batch-size: must be a positive integer",
        "--scheduler: 'not an address'",
    ):
        assert text in out

    afile = tmp_path / "a-file"
    afile.write_text("")
    code, out = cli("--scheduler", cluster.address, "--results", str(afile))
    assert code == 2 and "is a file; give a directory" in out
    code, out = cli("--scheduler", cluster.address, "--results", "s3://bucket/x")
    assert code == 2 and "unsupported scheme 's3'" in out

    unimportable = write_study(
        tmp_path / "imp.yaml", model="no_such_module_xyz:simulate", parameters={"grid": {"x": [1]}}
    )
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(unimportable),
            "--scheduler",
            cluster.address,
            "--results",
            str(tmp_path / "i"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "model: module 'no_such_module_xyz' not found" in result.output
    assert "beside the study file" in result.output and "npm run images:build" in result.output
    assert "(on worker tcp://" in result.output
