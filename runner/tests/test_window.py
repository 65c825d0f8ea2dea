"""The auto window and AIMD, as pure decisions."""

from __future__ import annotations

from dask_workspace.window import Capacity, WindowController, auto_window

GiB = 2**30
MiB = 2**20


def decide(**kw):
    args = {
        "capacity": Capacity(workers=4, threads=8, memory_limit=16 * GiB),
        "tasks_per_group": 10,
        "replicates": 8,
        "tasks_per_thread": 3,
        "memory_fraction": 0.5,
        "replicate_bytes": 1 * MiB,
        "max_window": 10_000,
    }
    args.update(kw)
    return auto_window(**args)


def test_threads_decide_when_memory_is_plenty():
    d = decide()
    assert d.by_threads == 3  # ceil(3 x 8 / 10)
    assert d.window == 3
    assert d.reason.startswith("threads")


def test_never_fewer_than_two_groups_by_threads():
    d = decide(tasks_per_group=34, capacity=Capacity(workers=2, threads=4, memory_limit=8 * GiB))
    assert d.by_threads == 2


def test_memory_caps_the_window():
    # 8 replicates x 512 MiB = 4 GiB per group; half of 16 GiB is 8 GiB -> 2 groups.
    d = decide(
        replicate_bytes=512 * MiB, capacity=Capacity(workers=4, threads=64, memory_limit=16 * GiB)
    )
    assert d.by_threads == 20
    assert d.by_memory == 2
    assert d.window == 2
    assert d.reason.startswith("memory")
    # Even a group larger than the budget gets one slot (the run can still progress).
    assert decide(replicate_bytes=8 * GiB).window == 1


def test_max_caps_and_unlimited_memory():
    d = decide(capacity=Capacity(workers=100, threads=4000, memory_limit=0), max_window=50)
    assert d.by_memory is None
    assert d.window == 50


def test_controller_uses_measured_sizes_and_follows_the_cluster():
    c = WindowController(
        fixed=None,
        tasks_per_group=10,
        replicates=8,
        tasks_per_thread=3,
        memory_fraction=0.5,
        replicate_memory=256 * MiB,
        safety_factor=2.0,
        max_window=10_000,
    )
    c.update(Capacity(workers=4, threads=64, memory_limit=16 * GiB))
    assert c.limit == 4  # 8 GiB / (8 x 256 MiB)
    c.observe_replicate_bytes(8 * MiB)  # 8 replicates of 1 MiB measured, x2 safety
    assert c.limit == 20  # threads decide now: ceil(3 x 64 / 10)
    c.update(Capacity(workers=1, threads=8, memory_limit=4 * GiB))
    assert c.limit == 3


def test_aimd_halves_on_memory_kills_and_grows_back_one_group_per_window():
    c = WindowController(
        fixed=8,
        tasks_per_group=10,
        replicates=8,
        tasks_per_thread=3,
        memory_fraction=0.5,
        replicate_memory=MiB,
        safety_factor=2.0,
        max_window=10_000,
        decrease_cooldown=10,
    )
    c.update(Capacity(workers=4, threads=8, memory_limit=16 * GiB))
    assert c.limit == 8
    assert c.on_memory_kill(now=100.0)
    assert c.limit == 4
    assert not c.on_memory_kill(now=105.0)  # one decrease per cooldown
    assert c.on_memory_kill(now=111.0)
    assert c.limit == 2
    for _ in range(2):
        c.on_clean_group()
    assert c.limit == 3
    for _ in range(3):
        c.on_clean_group()
    assert c.limit == 4
    for _ in range(100):
        c.on_clean_group()
    assert c.limit == 8  # never above the ceiling
    assert c.decreases == 2
    assert c.increases == 6  # 2 -> 8, one group at a time
