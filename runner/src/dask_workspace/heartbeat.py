"""A nanny preload that proves the ``dask worker`` host process is alive, for a liveness probe.

``dask worker --nworkers N`` runs N Nanny objects on ONE event loop in the host process; the
tasks run in the worker processes it spawns. So a liveness check on that loop finds a hung host
(a deadlock, a blocked loop that no longer watches memory or restarts workers) without ever
touching a worker that is busy with a long task: a busy worker process does not run this loop.

Loaded as a nanny preload (the worker Deployment runs ``dask worker ... --preload-nanny
dask_workspace.heartbeat``; the CLI ignores ``distributed.nanny.preload``), every nanny touches one
file (Dask config ``workspace.heartbeat.path``) every ``workspace.heartbeat.interval``. The
Kubernetes liveness probe (infra/workspace/probes.ts) fails while the file is older than its
threshold.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from tornado.ioloop import PeriodicCallback

from dask_workspace import config as _config  # noqa: F401 -- registers workspace.yaml defaults

logger = logging.getLogger(__name__)

_ATTR = "_dask_workspace_heartbeat"


def heartbeat_path() -> pathlib.Path:
    """The heartbeat file (Dask config ``workspace.heartbeat.path``)."""
    return pathlib.Path(dask.config.get("workspace.heartbeat.path"))


def touch(*, path: pathlib.Path) -> None:
    """Create ``path`` or update its modification time (errors are logged, never raised)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path)
    except OSError as exc:
        logger.warning("cannot write the nanny heartbeat %s: %s", path, exc)


def dask_setup(nanny: Any) -> None:
    """Nanny preload hook: start touching the heartbeat file on the nanny's event loop."""
    path = heartbeat_path()
    interval = parse_timedelta(dask.config.get("workspace.heartbeat.interval"), default="s")
    touch(path=path)
    callback = PeriodicCallback(lambda: touch(path=path), interval * 1000)
    callback.start()
    setattr(nanny, _ATTR, callback)
    logger.info("nanny heartbeat: %s every %ss", path, interval)


def dask_teardown(nanny: Any) -> None:
    """Nanny preload hook: stop the heartbeat."""
    callback = getattr(nanny, _ATTR, None)
    if callback is not None:
        callback.stop()
