"""Adaptive chunking (dask_workspace.chunking): the pure sizing rule, and real runs on real Dask
clusters -- identical results chunked and unchunked, failures per replicate, a chunk lost with
its worker, a poison chunk, and chunk memory as the workers account for it."""

from __future__ import annotations

import pathlib
from dataclasses import replace

import pandas as pd
import pytest
import yaml
from conftest import (
    assert_same_results,
    result_frames,
    run_cli,
    run_kill_once,
    run_modes,
    run_poison,
    run_study_cli,
    write_study,
)

from dask_workspace.chunking import (
    WHOLE_GROUP,
    ChunkResult,
    DurationEstimate,
    admission_limit,
    chunk_size,
    plan_group,
    probe_window,
    run_chunk,
    split,
)
from dask_workspace.probe import ProbeFeed, ProbeRequest, ProbeSample, first_estimate, probe_count
from dask_workspace.probe_group import rest_ready, should_stage
from dask_workspace.results import read_results
from dask_workspace.tasks import parse_group, simulate_replicate
from dask_workspace.window import Capacity, WindowController

MiB = 2**20
ROOT = pathlib.Path(__file__).resolve().parents[2]


def size(**kw):
    base = {
        "replicate_seconds": 0.01,
        "target_seconds": 0.2,
        "replicates": 100,
        "replicate_bytes": 1024,
        "memory_per_thread": 0,
        "memory_fraction": 0.5,
    }
    return chunk_size(**(base | kw))


# -- the sizing rule -----------------------------------------------------------------------------


def test_unmeasured_and_long_replicates_stay_one_task_each():
    assert size(replicate_seconds=None) == 1
    assert size(replicate_seconds=0.2) == 1  # exactly the target: not packed
    assert size(replicate_seconds=5.0) == 1


def test_short_replicates_fill_the_target_duration_capped_by_r():
    assert size(replicate_seconds=0.01) == 20
    assert size(replicate_seconds=0.03) == 6  # floor: a chunk does not overshoot the target
    assert size(replicate_seconds=0.0, replicates=30) == 30
    assert size(replicate_seconds=0.001, replicates=30) == 30


def test_a_short_group_of_up_to_two_chunk_seconds_is_one_task():
    # sir-grid: 30 replicates of 8 ms = 0.24 s. Split at 0.2 s it would be 2 chunks of 0.12 s
    # plus 3 targets and the outputs task; whole, it is one task (fused with its targets).
    assert WHOLE_GROUP == 2.0
    assert size(replicate_seconds=0.008, replicates=30) == 30
    assert size(replicate_seconds=0.4 / 30, replicates=30) == 30  # exactly 2 x chunk-seconds
    # Above 2 x chunk-seconds: chunks of at most chunk-seconds, as before.
    assert size(replicate_seconds=0.015, replicates=30) == 13
    # A replicate at or above the target stays one task, however few replicates the group has.
    assert size(replicate_seconds=0.2, replicates=2) == 1
    assert size(replicate_seconds=0.19, replicates=1) == 1
    # Memory still caps the whole group.
    assert (
        size(
            replicate_seconds=0.001,
            replicates=30,
            replicate_bytes=50 * MiB,
            memory_per_thread=400 * MiB,
        )
        == 4
    )


def test_chunk_memory_is_its_replicates_outputs_and_is_capped():
    # 0.5 x 400 MiB per thread / 50 MiB per replicate = 4 replicates, whatever the speed.
    assert size(replicate_seconds=0.001, replicate_bytes=50 * MiB, memory_per_thread=400 * MiB) == 4
    # A replicate larger than the budget still runs (alone), as it would unchunked.
    assert (
        size(replicate_seconds=0.001, replicate_bytes=900 * MiB, memory_per_thread=400 * MiB) == 1
    )


def test_split_is_contiguous_balanced_and_complete():
    assert [len(r) for r in split(replicates=10, size=4)] == [4, 3, 3]
    assert split(replicates=6, size=6) == (range(0, 6),)
    assert split(replicates=3, size=1) == (range(0, 1), range(1, 2), range(2, 3))
    for r in range(1, 40):
        for s in range(1, r + 2):
            chunks = split(replicates=r, size=s)
            assert [i for c in chunks for i in c] == list(range(r))
            assert max(map(len, chunks)) <= s
            assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_targets_fold_into_a_chunk_only_for_measured_short_groups_that_fit_one_chunk():
    fused = plan_group(
        size=30, replicates=30, targets=3, outputs=True, measured_short=True, fold=True
    )
    assert fused.fused and fused.tasks == 1
    split3 = plan_group(
        size=10, replicates=30, targets=3, outputs=True, measured_short=True, fold=True
    )
    assert not split3.fused and split3.tasks == 3 + 3 + 1
    # R = 1 with a long (or unmeasured) replicate: exactly today's graph, 1 + T (+ outputs).
    long_ = plan_group(
        size=1, replicates=1, targets=2, outputs=False, measured_short=False, fold=True
    )
    assert not long_.fused and long_.tasks == 3
    nofold = plan_group(
        size=30, replicates=30, targets=3, outputs=False, measured_short=True, fold=False
    )
    assert not nofold.fused and nofold.tasks == 4


def test_probe_admits_only_what_the_threads_need_until_measured():
    # sir-grid on 4 threads: one group is 34 tasks, already 3 per thread -> probe with one group.
    assert probe_window(window=2, threads=4, tasks_per_thread=3, tasks_per_group=34) == 1
    # R = 4 + 2 targets on 4 threads: two groups, whatever the fixed window.
    assert probe_window(window=16, threads=4, tasks_per_thread=3, tasks_per_group=6) == 2
    assert probe_window(window=1, threads=64, tasks_per_thread=3, tasks_per_group=6) == 1


def test_admission_opens_once_measured_with_one_packed_group_per_thread_beside_the_probe():
    common = {"threads": 4, "tasks_per_thread": 3, "tasks_per_group": 34}
    # Unmeasured: the probe window (sir-grid: one group of 34 tasks).
    assert admission_limit(window=12, probing=True, probe_groups_in_flight=0, **common) == 1
    # Measured while the probe group still runs: it plus one packed group per thread.
    assert admission_limit(window=12, probing=False, probe_groups_in_flight=1, **common) == 5
    assert admission_limit(window=3, probing=False, probe_groups_in_flight=1, **common) == 3
    # Probe groups done: the whole window.
    assert admission_limit(window=12, probing=False, probe_groups_in_flight=0, **common) == 12
    assert (
        admission_limit(
            window=12,
            probing=False,
            probe_groups_in_flight=2,
            threads=0,
            tasks_per_thread=3,
            tasks_per_group=6,
        )
        == 3
    )


def test_the_first_estimate_waits_for_one_replicate_per_thread_and_takes_the_mean():
    assert probe_count(replicates=30, threads=4) == 4
    assert probe_count(replicates=2, threads=16) == 2  # never more than R
    assert probe_count(replicates=30, threads=0) == 1  # no thread known yet: one
    samples = [ProbeSample(seconds=0.002, nbytes=4000), ProbeSample(seconds=0.009, nbytes=3000)]
    assert first_estimate(samples, needed=3) is None
    samples.append(ProbeSample(seconds=0.004, nbytes=-1))
    first = first_estimate(samples, needed=3)
    assert first.seconds == pytest.approx(0.005) and first.nbytes == 4000  # the largest result


def test_only_a_first_attempt_larger_than_its_head_is_staged():
    assert should_stage(replicates=30, head=4, attempt=0)
    assert not should_stage(replicates=4, head=4, attempt=0)  # the head is the whole group
    assert not should_stage(replicates=2, head=4, attempt=0)
    assert not should_stage(replicates=30, head=4, attempt=1)  # a retry is planned as usual
    assert not should_stage(replicates=30, head=0, attempt=0)


def test_the_rest_waits_for_the_estimate_a_long_replicate_or_the_whole_head():
    common = {"target_seconds": 0.2}
    assert not rest_ready(estimated=False, longest_sample=None, head_done=False, **common)
    assert not rest_ready(estimated=False, longest_sample=0.01, head_done=False, **common)
    assert rest_ready(estimated=True, longest_sample=0.01, head_done=False, **common)
    # One replicate of at least chunk-seconds: nothing will be packed, go (unchunked) at once.
    assert rest_ready(estimated=False, longest_sample=0.2, head_done=False, **common)
    # The head is done without a measurement (probe events are best effort): go anyway.
    assert rest_ready(estimated=False, longest_sample=None, head_done=True, **common)


def test_no_task_depends_on_its_own_dask_task_group():
    """Dask names task groups by key prefix (``key_split``); a group of simulation tasks that
    depended on itself would stop being root tasks, and the scheduler would stop queuing them
    (worker-saturation): every admitted group would go to a worker at once, and a worker death
    would count against all of them. No graph the runner submits may do that, the staged probe
    group's included."""
    from dask.utils import key_split

    from dask_workspace.chunking import ChunkPlanner, ChunkSettings
    from dask_workspace.probe_group import rest_graph, rest_whole
    from dask_workspace.study import load_study

    study = load_study(ROOT / "examples/studies/sir-grid.yaml")
    head = [f"simulate-{study.token}-g0-r{r}-a0" for r in range(4)]
    graphs = [
        rest_whole(study=study, group_id=0, attempt=0, head_keys=head, start=4)[0],
        rest_graph(
            study=study, group_id=0, attempt=0, head_keys=head, chunks=(range(4, 17), range(17, 30))
        )[0],
    ]
    for mode in ("auto", "off"):
        planner = ChunkPlanner(settings=ChunkSettings(mode=mode, target_seconds=0.2, fold=True))
        plan = plan_group(
            size=10, replicates=30, targets=3, outputs=True, measured_short=True, fold=True
        )
        graphs.append(planner.graph(study=study, group_id=1, attempt=0, plan=plan)[0])
    for graph in graphs:
        for key, task in graph.items():
            for dep in task.dependencies:
                assert key_split(dep) != key_split(key), (key, dep)


def test_the_scheduler_publishes_the_first_replicate_durations_and_sizes(cluster):
    """The run's scheduler plugin pushes the compute time and result size of the first k
    one-replicate tasks of its study (and of no other task) to the runner's client."""
    import threading
    import time

    import numpy as np

    from dask_workspace.diagnostics import RunStatsPlugin
    from dask_workspace.tasks import simulate_key

    token, name = "probe-abc123", "dask-workspace-probe-test"
    with cluster.client() as client:
        wake = threading.Condition()
        feed = ProbeFeed(request=ProbeRequest(topic=name, count=3), wake=wake)
        feed.subscribe(client)
        client.register_plugin(
            RunStatsPlugin(token=token, name=name, probe=feed.request), name=name
        )
        try:
            # Another study's keys and a target key are not replicates of this run.
            others = [
                client.submit(np.ones, 10, key=f"simulate-other-def456-g0-r{r}-a0")
                for r in range(3)
            ]
            futures = [
                client.submit(
                    np.ones, 1000, key=simulate_key(token=token, group_id=0, replicate=r, attempt=0)
                )
                for r in range(5)
            ]
            client.gather(others + futures)
            deadline = time.monotonic() + 20
            samples: list[ProbeSample] = []
            while len(samples) < 3 and time.monotonic() < deadline:
                with wake:
                    if not feed.has_news():
                        wake.wait(0.5)
                samples += feed.drain()
            time.sleep(0.5)  # nothing more may come: only the first k
            samples += feed.drain()
        finally:
            feed.close()
            client.unregister_scheduler_plugin(name)
    assert len(samples) == 3
    assert all(s.seconds >= 0 for s in samples)
    assert all(s.nbytes >= 8000 for s in samples)  # 1000 float64, as the worker reported


def test_estimate_follows_slower_groups_at_once_and_faster_ones_smoothly():
    e = DurationEstimate()
    assert e.value is None
    e.observe(0.01)
    assert e.value == 0.01
    e.observe(0.05)  # a slow region of the parameter space: no stale packing
    assert e.value == 0.05
    e.observe(0.01)
    assert 0.01 < e.value < 0.05  # one fast group does not inflate the chunks at once
    for _ in range(40):
        e.observe(0.01)
    assert e.value == pytest.approx(0.01, rel=1e-3)


def test_fewer_tasks_per_group_widen_the_auto_window_within_the_memory_budget():
    c = WindowController(
        fixed=None,
        tasks_per_group=34,
        replicates=30,
        tasks_per_thread=3,
        memory_fraction=0.5,
        replicate_memory=1 * MiB,
        safety_factor=1.0,
        max_window=10_000,
    )
    c.update(Capacity(workers=4, threads=4, memory_limit=4 * 1024 * MiB))
    assert c.limit == 2  # max(2, ceil(12 / 34))
    c.set_tasks_per_group(1)  # fused groups
    assert c.limit == 12
    c.observe_replicate_bytes(30 * 20 * MiB)  # 20 MiB replicates: 600 MiB per group
    assert c.limit == 3  # floor(0.5 x 4 GiB / 600 MiB): memory still bounds the groups
    assert c.memory_per_thread == 1024 * MiB


def test_the_auto_window_follows_the_mean_tasks_of_the_groups_in_flight():
    """One group split into chunks among fused ones (its estimate crossed WHOLE_GROUP) moves
    the auto window a little; it used to take the window to that one group's shape."""
    from dask_workspace.chunking import ChunkPlanner, ChunkSettings

    planner = ChunkPlanner(settings=ChunkSettings(mode="auto", target_seconds=0.2, fold=True))
    fused = plan_group(
        size=30, replicates=30, targets=3, outputs=True, measured_short=True, fold=True
    )
    split3 = plan_group(
        size=13, replicates=30, targets=3, outputs=True, measured_short=True, fold=True
    )
    assert fused.tasks == 1 and split3.tasks == 7
    for gid in range(11):
        planner.note_group(gid, fused)
    planner.note_group(11, split3)
    planner.note_group(99, replace(fused, probe=True))  # planned unmeasured: not counted
    mean = planner.tasks_per_group(range(12))
    assert mean == pytest.approx(18 / 12)
    c = WindowController(
        fixed=None,
        tasks_per_group=34,
        replicates=30,
        tasks_per_thread=3,
        memory_fraction=0.5,
        replicate_memory=1024,
        safety_factor=1.0,
        max_window=10_000,
    )
    c.update(Capacity(workers=4, threads=4, memory_limit=4 * 1024 * MiB))
    c.set_tasks_per_group(mean)
    assert c.limit == 8  # ceil(3 x 4 / 1.5), not ceil(12 / 7) = 2
    # Finished groups leave the mean.
    assert planner.tasks_per_group([11]) == 7
    assert planner.tasks_per_group([]) is None


def test_chunk_keys_belong_to_their_group():
    from dask_workspace.chunking import chunk_key, fused_key

    k = chunk_key(token="syn-abc", group_id=7, replicates=range(4, 8), attempt=1)
    assert k == "simulate-syn-abc-g7-r4to7-a1"
    assert parse_group(k, token="syn-abc") == 7
    f = fused_key(token="syn-abc", group_id=12, replicates=30, attempt=0)
    assert parse_group(f, token="syn-abc") == 12
    one = chunk_key(token="syn-abc", group_id=3, replicates=range(2, 3), attempt=0)
    assert one == "simulate-syn-abc-g3-r2-a0"  # the unchunked key


def test_a_chunk_runs_each_replicate_exactly_as_a_single_task():
    params = {"x": 1.5, "points": 3, "fail_seed_mod": 4}
    seeds = [8, 9, 12, 13]
    chunk = run_chunk("dask_workspace.examples.synthetic:simulate", params, seeds)
    singles = [
        simulate_replicate("dask_workspace.examples.synthetic:simulate", params, s) for s in seeds
    ]
    assert [type(r) for r in chunk.results] == [type(r) for r in singles]
    assert chunk.results[0] == singles[0]  # TaskError for seed 8 (8 % 4 == 0), same text
    assert chunk.results[0].task == "seed 8"
    assert chunk.results[1]["seed"] == 9 and chunk.seconds >= 0


# -- real runs -----------------------------------------------------------------------------------


def test_sir_grid_chunked_and_unchunked_give_identical_values(cluster, tmp_path):
    doc = yaml.safe_load((ROOT / "examples/studies/sir-grid.yaml").read_text())
    doc["parameters"]["grid"]["beta"]["num"] = 5  # 10 groups x 12 replicates keeps it short
    doc["replicates"] = 12
    study = tmp_path / "sir.yaml"
    study.write_text(yaml.safe_dump(doc))
    runs = {
        "off": ["--chunking", "off"],
        "fused": ["--chunking", "auto", "--chunk-seconds", "5"],
        # Tiny target: chunks of a few replicates with separate target tasks.
        "split": ["--chunking", "auto", "--chunk-seconds", "0.004"],
    }
    summaries = {}
    for name, args in runs.items():
        res = run_study_cli(
            study,
            scheduler=cluster.address,
            results=str(tmp_path / name),
            summary=tmp_path / f"{name}.json",
            args=[*args, "--window", "2"],
        )
        assert res.returncode == 0, res.stderr
        summaries[name] = res.summary
    assert_same_results(str(tmp_path / "off"), str(tmp_path / "fused"))
    assert_same_results(str(tmp_path / "off"), str(tmp_path / "split"))
    off, fused = summaries["off"], summaries["fused"]
    assert off["chunk_sizes"] == {"1": 10 * 12} and off["tasks_submitted"] == 10 * (12 + 3 + 1)
    assert fused["chunk_size_max"] == 12
    # The first estimate came from the first replicates, not from a whole group's targets.
    assert fused["chunk_first_measured_by"] == "replicates"
    assert off["chunk_first_measured_by"] is None
    # tasks_submitted counts Dask tasks: the probe group is staged (dask_workspace.probe_group):
    # its first 4 replicates (one per worker thread) one task each, then its other 8 replicates
    # in one task and its targets and outputs in one more; every other group is one fused task.
    assert fused["groups_staged"] == 1 and off["groups_staged"] == 0
    assert fused["chunk_sizes"] == {"1": 4, "8": 1, "12": 9}
    assert fused["groups_fused"] == 9
    assert fused["tasks_submitted"] == 4 + 2 + 9  # head, rest chunk + targets/outputs, fused
    assert fused["peak_scheduler_tasks"] < off["peak_scheduler_tasks"] * 2


def test_synthetic_chunks_with_separate_targets_are_bit_identical(cluster, tmp_path):
    study = write_study(
        tmp_path / "syn.yaml",
        parameters={"grid": {"x": list(range(8)), "median_seconds": 0.004, "sigma": 1.0}},
        replicates=9,
        outputs=["series"],
    )
    common = ["--window", "3"]
    off = run_study_cli(
        study,
        scheduler=cluster.address,
        results=str(tmp_path / "off"),
        summary=tmp_path / "off.json",
        args=[*common, "--chunking", "off"],
    )
    auto = run_study_cli(
        study,
        scheduler=cluster.address,
        results=str(tmp_path / "auto"),
        summary=tmp_path / "auto.json",
        # 0.05 s: chunks of a few replicates even when the probe's first four replicates
        # (seeds of group 0, sigma 1) average well above the 4 ms median.
        args=[*common, "--chunk-seconds", "0.05"],
        env={"DASK_WORKSPACE__RUNNER__CHUNK_FOLD_TARGETS": "false"},
    )
    assert off.returncode == 0 and auto.returncode == 0, auto.stderr
    assert_same_results(str(tmp_path / "off"), str(tmp_path / "auto"))
    s = auto.summary
    assert s["groups_fused"] == 0
    assert s["chunk_size_max"] > 1  # some groups really ran as chunks of several replicates
    assert s["tasks_submitted"] < off.summary["tasks_submitted"]
    assert s["replicate_seconds_estimate"] > 0


def test_a_replicate_raising_inside_a_chunk_is_reported_as_that_replicate(cluster, tmp_path):
    seed, mod, reps = 7, 3, 6
    sets = [{"x": float(i), "fail_seed_mod": mod if i >= 2 else 0} for i in range(5)]
    study = write_study(
        tmp_path / "fail.yaml",
        parameters={"sets": sets},
        replicates=reps,
        seed=seed,
        outputs=["series"],
    )
    results = run_modes(
        study,
        scheduler=cluster.address,
        tmp_path=tmp_path,
        modes={
            "off": ["--chunking", "off", "--window", "1"],
            "auto": ["--chunk-seconds", "10", "--window", "1"],
        },
        expect=3,
    )
    (off, _), (auto, s) = results["off"], results["auto"]
    assert s["groups_fused"] >= 3  # the failing groups ran inside fused chunks
    assert off.failed == auto.failed == {2, 3, 4}
    cols = ["group_id", "stage", "task", "error"]
    fa = auto.failures.sort_values("group_id")[cols].reset_index(drop=True)
    fo = off.failures.sort_values("group_id")[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(fa, fo)
    assert (fa["stage"] == "simulate").all()
    assert fa["task"].str.match(r"replicate \d+ \(seed \d+\)").all()
    assert fa["error"].str.contains("synthetic failure for seed").all()
    # Kept outputs skip exactly the failing replicates, as unchunked.
    _, out_a = result_frames(str(tmp_path / "auto"))
    _, out_o = result_frames(str(tmp_path / "off"))
    pd.testing.assert_frame_equal(out_a["series"], out_o["series"])


def _run_pair(cluster, study, tmp_path, *, auto_args, common=("--window", "3"), code=0, env=None):
    out = {}
    for name, args in {"off": ["--chunking", "off"], "auto": list(auto_args)}.items():
        res = run_study_cli(
            study,
            scheduler=cluster.address,
            results=str(tmp_path / name),
            summary=tmp_path / f"{name}.json",
            args=[*common, *args],
            env=env,
        )
        assert res.returncode == code, res.stderr
        out[name] = res.summary
    assert_same_results(str(tmp_path / "off"), str(tmp_path / "auto"))
    return out["off"], out["auto"]


def test_a_staged_probe_group_of_long_replicates_stays_one_task_per_replicate(cluster, tmp_path):
    """Replicates of 50 ms against chunk-seconds 0.02: the first head replicate to report is
    long, so the rest of the probe group goes at once, one task per replicate, exactly the
    unchunked graph (same task count, same values)."""
    study = write_study(
        tmp_path / "long.yaml",
        parameters={"grid": {"x": list(range(4)), "median_seconds": 0.05, "sigma": 0.0}},
        replicates=7,
        outputs=["series"],
    )
    off, auto = _run_pair(cluster, study, tmp_path, auto_args=["--chunk-seconds", "0.02"])
    assert auto["groups_staged"] == 1 and auto["groups_fused"] == 0
    assert auto["chunk_sizes"] == {"1": 4 * 7}
    assert auto["tasks_submitted"] == off["tasks_submitted"] == 4 * (7 + 2 + 1)


def test_a_staged_probe_group_in_chunks_with_separate_targets_is_bit_identical(cluster, tmp_path):
    """Short replicates that do not fit one task: the rest of the probe group runs in chunks,
    and its targets and outputs read the head's replicates and the chunks' in order."""
    study = write_study(
        tmp_path / "chunks.yaml",
        parameters={"grid": {"x": list(range(5)), "median_seconds": 0.003, "sigma": 0.5}},
        replicates=16,
        outputs=["series"],
    )
    off, auto = _run_pair(
        cluster,
        study,
        tmp_path,
        auto_args=["--chunk-seconds", "0.02"],
        env={"DASK_WORKSPACE__RUNNER__CHUNK_FOLD_TARGETS": "false"},
    )
    assert auto["groups_staged"] == 1 and auto["groups_fused"] == 0
    assert auto["chunk_size_max"] > 1
    assert sum(int(k) * v for k, v in auto["chunk_sizes"].items()) == 5 * 16
    assert auto["tasks_submitted"] < off["tasks_submitted"]


def test_a_replicate_raising_in_a_staged_head_is_reported_as_that_replicate(cluster, tmp_path):
    # fail_seed_mod 1: every replicate of group 0 raises, the head's first one is reported.
    sets = [
        {"x": 0.0, "fail_seed_mod": 1},
        {"x": 1.0, "fail_seed_mod": 0},
        {"x": 2.0, "fail_seed_mod": 0},
    ]
    study = write_study(
        tmp_path / "headfail.yaml", parameters={"sets": sets}, replicates=9, outputs=["series"]
    )
    _, auto = _run_pair(
        cluster,
        study,
        tmp_path,
        auto_args=["--chunk-seconds", "10"],
        common=("--window", "1"),
        code=3,
    )
    assert auto["groups_staged"] == 1
    off_r, auto_r = read_results(str(tmp_path / "off")), read_results(str(tmp_path / "auto"))
    assert off_r.failed == auto_r.failed == {0}
    cols = ["group_id", "stage", "task", "error"]
    pd.testing.assert_frame_equal(
        auto_r.failures[cols].reset_index(drop=True), off_r.failures[cols].reset_index(drop=True)
    )
    assert auto_r.failures["task"].iloc[0].startswith("replicate 0 (seed ")


def test_bad_chunk_settings_exit_2_naming_the_flag(tmp_path):
    study = write_study(tmp_path / "s.yaml", parameters={"sets": [{"x": 1.0}]})
    res = run_cli(
        [
            "run",
            str(study),
            "--scheduler",
            "tcp://127.0.0.1:1",
            "--results",
            str(tmp_path / "r"),
            "--chunking",
            "sometimes",
            "--chunk-seconds",
            "0",
        ]
    )
    assert res.returncode == 2
    assert "--chunking: must be 'auto' or 'off', got 'sometimes'" in res.stderr
    assert "--chunk-seconds: must be a positive duration" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


# -- worker deaths -------------------------------------------------------------------------------


def test_a_chunk_lost_with_its_worker_is_retried_and_nothing_is_lost(
    fragile_cluster, model_dir, tmp_path
):
    res, markers = run_kill_once(
        fragile_cluster, model_dir, tmp_path, name="once", groups=4, kill=2, replicates=5, seed=3
    )
    s = res.summary
    assert (markers / "g2").exists()  # the kill happened ...
    assert s["worker_deaths"] == 1  # ... once: Dask ran the chunk again on the restarted worker
    assert s["groups_retried"] == 0  # within allowed-failures: no new keys needed
    assert s["groups_fused"] >= 3  # group 2 was a chunk (the whole group in one task)
    r = read_results(str(tmp_path / "res"))
    assert r.persisted == {0, 1, 2, 3}
    mean_x = r.aggregates
    assert (mean_x["value"] == mean_x["x"]).all()


def test_a_staged_head_replicate_lost_with_its_worker_is_recomputed(
    fragile_cluster, model_dir, tmp_path
):
    """The probe group's head (one replicate per worker thread: 2 here) loses a replicate with
    its worker: Dask computes it again (the runner holds its future) and the rest of the group
    uses it; nothing is retried or lost."""
    res, markers = run_kill_once(
        fragile_cluster, model_dir, tmp_path, name="head", groups=3, kill=0, replicates=6, seed=5
    )
    s = res.summary
    assert (markers / "g0").exists()
    assert s["groups_staged"] == 1 and s["worker_deaths"] == 1 and s["groups_retried"] == 0
    r = read_results(str(tmp_path / "res"))
    assert r.persisted == {0, 1, 2}
    assert (r.aggregates["value"] == r.aggregates["x"]).all()


def test_a_poison_staged_head_fails_its_group_after_one_retry(fragile_cluster, tmp_path):
    """A probe group whose head replicate kills every worker it runs on: the head ends as
    KilledWorker, the rest (which depends on it) errs with it, and the group is retried with new
    keys (planned as usual, not staged again) and then recorded as failed."""
    res, uri = run_poison(
        fragile_cluster,
        tmp_path,
        kills=[True, False, False],
        replicates=4,
        args=["--window", "1", "--chunk-seconds", "10"],
    )
    s = res.summary
    # Group 0's head never reported a duration, so the next group is still a probe: staged too
    # (its head is what measures the replicates).
    assert s["groups_staged"] == 2 and s["chunk_first_measured_by"] == "replicates"
    assert s["groups_retried"] == 1 and s["groups_failed"] == 1 and s["groups_persisted"] == 2
    r = read_results(uri)
    assert r.failed == {0}
    failure = r.failures.set_index("group_id").loc[0]
    assert "KilledWorker" in failure["error"]
    assert failure["task"].endswith("-a1")  # the retry ran under new keys


def test_a_poison_chunk_counts_like_a_single_task_then_fails_its_group(fragile_cluster, tmp_path):
    study = write_study(
        tmp_path / "poison.yaml",
        parameters={
            "sets": [
                {"x": 0.0, "kill_worker": False},
                {"x": 1.0, "kill_worker": False},
                {"x": 2.0, "kill_worker": True},
                {"x": 3.0, "kill_worker": False},
            ]
        },
        replicates=4,
    )
    uri = str(tmp_path / "res")
    res = run_study_cli(
        study,
        scheduler=fragile_cluster.address,
        results=uri,
        summary=tmp_path / "s.json",
        args=["--window", "1", "--chunk-seconds", "10"],
        timeout=240,
    )
    assert res.returncode == 3, res.stderr
    s = res.summary
    assert s["groups_retried"] == 1 and s["groups_failed"] == 1 and s["groups_persisted"] == 3
    # Two attempts x (allowed-failures + 1) deaths: the chunk of 4 replicates is one task to
    # allowed-failures, not four.
    assert s["worker_deaths"] == 4
    r = read_results(uri)
    assert r.failed == {2}
    failure = r.failures.set_index("group_id").loc[2]
    assert failure["stage"] == "simulate"
    assert "KilledWorker" in failure["error"]
    assert "-g2-r0to3-fused-a1" in failure["task"]  # the retry ran the chunk under new keys


def test_workers_account_a_chunk_by_its_replicates_outputs(cluster):
    params = {"x": 1.0, "points": 100_000}  # 800 kB series per replicate
    with cluster.client() as client:
        fut = client.submit(
            run_chunk,
            "dask_workspace.examples.synthetic:simulate",
            params,
            [1, 2, 3, 4],
            pure=False,
        )
        chunk = fut.result()
        assert isinstance(chunk, ChunkResult) and len(chunk.results) == 4

        def nbytes(dask_scheduler, key):
            return dask_scheduler.tasks[key].nbytes

        held = client.run_on_scheduler(nbytes, key=fut.key)
        del fut
    assert held >= 4 * 800_000  # the scheduler and the window see the outputs, not a wrapper
