"""On Kubernetes: count worker containers killed by the kernel for memory (``OOMKilled``).

A pod whose cgroup runs out of memory loses every Dask worker in it at once, and Dask only sees
"worker died". The pod's container status says why: ``lastState.terminated.reason ==
"OOMKilled"`` (or ``state.terminated`` before the kubelet restarts it). When the runner runs in
a cluster (the runner Job), a ``PodOomWatcher`` polls the namespace's worker pods and reports
new OOM kills in the progress line, the logs and the summary (``pod_oom_kills``); the window
shrinks on them like on any memory kill.

The runner's Role allows get/list/watch on pods (infra/workspace/runner.ts). Worker pods are
found by label: ``workspace.runner.kubernetes.worker-selector`` (default: the workspace's worker
component labels).
"""

from __future__ import annotations

import logging
import os
import pathlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_WORKER_SELECTOR = "app.kubernetes.io/name=dask,app.kubernetes.io/component=worker"


def oom_kill_ids(pods: Iterable[Any]) -> set[tuple[str, str, str]]:
    """Identifies every OOM kill visible in these pods' container statuses.

    Returns:
        ``(pod name, container name, finishedAt)`` per OOMKilled termination, so the same kill
        seen in several polls counts once and a container killed twice counts twice.
    """
    kills: set[tuple[str, str, str]] = set()
    for pod in pods:
        name = getattr(getattr(pod, "metadata", None), "name", None) or "?"
        statuses = getattr(getattr(pod, "status", None), "container_statuses", None) or []
        for cs in statuses:
            for state in (getattr(cs, "last_state", None), getattr(cs, "state", None)):
                term = getattr(state, "terminated", None) if state is not None else None
                if term is not None and getattr(term, "reason", None) == "OOMKilled":
                    kills.add((name, cs.name, str(getattr(term, "finished_at", None))))
    return kills


class PodOomWatcher:
    """Polls worker pods in a background thread; ``new_kills`` counts OOM kills since start."""

    def __init__(
        self,
        *,
        list_pods: Callable[[], Iterable[Any]],
        interval: float = 10.0,
        description: str = "worker pods",
    ) -> None:
        self._list_pods = list_pods
        self.interval = interval
        self.description = description
        self._baseline: set[tuple[str, str, str]] | None = None
        self._seen: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def poll(self) -> None:
        """One look at the pods (the thread calls this; tests may too)."""
        try:
            kills = oom_kill_ids(self._list_pods())
        except Exception as exc:  # the API may be briefly unavailable; never stop the run
            self.errors += 1
            logger.debug("listing %s failed: %s", self.description, exc)
            return
        with self._lock:
            if self._baseline is None:
                self._baseline = kills  # kills from before this run are not ours to report
                return
            fresh = kills - self._baseline - self._seen
            self._seen |= fresh
        for pod, container, when in sorted(fresh):
            logger.warning(
                "pod %s container %s was OOMKilled by the kernel (%s): every worker in the pod "
                "died at once. Give the pod more headroom (workers.podMemory, or fewer "
                "workers.nprocs), or lower the window.",
                pod,
                container,
                when,
            )

    @property
    def new_kills(self) -> int:
        with self._lock:
            return len(self._seen)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def start(self) -> PodOomWatcher:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="pod-oom-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.poll()


def in_cluster(service_account_dir: pathlib.Path = SERVICE_ACCOUNT_DIR) -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (service_account_dir / "token").exists()
    )


def watcher_from_environment(
    *,
    selector: str,
    interval: float,
    service_account_dir: pathlib.Path = SERVICE_ACCOUNT_DIR,
) -> PodOomWatcher | None:
    """A watcher for the runner's own namespace when running in a pod; None elsewhere.

    The pod's service account (its token, CA and namespace in ``service_account_dir``, the API
    server in ``KUBERNETES_SERVICE_HOST``/``_PORT``) is what lists the pods, so the Role the
    workspace gives the runner is what allows it.
    """
    if not in_cluster(service_account_dir):
        return None
    try:
        from kubernetes import client
        from kubernetes.config.incluster_config import InClusterConfigLoader

        InClusterConfigLoader(
            token_filename=str(service_account_dir / "token"),
            cert_filename=str(service_account_dir / "ca.crt"),
        ).load_and_set()
        namespace = (service_account_dir / "namespace").read_text().strip()
        api = client.CoreV1Api()
    except Exception as exc:  # no permission / broken mount: run without the watcher
        logger.warning("cannot watch worker pods for OOM kills: %s", exc)
        return None

    def list_pods() -> Iterable[Any]:
        return api.list_namespaced_pod(namespace, label_selector=selector, timeout_seconds=10).items

    logger.info("watching pods %s in namespace %s for OOM kills", selector, namespace)
    return PodOomWatcher(
        list_pods=list_pods, interval=interval, description=f"pods {selector} in {namespace}"
    )
