"""Keep ``controller.kubernetes.io/pod-deletion-cost`` on worker pods up to date.

When the HPA (made by KEDA, autoscaling mode ``dask``) lowers the worker Deployment's replicas,
the ReplicaSet deletes the pods with the LOWEST deletion cost first. This loop gives idle pods
cost 0 and pods that hold results or run tasks a high cost, from the scheduler's own view
(``/workspace/pods.json``, served by ``dask_workspace.scaling_metrics``), so scale-down takes idle
pods and leaves the ones the study still needs. (The count never drops below the busy pods
either: that is KEDA's second trigger. And a busy pod removed anyway, e.g. by a node drain,
still retires its workers first in its preStop hook.)

Kubernetes' documentation warns against updating the annotation often (every update is a pod
write through the API server). So costs are coarse buckets (idle / holds data / runs tasks, with
a log2 size step), a pod is patched only when its bucket changes, at most once per
``min-update-seconds`` (except the first time), and at most ``max-patches`` pods per look.

It runs as its own small Deployment (``infra/workspace/deletion-cost.ts``) with a Role that may
only get, list and patch pods: the scheduler keeps no API credentials, and the worker pods, which
run user code, have no service account token at all.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dask.config

logger = logging.getLogger(__name__)

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
#: Cost of a pod whose workers run or wait for tasks.
PROCESSING_COST = 10_000
#: Base cost of a pod whose workers hold results but run nothing.
HOLDING_COST = 1_000


def deletion_cost(pod: Mapping[str, Any]) -> int:
    """The cost bucket of one pod (``/workspace/pods.json`` entry). Pure.

    Idle pods cost 0; pods holding results cost 1000 + log2(MiB held), pods running tasks
    10000 + the same, so running beats holding and more data beats less, in coarse steps.
    """
    nbytes = int(pod.get("nbytes", 0) or 0)
    size_step = int(math.log2(1 + nbytes / 2**20))
    if int(pod.get("processing", 0) or 0) > 0:
        return PROCESSING_COST + size_step
    if int(pod.get("keys", 0) or 0) > 0 or nbytes > 0:
        return HOLDING_COST + size_step
    return 0


@dataclass
class Applied:
    cost: int
    at: float


def updates_due(
    costs: Mapping[str, int],
    applied: Mapping[str, Applied],
    *,
    now: float,
    min_update_seconds: float,
    max_patches: int,
) -> dict[str, int]:
    """The pods to patch now and their new cost. Pure.

    A pod is due when its cost differs from the one last applied and it was not patched within
    ``min_update_seconds`` (a pod never patched is due at once). Pods becoming busy go first
    (a busy pod left at cost 0 is the one scale-down would pick), then by name.
    """
    due = {
        name: cost
        for name, cost in costs.items()
        if (prev := applied.get(name)) is None
        or (prev.cost != cost and now - prev.at >= min_update_seconds)
    }
    ordered = sorted(due.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ordered[:max_patches])


def fetch_pods(url: str, *, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """``/workspace/pods.json`` of the scheduler: pod name → activity."""
    with urllib.request.urlopen(url, timeout=timeout) as res:
        return dict(json.load(res)["pods"])


@dataclass
class DeletionCostLoop:
    """Looks at the scheduler every ``interval`` seconds and patches the pods that are due."""

    pods_url: str
    patch: Callable[[str, int], None]
    interval: float = 15.0
    min_update_seconds: float = 60.0
    max_patches: int = 20
    clock: Callable[[], float] = time.monotonic
    applied: dict[str, Applied] = field(default_factory=dict)
    patches: int = 0
    errors: int = 0

    def tick(self) -> dict[str, int]:
        """One look; returns what was patched."""
        try:
            pods = fetch_pods(self.pods_url)
        except Exception as exc:  # the scheduler may be restarting: try again next tick
            self.errors += 1
            logger.warning("cannot read %s: %s", self.pods_url, exc)
            return {}
        now = self.clock()
        costs = {name: deletion_cost(p) for name, p in pods.items()}
        # Forget pods that are gone, so the map does not grow with every pod ever seen.
        for gone in set(self.applied) - set(costs):
            del self.applied[gone]
        due = updates_due(
            costs,
            self.applied,
            now=now,
            min_update_seconds=self.min_update_seconds,
            max_patches=self.max_patches,
        )
        done: dict[str, int] = {}
        for name, cost in due.items():
            try:
                self.patch(name, cost)
            except Exception as exc:  # a pod deleted meanwhile (404), a brief API error
                self.errors += 1
                logger.info("cannot annotate pod %s: %s", name, exc)
                continue
            self.applied[name] = Applied(cost=cost, at=now)
            self.patches += 1
            done[name] = cost
        if done:
            logger.info("deletion cost: %s", ", ".join(f"{n}={c}" for n, c in done.items()))
        return done

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.tick()
            stop.wait(self.interval)


def kubernetes_patcher(namespace: str) -> Callable[[str, int], None]:
    """Patches the annotation through the API server with the pod's service account."""
    from kubernetes import client, config

    config.load_incluster_config()
    api = client.CoreV1Api()

    def patch(name: str, cost: int) -> None:
        body = {"metadata": {"annotations": {ANNOTATION: str(cost)}}}
        api.patch_namespaced_pod(name=name, namespace=namespace, body=body)

    return patch


def settings(
    *, interval: float | None, min_update_seconds: float | None, max_patches: int | None
) -> tuple[float, float, int]:
    """The loop's settings: arguments, else ``workspace.autoscaling.deletion-cost.*``."""
    key = "workspace.autoscaling.deletion-cost"
    iv = dask.config.get(f"{key}.interval", override_with=interval)
    mu = dask.config.get(f"{key}.min-update-seconds", override_with=min_update_seconds)
    mp = dask.config.get(f"{key}.max-patches", override_with=max_patches)
    from dask.utils import parse_timedelta

    return float(parse_timedelta(iv)), float(parse_timedelta(mu)), int(mp)
