"""Graceful retirement of one pod's Dask workers (the worker Deployment's preStop hook).

Before Kubernetes kills a worker pod (HPA scale-down, node drain, rollout), the pod's workers ask
the scheduler to move the results they hold to other workers and close. Without it the results
die with the pod and Dask recomputes them.

``dask worker --name POD`` names its processes ``POD-0``, ``POD-1``, ... when ``--nworkers`` > 1,
and ``POD`` when it runs one process; ``pod_worker_names`` matches both, and nothing else
(``POD-ab`` of another pod does not match).

Retirement must never block the pod's shutdown: the whole operation is bounded by a timeout and
the command always exits 0, logging what went wrong.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


def pod_worker_names(names: Iterable[Any], *, pod: str) -> list[str]:
    """The worker names that belong to pod ``pod``: exactly ``pod`` or ``pod-<digits>``."""
    pattern = re.compile(rf"^{re.escape(pod)}(?:-\d+)?$")
    return sorted(str(n) for n in names if pattern.match(str(n)))


@dataclass
class RetireResult:
    matched: dict[str, str] = field(default_factory=dict)  # address -> name
    retired: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def _retire(*, scheduler: str, name_prefix: str, timeout: float, result: RetireResult) -> None:
    from distributed import Client

    started = time.monotonic()
    connect_timeout = max(1.0, min(10.0, timeout / 3))
    with Client(scheduler, timeout=connect_timeout, set_as_default=False) as client:
        workers: Mapping[str, Mapping[str, Any]] = client.scheduler_info(n_workers=-1)["workers"]
        by_name = {str(w.get("name")): addr for addr, w in workers.items()}
        names = pod_worker_names(by_name, pod=name_prefix)
        result.matched = {by_name[n]: n for n in names}
        if not names:
            logger.info(
                "no workers named %s or %s-N on %s: nothing to retire",
                name_prefix,
                name_prefix,
                scheduler,
            )
            return
        logger.info("retiring %d workers of pod %s: %s", len(names), name_prefix, ", ".join(names))
        retired = client.retire_workers(workers=list(result.matched), close_workers=True)
        result.retired = sorted(retired or {})
        result.seconds = time.monotonic() - started


def retire_pod_workers(*, scheduler: str, name_prefix: str, timeout: float) -> RetireResult:
    """Retires the pod's workers through the scheduler, moving their data first.

    Never raises: errors and timeouts are logged and returned in ``RetireResult.error``. Runs in
    a daemon thread so that a scheduler that does not answer cannot hold the caller past
    ``timeout``.
    """
    result = RetireResult()
    started = time.monotonic()

    def target() -> None:
        try:
            _retire(scheduler=scheduler, name_prefix=name_prefix, timeout=timeout, result=result)
        except Exception as exc:  # never fail the pod's shutdown
            result.error = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=target, name="retire-workers", daemon=True)
    thread.start()
    thread.join(timeout)
    result.seconds = time.monotonic() - started
    if thread.is_alive():
        result.error = f"timed out after {timeout:g}s"
    if result.error:
        logger.warning(
            "could not retire the workers of pod %s through %s: %s (the pod shuts down anyway; "
            "Dask recomputes what they held)",
            name_prefix,
            scheduler,
            result.error,
        )
    else:
        logger.info(
            "retired %d of %d workers of pod %s in %.1fs",
            len(result.retired),
            len(result.matched),
            name_prefix,
            result.seconds,
        )
    return result
