"""The scheduler's view of its worker *pods*, for autoscaling (a scheduler HTTP route module).

Dask knows worker processes; Kubernetes scales pods of ``nprocs`` processes each. This module is
loaded by the scheduler as one of its HTTP route modules (``distributed.scheduler.http.routes``,
rendered by ``infra/dask.ts`` in autoscaling mode ``dask``) and answers two routes on the
scheduler's HTTP (dashboard) port:

``/workspace/metrics`` (Prometheus text)
    ``dask_workspace_busy_pods``: pods whose workers hold results or run tasks. KEDA's second
    trigger (target 1 per pod) keeps the worker Deployment from ever shrinking below this
    number, so a running study never loses a pod it still needs. Also ``dask_workspace_pods``,
    ``dask_workspace_desired_pods`` (⌈``adaptive_target()`` ÷ nprocs⌉, at least the busy pods),
    ``dask_workspace_memory_restarts`` (nanny restarts for memory, from the scheduler's
    ``worker-restart-memory`` events) and per-pod ``dask_workspace_pod_busy`` /
    ``dask_workspace_pod_bytes``.
``/workspace/pods.json``
    the same per pod, for ``dask_workspace.deletion_cost`` and the local emulation.

A worker is *busy* when it runs or is assigned tasks (``processing``) or holds task results
(``has_what``): the scheduler releases a result as soon as no client future and no pending task
needs it, so whatever a worker still holds is needed by the study.

Pods are found from worker names: ``dask worker --name POD --nworkers N`` names its processes
``POD-0`` ... ``POD-(N-1)`` when N > 1 and ``POD`` when N = 1. N comes from the Dask config key
``workspace.autoscaling.processes-per-pod`` (rendered beside the route), so names are never
guessed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import dask.config
from distributed.http.utils import RequestHandler

logger = logging.getLogger(__name__)

PROCESSES_PER_POD_KEY = "workspace.autoscaling.processes-per-pod"


@dataclass(frozen=True)
class WorkerView:
    """What the scheduler knows about one worker process, as far as scaling cares."""

    name: str
    nbytes: int
    processing: int
    keys: int


@dataclass
class PodActivity:
    """One pod's workers, summed."""

    workers: int = 0
    nbytes: int = 0
    processing: int = 0
    keys: int = 0

    @property
    def busy(self) -> bool:
        return self.processing > 0 or self.keys > 0


def pod_of(worker_name: str, *, processes_per_pod: int) -> str:
    """The pod a worker process belongs to (its ``--name``)."""
    if processes_per_pod > 1:
        return re.sub(r"-\d+$", "", worker_name)
    return worker_name


def pod_activity(
    workers: Iterable[WorkerView], *, processes_per_pod: int
) -> dict[str, PodActivity]:
    """Groups worker processes into pods. Pure."""
    pods: dict[str, PodActivity] = {}
    for w in workers:
        pod = pods.setdefault(pod_of(w.name, processes_per_pod=processes_per_pod), PodActivity())
        pod.workers += 1
        pod.nbytes += w.nbytes
        pod.processing += w.processing
        pod.keys += w.keys
    return pods


def desired_pods(*, desired_workers: int, processes_per_pod: int, busy_pods: int) -> int:
    """⌈desired processes ÷ processes per pod⌉, at least the busy pods."""
    return max(math.ceil(max(0, desired_workers) / processes_per_pod), busy_pods)


def processes_per_pod() -> int:
    value = dask.config.get(PROCESSES_PER_POD_KEY, default=1)
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        logger.warning("%s is %r, not a whole number ≥ 1; using 1", PROCESSES_PER_POD_KEY, value)
        return 1
    return n


def scheduler_view(scheduler: Any) -> dict[str, Any]:
    """The scheduler's pods, desired workers and busy count (runs on the scheduler's event loop)."""
    nprocs = processes_per_pod()
    views = [
        WorkerView(
            name=str(ws.name),
            nbytes=int(ws.nbytes),
            processing=len(ws.processing),
            keys=len(ws.has_what),
        )
        for ws in scheduler.workers.values()
    ]
    pods = pod_activity(views, processes_per_pod=nprocs)
    busy = sum(1 for p in pods.values() if p.busy)
    desired_workers = int(scheduler.adaptive_target())
    try:
        restarts = len(scheduler.get_events("worker-restart-memory"))
    except Exception:  # an older scheduler without the event broker: no count
        restarts = 0
    return {
        "memoryRestarts": restarts,
        "processesPerPod": nprocs,
        "desiredWorkers": desired_workers,
        "busyPods": busy,
        "desiredPods": desired_pods(
            desired_workers=desired_workers, processes_per_pod=nprocs, busy_pods=busy
        ),
        "pods": {name: {**asdict(p), "busy": p.busy} for name, p in sorted(pods.items())},
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(view: dict[str, Any]) -> str:
    """The view in the Prometheus text format (0.0.4). Pure."""
    lines = [
        "# HELP dask_workspace_busy_pods Worker pods that hold results or run tasks.",
        "# TYPE dask_workspace_busy_pods gauge",
        f"dask_workspace_busy_pods {view['busyPods']}",
        "# HELP dask_workspace_pods Worker pods connected to the scheduler.",
        "# TYPE dask_workspace_pods gauge",
        f"dask_workspace_pods {len(view['pods'])}",
        "# HELP dask_workspace_desired_pods ceil(desired workers / processes per pod), at least"
        " the busy pods.",
        "# TYPE dask_workspace_desired_pods gauge",
        f"dask_workspace_desired_pods {view['desiredPods']}",
        "# HELP dask_workspace_memory_restarts Worker processes the nanny restarted for memory"
        " (worker-restart-memory events the scheduler keeps).",
        "# TYPE dask_workspace_memory_restarts gauge",
        f"dask_workspace_memory_restarts {view.get('memoryRestarts', 0)}",
        "# HELP dask_workspace_pod_busy 1 when the pod's workers hold results or run tasks.",
        "# TYPE dask_workspace_pod_busy gauge",
    ]
    for name, p in view["pods"].items():
        lines.append(f'dask_workspace_pod_busy{{pod="{_label(name)}"}} {int(p["busy"])}')
    lines += [
        "# HELP dask_workspace_pod_bytes Bytes of task results the pod's workers hold.",
        "# TYPE dask_workspace_pod_bytes gauge",
    ]
    for name, p in view["pods"].items():
        lines.append(f'dask_workspace_pod_bytes{{pod="{_label(name)}"}} {p["nbytes"]}')
    return "\n".join(lines) + "\n"


class WorkspaceMetricsHandler(RequestHandler):
    def get(self) -> None:
        self.write(prometheus_text(scheduler_view(self.server)))
        self.set_header("Content-Type", "text/plain; version=0.0.4")


class WorkspacePodsHandler(RequestHandler):
    def get(self) -> None:
        self.write(scheduler_view(self.server))
        self.set_header("Content-Type", "application/json")


routes: list[tuple[str, type, dict[str, Any]]] = [
    ("/workspace/metrics", WorkspaceMetricsHandler, {}),
    ("/workspace/pods.json", WorkspacePodsHandler, {}),
]
