"""Keeps the scheduler dashboard's ``/json/identity.json`` answering during a run.

While workers run tasks, their heartbeat metrics carry dictionaries keyed by tuples (fine
performance metrics: ``("execute", prefix, "thread-cpu", "seconds")``). The scheduler's
``/json/identity.json`` handler hands them to ``json.dumps`` as they are, which fails: the page
answers 500 and the scheduler logs a traceback ("keys must be str, int, float, bool or None, not
tuple") into the run's output. The runner registers :class:`IdentityJsonPlugin` on the scheduler;
it makes the handler write the same document with such keys turned into strings.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger(__name__)

PLUGIN_NAME = "dask-workspace-identity-json"


def json_safe(value: Any) -> Any:
    """``value`` with every dict key JSON can't take turned into a string (tuples joined by
    ``.``). Pure."""
    if isinstance(value, dict):
        return {_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _key(key: Any) -> Any:
    if key is None or isinstance(key, str | int | float | bool):
        return key
    if isinstance(key, tuple):
        return ".".join(str(k) for k in key)
    return str(key)


def _safe_get(self: Any) -> None:
    self.write(json_safe(self.server.identity()))


def patch_identity_handler() -> bool:
    """Makes ``/json/identity.json`` write JSON-safe identities; True when it was patched now."""
    from distributed.http.scheduler import json as scheduler_json

    handler = scheduler_json.IdentityJSON
    if getattr(handler.get, "__name__", "") == _safe_get.__name__:
        return False
    handler.get = _safe_get
    return True


class IdentityJsonPlugin(SchedulerPlugin):
    """Installs the JSON-safe ``/json/identity.json`` handler in the scheduler process."""

    name = PLUGIN_NAME

    async def start(self, scheduler: Any) -> None:
        if patch_identity_handler():
            logger.info("dashboard: /json/identity.json made JSON-safe")


def register(client: Any) -> None:
    """Registers the plugin (best effort: the dashboard is not worth failing a run for)."""
    try:
        client.register_plugin(IdentityJsonPlugin(), name=PLUGIN_NAME)
    except Exception as exc:
        logger.debug("could not patch the dashboard's identity page: %s", exc)
