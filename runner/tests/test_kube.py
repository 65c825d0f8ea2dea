"""OOMKilled detection from Kubernetes pod statuses (kubernetes client models, no cluster)."""

from __future__ import annotations

import datetime as dt

from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
)

from dask_workspace.kube import PodOomWatcher, oom_kill_ids

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def pod(name: str, *, last: str | None = None, now: str | None = None, at: int = 0) -> V1Pod:
    def state(reason: str | None):
        if reason is None:
            return V1ContainerState(running=V1ContainerStateRunning(started_at=T0))
        return V1ContainerState(
            terminated=V1ContainerStateTerminated(
                exit_code=137, reason=reason, finished_at=T0 + dt.timedelta(minutes=at)
            )
        )

    status = V1ContainerStatus(
        name="worker",
        image="dask",
        image_id="x",
        ready=True,
        restart_count=1,
        last_state=state(last) if last else V1ContainerState(),
        state=state(now),
    )
    return V1Pod(metadata=V1ObjectMeta(name=name), status=V1PodStatus(container_statuses=[status]))


def test_oom_kill_ids_reads_last_and_current_state_and_ignores_other_reasons():
    pods = [
        pod("a", last="OOMKilled", at=1),
        pod("b", now="OOMKilled", at=2),
        pod("c", last="Error", at=3),
        pod("d"),
        V1Pod(metadata=V1ObjectMeta(name="pending"), status=V1PodStatus()),
    ]
    kills = oom_kill_ids(pods)
    assert {(p, c) for p, c, _ in kills} == {("a", "worker"), ("b", "worker")}


def test_watcher_counts_only_new_kills_once_each():
    views = [
        [pod("a", last="OOMKilled", at=1), pod("b")],  # before the run: baseline
        [pod("a", last="OOMKilled", at=1), pod("b", now="OOMKilled", at=5)],
        [pod("a", last="OOMKilled", at=1), pod("b", last="OOMKilled", at=5)],  # same kill
        [pod("a", last="OOMKilled", at=9), pod("b", last="OOMKilled", at=5)],  # a again
    ]
    calls = iter(views)
    w = PodOomWatcher(list_pods=lambda: next(calls), interval=3600)
    w.poll()
    assert w.new_kills == 0
    w.poll()
    assert w.new_kills == 1
    w.poll()
    assert w.new_kills == 1
    w.poll()
    assert w.new_kills == 2


def test_watcher_survives_api_errors():
    def broken():
        raise RuntimeError("apiserver unavailable")

    w = PodOomWatcher(list_pods=broken, interval=3600)
    w.poll()
    w.poll()
    assert w.errors == 2 and w.new_kills == 0
