"""Several short groups in one task (dask_workspace.packing): the pure sizing rule, and real runs
on real Dask clusters -- identical values packed and unpacked, a failing replicate recorded for
its group only, a pack lost with its worker, and a poison group isolated on its retry."""

from __future__ import annotations

import pathlib
import re

import yaml
from conftest import (
    assert_same_results,
    run_kill_once,
    run_modes,
    run_poison,
    run_study_cli,
    write_study,
)

from dask_workspace.packing import MAX_PACK, leading_run, pack_key, pack_size
from dask_workspace.results import read_results
from dask_workspace.tasks import parse_group, parse_groups
from dask_workspace.window import Capacity, WindowController, auto_window

ROOT = pathlib.Path(__file__).resolve().parents[2]


def size(**kw):
    args = {
        "group_seconds": 0.02,
        "target_seconds": 0.2,
        "window": 1000,
        "room": 1000,
        "threads": 4,
        "pending": 1000,
        "consecutive": 1000,
    }
    args.update(kw)
    return pack_size(**args)


# -- the rule -------------------------------------------------------------------------------------


def test_unmeasured_or_long_groups_are_never_packed():
    assert size(group_seconds=None) == 1
    assert size(group_seconds=0.11) == 1  # 2 x 0.11 > 0.2: a pack of 2 would overshoot
    assert size(group_seconds=0.1) == 2


def test_a_pack_fills_the_target_duration():
    assert size(group_seconds=0.02) == 10
    assert size(group_seconds=0.05) == 4
    assert size(group_seconds=1e-7) == MAX_PACK


def test_the_window_keeps_two_tasks_per_thread_and_the_pack_fits_the_room():
    # A fixed window of 16 groups on 4 threads: packs of 2 leave 8 tasks, two per thread.
    assert size(window=16) == 2
    assert size(window=12) == 1
    assert size(window=64, threads=2) == 10
    assert size(room=3) == 3
    assert size(room=1) == 1


def test_the_last_packs_shrink_so_the_threads_finish_together():
    # Guided: at most ceil(pending / (2 x threads)) groups per pack.
    assert size(pending=1000) == 10
    assert size(pending=39) == 5
    assert size(pending=16) == 2
    assert size(pending=8) == 1
    assert size(pending=1) == 1


def test_a_pack_takes_only_consecutive_group_ids():
    assert size(consecutive=3) == 3
    assert leading_run([4, 5, 6, 9, 10], 64) == 3
    assert leading_run([4, 6], 64) == 1
    assert leading_run([], 64) == 0
    assert leading_run(list(range(100)), 64) == 64


def test_a_pack_key_names_all_its_groups():
    key = pack_key(token="sir-abc", first=4, last=7, attempt=0)
    assert parse_groups(key, token="sir-abc") == range(4, 8)
    assert parse_group(key, token="sir-abc") == 4
    assert parse_groups(key, token="other") is None
    assert parse_groups("simulate-sir-abc-g3-r0to9-fused-a1", token="sir-abc") == range(3, 4)


def test_packed_groups_widen_the_auto_window_within_its_memory_budget():
    cap = Capacity(workers=2, threads=4, memory_limit=4 * 2**30)
    kw = {
        "capacity": cap,
        "replicates": 30,
        "tasks_per_thread": 3,
        "memory_fraction": 0.5,
        "max_window": 10_000,
    }
    one = auto_window(tasks_per_group=1, replicate_bytes=1024, **kw)
    packed = auto_window(tasks_per_group=1 / 3, replicate_bytes=1024, **kw)
    assert (one.window, packed.window) == (12, 36)
    # Memory still bounds the groups: 2 GiB / (30 x 16 MiB) = 4 groups, packed or not.
    tight = auto_window(tasks_per_group=1 / 3, replicate_bytes=16 * 2**20, **kw)
    assert tight.window == tight.by_memory == 4


def controller(fixed=None):
    """A window on 2 workers x 4 threads with 4 GiB, R = 30 replicates of 1 KiB, at most 500."""
    c = WindowController(
        fixed=fixed,
        tasks_per_group=1,
        replicates=30,
        tasks_per_thread=3,
        memory_fraction=0.5,
        replicate_memory=1024,
        safety_factor=1.0,
        max_window=500,
    )
    c.update(Capacity(workers=2, threads=4, memory_limit=4 * 2**30))
    return c


def test_the_window_offers_packs_its_memory_budget_a_fixed_size_or_an_aimd_limit():
    auto = controller()
    assert auto.limit == 12 and auto.group_capacity == 500  # max_window below the memory cap
    assert controller(fixed=16).group_capacity == 16
    auto.limit = 6  # AIMD halved it after memory trouble
    assert auto.group_capacity == 6


def test_the_summary_window_is_the_widest_the_packs_made_it():
    c = controller()
    assert c.limit == c.peak_limit == 12
    c.set_tasks_per_group(1 / 3)  # packs of 3 in flight: the window admits 3x the groups
    assert c.limit == c.peak_limit == 36
    c.set_tasks_per_group(1)  # the last groups go one task each: the window narrows again
    assert (c.limit, c.peak_limit) == (12, 36)


# -- real runs ------------------------------------------------------------------------------------


def test_sir_grid_packed_unpacked_and_unchunked_give_identical_values(cluster, tmp_path):
    doc = yaml.safe_load((ROOT / "examples/studies/sir-grid.yaml").read_text())
    study = tmp_path / "sir.yaml"
    study.write_text(yaml.safe_dump(doc))
    runs = {
        "off": (["--chunking", "off", "--window", "4"], None),
        "packed": (["--chunk-seconds", "2"], None),
        "unpacked": (
            ["--chunk-seconds", "2"],
            {"DASK_WORKSPACE__RUNNER__CHUNK_PACK_GROUPS": "false"},
        ),
    }
    s = {}
    for name, (args, env) in runs.items():
        res = run_study_cli(
            study,
            scheduler=cluster.address,
            results=str(tmp_path / name),
            summary=tmp_path / f"{name}.json",
            args=args,
            env=env,
        )
        assert res.returncode == 0, res.stderr
        s[name] = res.summary
    assert_same_results(str(tmp_path / "off"), str(tmp_path / "packed"))
    assert_same_results(str(tmp_path / "off"), str(tmp_path / "unpacked"))
    groups = s["packed"]["groups_total"]
    assert groups == 40
    packed, unpacked = s["packed"], s["unpacked"]
    assert unpacked["groups_packed"] == 0 and unpacked["pack_sizes"] == {}
    assert packed["groups_packed"] >= 10
    assert sum(int(k) * n for k, n in packed["pack_sizes"].items()) == packed["groups_packed"]
    # One task per pack: fewer tasks than groups, and fewer than without packs.
    assert packed["tasks_submitted"] < groups < unpacked["tasks_submitted"]
    # The scheduler saw every group of a pack as held (peak groups counts them).
    assert packed["peak_cluster_groups"] >= max(int(k) for k in packed["pack_sizes"])


def test_a_replicate_raising_inside_a_pack_fails_its_group_only(cluster, tmp_path):
    sets = [{"x": float(i), "fail_seed_mod": 1 if i == 5 else 0} for i in range(24)]
    study = write_study(
        tmp_path / "fail.yaml", parameters={"sets": sets}, replicates=6, outputs=["series"]
    )
    out = run_modes(
        study,
        scheduler=cluster.address,
        tmp_path=tmp_path,
        modes={
            "off": ["--chunking", "off", "--window", "40"],
            "packed": ["--chunk-seconds", "5", "--window", "40"],
        },
        expect=3,
    )
    (off, _), (packed, s) = out["off"], out["packed"]
    assert s["groups_packed"] >= 8
    assert off.failed == packed.failed == {5}
    assert packed.persisted == set(range(24)) - {5}
    cols = ["group_id", "stage", "task", "error"]
    assert packed.failures[cols].equals(off.failures[cols])
    assert_same_results(str(tmp_path / "off"), str(tmp_path / "packed"))


def test_a_pack_lost_with_its_worker_is_retried_and_nothing_is_lost(
    fragile_cluster, model_dir, tmp_path
):
    """2 worker threads, a window of 8: after the staged probe group 0, groups 1-2 and 3-4 go
    as packs of 2 (window 8 / (2 x 2 threads)); group 3's first replicate kills its worker once.
    Dask runs the pack again (within allowed-failures): nothing is retried or lost."""
    res, markers = run_kill_once(
        fragile_cluster,
        model_dir,
        tmp_path,
        name="packonce",
        groups=8,
        kill=3,
        replicates=4,
        seed=11,
        window=8,
    )
    s = res.summary
    assert (markers / "g3").exists()
    assert s["pack_sizes"] == {"2": 2} and s["groups_packed"] == 4
    assert s["worker_deaths"] == 1 and s["groups_retried"] == 0
    r = read_results(str(tmp_path / "res"))
    assert r.persisted == set(range(8))
    assert (r.aggregates["value"] == r.aggregates["x"]).all()


def test_a_poison_group_in_a_pack_is_isolated_on_its_retry(fragile_cluster, tmp_path):
    """Group 3 kills every worker it runs on. Its pack (groups 3 and 4) ends as KilledWorker;
    both groups are retried on their own (never packed again): group 4 is persisted, group 3
    kills its workers again and is recorded as failed, alone."""
    res, uri = run_poison(
        fragile_cluster,
        tmp_path,
        kills=[i == 3 for i in range(8)],
        replicates=4,
        args=["--window", "8", "--chunk-seconds", "10"],
    )
    s = res.summary
    assert s["pack_sizes"] == {"2": 2}
    assert s["groups_failed"] == 1 and s["groups_persisted"] == 7
    # Both groups of the pack were retried on their own. (A pack that finished on a worker that
    # died before its result was gathered is computed again by Dask, or retried by the runner.)
    lost = {int(g) for g in re.findall(r"group (\d+) lost to the cluster", res.stderr)}
    assert {3, 4} <= lost and s["groups_retried"] == len(lost)
    # (allowed-failures + 1) deaths for the pack, as for one task, then as many for group 3.
    assert s["worker_deaths"] == 4
    r = read_results(uri)
    assert r.failed == {3}
    failure = r.failures.set_index("group_id").loc[3]
    assert "KilledWorker" in failure["error"]
    assert "-g3-r0to3-fused-a1" in failure["task"]  # the retry ran group 3 alone
