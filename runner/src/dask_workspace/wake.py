"""Scale from zero: ask an autoscaled workspace for its first worker.

With autoscaling mode ``dask`` and ``minReplicas: 0`` an idle workspace has no worker pod, and
the scheduler's ``adaptive_target()`` (``dask_scheduler_desired_workers``, the metric KEDA scales
on) stays 0 until a task is waiting. The runner waits for a worker before it submits its study,
so without a waiting task nothing would ever start one. ``wake_workers`` submits one no-op task:
while it waits, the scheduler wants at least one worker, KEDA (or the local emulation) starts a
pod, and the runner goes on. On a cluster that has workers it runs at once and costs nothing.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def _wake() -> None:
    return None


def wake_workers(client: Any) -> Any:
    """Submits the no-op task and returns its future (drop it once a worker is there)."""
    return client.submit(_wake, pure=False, key="dask-workspace-wake")
