"""The scheduler's pod view for autoscaling (scaling_metrics) and the pod-deletion-cost loop,
against a real ``dask scheduler`` with the route module loaded and real ``dask worker`` pods."""

from __future__ import annotations

import json
import pathlib
import time
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import DaskCluster, free_port, start_cluster

from dask_workspace.deletion_cost import (
    HOLDING_COST,
    PROCESSING_COST,
    Applied,
    DeletionCostLoop,
    deletion_cost,
    updates_due,
)
from dask_workspace.scaling_metrics import (
    WorkerView,
    desired_pods,
    pod_activity,
    pod_of,
    prometheus_text,
)

ROUTES = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "dask_workspace.scaling_metrics",
]


def test_pod_of_uses_processes_per_pod_never_a_guess() -> None:
    assert pod_of("dask-worker-7d9f-12345", processes_per_pod=1) == "dask-worker-7d9f-12345"
    assert pod_of("dask-worker-7d9f-abcde-3", processes_per_pod=4) == "dask-worker-7d9f-abcde"


def test_pod_activity_sums_processes_and_marks_busy_pods() -> None:
    pods = pod_activity(
        [
            WorkerView(name="a-0", nbytes=10, processing=0, keys=1),
            WorkerView(name="a-1", nbytes=0, processing=0, keys=0),
            WorkerView(name="b-0", nbytes=0, processing=0, keys=0),
            WorkerView(name="b-1", nbytes=0, processing=2, keys=0),
            WorkerView(name="c-0", nbytes=0, processing=0, keys=0),
        ],
        processes_per_pod=2,
    )
    assert {n: (p.workers, p.busy) for n, p in pods.items()} == {
        "a": (2, True),
        "b": (2, True),
        "c": (1, False),
    }
    assert desired_pods(desired_workers=5, processes_per_pod=2, busy_pods=1) == 3
    assert desired_pods(desired_workers=0, processes_per_pod=2, busy_pods=2) == 2


def test_deletion_cost_buckets_idle_holding_running() -> None:
    assert deletion_cost({"nbytes": 0, "processing": 0, "keys": 0}) == 0
    assert deletion_cost({"nbytes": 0, "processing": 0, "keys": 3}) == HOLDING_COST
    assert deletion_cost({"nbytes": 2**30, "processing": 0, "keys": 3}) == HOLDING_COST + 10
    assert deletion_cost({"nbytes": 0, "processing": 1, "keys": 0}) == PROCESSING_COST
    # Small changes in held bytes stay in the same bucket: no pod update.
    assert deletion_cost({"nbytes": 300 * 2**20, "keys": 1}) == deletion_cost(
        {"nbytes": 400 * 2**20, "keys": 1}
    )


def test_updates_due_rate_limits_each_pod_and_caps_a_look() -> None:
    applied = {"a": Applied(cost=0, at=100.0), "b": Applied(cost=1000, at=0.0)}
    costs = {"a": 10_000, "b": 0, "c": 1000, "d": 0}
    due = updates_due(costs, applied, now=130.0, min_update_seconds=60, max_patches=10)
    # a changed 30 s after its last patch: not yet. b changed long ago: due. c, d: never patched.
    assert due == {"c": 1000, "b": 0, "d": 0}
    assert list(updates_due(costs, applied, now=200.0, min_update_seconds=60, max_patches=2)) == [
        "a",
        "c",
    ]


def test_prometheus_text_escapes_pod_names() -> None:
    text = prometheus_text(
        {"busyPods": 1, "desiredPods": 2, "pods": {'x"y': {"busy": True, "nbytes": 5}}}
    )
    assert 'dask_workspace_pod_busy{pod="x\\"y"} 1' in text
    assert "dask_workspace_busy_pods 1\n" in text


@pytest.fixture(scope="module")
def metrics_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaskCluster, str]]:
    port = free_port()
    env = {
        "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": repr(ROUTES),
        "DASK_WORKSPACE__AUTOSCALING__PROCESSES_PER_POD": "2",
    }
    c = start_cluster(
        pathlib.Path(tmp_path_factory.mktemp("scaling")),
        pods=(("pod-a", 2, 1), ("pod-b", 2, 1), ("pod-c", 2, 1)),
        scheduler_env=env,
        dashboard_port=port,
    )
    try:
        yield c, f"http://127.0.0.1:{port}"
    finally:
        c.stop()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as res:
        return res.read()


def _wait(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_real_scheduler_reports_busy_pods_and_desired_workers(
    metrics_cluster: tuple[DaskCluster, str],
) -> None:
    cluster, http = metrics_cluster
    pods_url = f"{http}/workspace/pods.json"
    idle = json.loads(_get(pods_url))
    assert idle["processesPerPod"] == 2
    assert sorted(idle["pods"]) == ["pod-a", "pod-b", "pod-c"]
    assert idle["busyPods"] == 0
    assert all(p["workers"] == 2 for p in idle["pods"].values())

    with cluster.client() as client:
        # A result held on one pod's worker: that pod (only) is busy while the future lives.
        workers = client.scheduler_info(n_workers=-1)["workers"]
        on_b = next(a for a, w in workers.items() if w["name"] == "pod-b-1")
        held = client.submit(lambda: b"x" * 2_000_000, workers=[on_b], pure=False)
        held.result()
        view = _wait(lambda: (v := json.loads(_get(pods_url)))["busyPods"] == 1 and v)
        assert view, "pod-b never became busy"
        assert view["pods"]["pod-b"]["busy"] is True
        assert view["pods"]["pod-b"]["nbytes"] >= 2_000_000
        assert view["pods"]["pod-a"]["busy"] is False

        metrics = _get(f"{http}/workspace/metrics").decode()
        assert "dask_workspace_busy_pods 1\n" in metrics
        assert "dask_workspace_memory_restarts 0\n" in metrics
        assert 'dask_workspace_pod_busy{pod="pod-b"} 1' in metrics
        # The metric is on the stock /metrics page of the same scheduler.
        assert "dask_scheduler_desired_workers" in _get(f"{http}/metrics").decode()

        # The deletion-cost loop, with the scheduler's real view and a recording patcher.
        patched: list[tuple[str, int]] = []
        now = [0.0]
        loop = DeletionCostLoop(
            pods_url=pods_url,
            patch=lambda name, cost: patched.append((name, cost)),
            min_update_seconds=60,
            clock=lambda: now[0],
        )
        assert loop.tick() == {"pod-b": HOLDING_COST + 1, "pod-a": 0, "pod-c": 0}
        assert loop.tick() == {}  # nothing changed: no pod update
        del held
        _wait(lambda: json.loads(_get(pods_url))["busyPods"] == 0)
        now[0] = 30.0
        assert loop.tick() == {}  # changed, but pod-b was patched 30 s ago
        now[0] = 61.0
        assert loop.tick() == {"pod-b": 0}
        assert patched[-1] == ("pod-b", 0)
        assert loop.patches == 4


def test_deletion_cost_loop_survives_an_unreachable_scheduler() -> None:
    loop = DeletionCostLoop(
        pods_url=f"http://127.0.0.1:{free_port()}/workspace/pods.json",
        patch=lambda name, cost: None,
    )
    assert loop.tick() == {}
    assert loop.errors == 1
