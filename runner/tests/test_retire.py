"""``python -m dask_workspace retire``: one pod's workers leave with their data moved."""

from __future__ import annotations

import time

import numpy as np
from conftest import free_port, run_cli, start_cluster

from dask_workspace.retire import pod_worker_names


def test_pod_worker_names_match_the_pod_and_only_it():
    names = ["podA", "podA-0", "podA-1", "podA-10", "podAB-0", "podA-x", "xpodA-0", 3]
    assert pod_worker_names(names, pod="podA") == ["podA", "podA-0", "podA-1", "podA-10"]
    assert pod_worker_names(names, pod="pod") == []
    assert pod_worker_names(["w.x-0"], pod="w.x") == ["w.x-0"]
    assert pod_worker_names(["wyx-0"], pod="w.x") == []  # the pod name is literal, not a regex


def test_retire_moves_data_off_one_pod_and_closes_it(tmp_path):
    cluster = start_cluster(tmp_path / "cluster", pods=(("podA", 2, 1), ("podB", 1, 1)))
    try:
        with cluster.client() as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            names = {w["name"]: addr for addr, w in workers.items()}
            assert set(names) == {"podA-0", "podA-1", "podB"}
            on_a = [names["podA-0"], names["podA-1"]]
            futures = [
                client.submit(np.full, 1000, i, key=f"data-{i}", workers=on_a, pure=False)
                for i in range(6)
            ]
            client.wait_for_workers(3)
            client.gather(futures)
            assert set().union(*client.who_has(futures).values()) <= set(on_a)

            res = run_cli(
                [
                    "retire",
                    "--scheduler",
                    cluster.address,
                    "--name-prefix",
                    "podA",
                    "--timeout",
                    "60",
                ]
            )
            assert res.returncode == 0, res.stderr
            assert "retired 2 of 2 workers of pod podA" in res.stderr

            left = {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
            assert left == {"podB"}
            who_has = client.who_has(futures)
            assert all(holders == (names["podB"],) for holders in who_has.values()), who_has
            assert [int(a[0]) for a in client.gather(futures)] == list(range(6))
        # The pod's process tree ends by itself (the nannies were closed, not restarted).
        cluster.pods["podA"].wait(timeout=60)
    finally:
        cluster.stop()


def test_retire_always_exits_0_and_is_bounded():
    started = time.monotonic()
    dead = run_cli(
        [
            "retire",
            "--scheduler",
            f"tcp://127.0.0.1:{free_port()}",
            "--name-prefix",
            "pod",
            "--timeout",
            "3",
        ],
        timeout=60,
    )
    assert dead.returncode == 0
    assert "could not retire the workers of pod pod" in dead.stderr
    assert time.monotonic() - started < 30
    bad = run_cli(["retire", "--timeout", "soon"], timeout=60)
    assert bad.returncode == 0
    assert "needs --scheduler and --name-prefix" in bad.stderr
