"""Bundles of several studies on one cluster: who may run beside whom, and cleaning up.

A workspace's runner Jobs share one Dask cluster, so several studies can run at once. Each study
run's bundle is its own worker plugin, named after the study and its results location
(``distribute.plugin_name``): the results location is what a study's code is tied to already
(``identity``: one code hash per location, ``--retry-failed`` after a fix reuses it). Bundles of
different plugins sit side by side on the workers; a new bundle under the same plugin -- the same
study into the same location, e.g. the retry after a fix -- replaces the previous one.

One thing cannot be shared: a worker process holds one module per name (``sys.modules``). Two
studies whose bundles both bring, say, ``model.py`` or ``mypkg/`` with different code would
import each other's code. So before its bundle is registered, a runner claims it at the
scheduler: the scheduler keeps one **record** per plugin (Dask's scheduler metadata, key
:data:`RECORDS_KEY`: study, results, bundle hash, the bundle's top-level module names with a
digest of their files, and the runs using it). The claim is refused (exit 2) when a study run
going on now has a top-level name whose files differ from ours -- also another run of the same
study into another location with other code, which would otherwise compute with ours. Claim and
check run in one function on the scheduler's event loop, so two runners that start together
cannot both pass.

Each run in a record is its runner's Dask client id. A run whose client is no longer connected
to the scheduler has ended (finished, or crashed: killed, OOM, node lost -- the scheduler drops a
client when its connection closes), so a record without connected runs is **stale**: the next
claim drops it and unregisters its plugin. A runner that ends normally releases its claim: when
no other run uses the plugin, the record goes and the plugin is unregistered, so the workers take
the bundle off ``sys.path`` and forget its modules. While another run still uses it (a resume of
the same location that started before this run ended, e.g. a Job replaced after a code change
while the old pod stops), the plugin stays: that run needs it.
"""

from __future__ import annotations

import asyncio
import keyword
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dask_workspace.bundle import Bundle, BundleFile, bundle_hash, short_hash
from dask_workspace.distribute import plugin_name, register_bundle
from dask_workspace.errors import Problem, UsageError

logger = logging.getLogger(__name__)

#: Scheduler metadata key of the records: ``{plugin name: record}``.
RECORDS_KEY = "dask-workspace-study-bundles"
#: Files that make a top-level name importable: modules and extension modules.
CODE_SUFFIXES = (".py", ".so", ".pyd")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _importable(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    return bool(_IDENTIFIER.match(name)) and not keyword.iskeyword(name) and not dunder


def top_level_names(files: Iterable[BundleFile]) -> dict[str, str]:
    """The names a bundle adds to ``import`` -- ``name.py`` (or an extension module) at its top,
    or a folder with Python code anywhere below it (a package, or a namespace package) -- each
    with the bundle hash of the files that make it (the folder's every file). Pure."""
    parts: dict[str, list[tuple[str, str]]] = {}
    code: set[str] = set()
    for f in files:
        head, below, _ = f.path.partition("/")
        name = head if below else head.split(".", 1)[0]
        if not _importable(name) or (not below and not head.endswith(CODE_SUFFIXES)):
            continue
        parts.setdefault(name, []).append((f.path, f.sha256))
        if f.path.endswith(CODE_SUFFIXES):
            code.add(name)
    return {name: bundle_hash(parts[name]) for name in sorted(code)}


# ---------------------------------------------------------------------------------------------
# On the scheduler (``Client.run_on_scheduler``; one event loop: nothing interleaves between the
# reads and writes of a call until its first ``await``).


def _prune(dask_scheduler: Any, records: dict[str, Any]) -> list[dict[str, Any]]:
    """Drops runs whose client is gone, and records left without runs; returns those records
    (with the runs they had, as ``ended``)."""
    live = dask_scheduler.clients
    stale = []
    for plugin, record in list(records.items()):
        ended = record["owners"]
        record["owners"] = [o for o in ended if o["client"] in live]
        if not record["owners"]:
            stale.append({**records.pop(plugin), "ended": ended})
    return stale


#: How long a claim or a release waits for the workers to confirm a removal (a worker that does
#: not answer, e.g. busy in a task holding the GIL, must not hold up a runner for long).
REMOVAL_WAIT_SECONDS = 30.0
#: Removals of bundle plugins still on their way to the workers, by (scheduler, plugin name).
_REMOVING: dict[tuple[int, str], asyncio.Future[Any]] = {}


async def _unregister(dask_scheduler: Any, names: list[str]) -> None:
    """Unregisters worker plugins (what ``Scheduler.unregister_worker_plugin`` does), remembering
    each removal until every worker has answered: see :func:`_removed`."""
    removals = []
    for name in names:
        # Popped now, before the first await: a claim that follows registers anew.
        if dask_scheduler.worker_plugins.pop(name, None) is None:
            continue
        key = (id(dask_scheduler), name)
        removal = asyncio.ensure_future(
            dask_scheduler.broadcast(msg={"op": "plugin-remove", "name": name}, on_error="ignore")
        )
        _REMOVING[key] = removal
        removal.add_done_callback(
            lambda done, key=key: _REMOVING.pop(key) if _REMOVING.get(key) is done else None
        )
        removals.append(removal)
    if removals:
        await asyncio.wait(removals, timeout=REMOVAL_WAIT_SECONDS)


async def _removed(dask_scheduler: Any, name: str) -> None:
    """Waits until a removal of plugin ``name`` has reached every worker. A new registration of
    the name must not overtake it: a worker would add the new bundle, then remove it."""
    removal = _REMOVING.get((id(dask_scheduler), name))
    if removal is not None:
        await asyncio.wait([removal], timeout=REMOVAL_WAIT_SECONDS)


async def claim_on_scheduler(
    dask_scheduler: Any, *, record: dict[str, Any], owner: dict[str, Any]
) -> dict[str, Any]:
    """Records ``owner``'s run under ``record["plugin"]`` unless a running study clashes."""
    records = dask_scheduler.task_metadata.setdefault(RECORDS_KEY, {})
    stale = _prune(dask_scheduler, records)
    plugin = record["plugin"]
    clashes = []
    for other, theirs in records.items():
        if other == plugin:
            continue
        names = sorted(
            n
            for n, digest in record["modules"].items()
            if theirs["modules"].get(n, digest) != digest
        )
        if names:
            clashes.append({**theirs, "modules": names})
    same: list[dict[str, Any]] = []
    if not clashes:
        previous = records.get(plugin)
        same = previous["owners"] if previous is not None else []
        records[plugin] = {**record, "owners": [*same, owner]}
    # A stale plugin of this very run is replaced by this run's registration instead.
    await _unregister(
        dask_scheduler,
        [r["plugin"] for r in stale if r["plugin"] != plugin or clashes],
    )
    if not clashes:
        await _removed(dask_scheduler, plugin)
    return {"stale": stale, "clashes": clashes, "same": same}


async def release_on_scheduler(dask_scheduler: Any, *, plugin: str, client: str) -> str:
    """Ends ``client``'s use of ``plugin``; unregisters it once no run uses it."""
    records = dask_scheduler.task_metadata.setdefault(RECORDS_KEY, {})
    record = records.get(plugin)
    if record is None:
        return "gone"
    record["owners"] = [o for o in record["owners"] if o["client"] != client]
    stale = _prune(dask_scheduler, records)  # this record too, if no run is left
    await _unregister(dask_scheduler, [r["plugin"] for r in stale])
    return "kept" if plugin in records else "removed"


# ---------------------------------------------------------------------------------------------
# On the runner


def _runners(owners: list[dict[str, Any]]) -> str:
    return ", ".join(f"runner on {o['host']}" for o in owners) or "no runner left"


def _clash_problem(record: dict[str, Any], clash: dict[str, Any]) -> Problem:
    names = clash["modules"]
    listed = ", ".join(repr(n) for n in names)
    what = f"a top-level module {listed}" if len(names) == 1 else f"top-level modules {listed}"
    study, other = record["study"], clash["study"]
    example = f"{study.replace('-', '_').lower()}_{names[0]}"
    rename = (
        f"Rename it in one of the two studies to a name of its own (e.g. {example}; change "
        "model: and targets: in its study file to match), or leave it out of that bundle with "
        ".studyignore if its workers do not need it, or run the two studies one after the other"
    )
    if study == other:  # the same study into another location, with other code
        rename = (
            "Wait for that run to end (or stop it) before running other code of the study, or "
            "rename the module in this copy of the study"
        )
    return Problem(
        "bundle",
        f"study '{study}' (results {record['results']}) cannot run beside study '{other}', "
        f"which is running on this cluster now (results {clash['results']}; "
        f"{_runners(clash['owners'])}): both bundles bring {what} with different code, and a "
        "worker process holds only one module of a name, so one study would run the other's "
        f"code. {rename}",
    )


@dataclass
class ShippedBundle:
    """A study's bundle this runner registered; :meth:`release` when the run ends."""

    client: Any
    study: str
    plugin: str

    def release(self) -> None:
        """Unregisters the bundle unless another run still uses it. Never raises (a scheduler
        that is gone has forgotten the bundle anyway)."""
        try:
            outcome = self.client.run_on_scheduler(
                release_on_scheduler, plugin=self.plugin, client=self.client.id
            )
        except Exception as exc:
            logger.debug("could not release the study bundle %s: %s", self.plugin, exc)
            return
        if outcome == "kept":
            logger.info("study bundle kept on the workers: another run of %s uses it", self.study)


def ship_bundle(client: Any, *, study: str, bundle: Bundle, results: str) -> ShippedBundle:
    """Claims the bundle at the scheduler, then registers it for every worker.

    ``results``: the results location, as the store describes it (local paths resolved).

    Raises:
        UsageError: a study running now brings a top-level module of the same name with other
            code (exit 2).
    """
    name = plugin_name(study, results)
    record = {
        "study": study,
        "results": results,
        "plugin": name,
        "hash": bundle.hash,
        "modules": top_level_names(bundle.files),
    }
    owner = {
        "client": client.id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "hash": bundle.hash,
    }
    try:
        answer = client.run_on_scheduler(claim_on_scheduler, record=record, owner=owner)
    except ImportError as exc:  # a scheduler image older than this runner: no records there
        logger.warning(
            "the scheduler cannot check which studies' bundles run beside this one (%s); use the "
            "same dask-workspace version in the scheduler's image as in the runner's",
            exc,
        )
        answer = {"stale": [], "clashes": [], "same": []}
    for old in answer["stale"]:
        if old["plugin"] != name:
            logger.warning(
                "removed the bundle of study '%s' (results %s) from the workers: its runner (%s) "
                "is no longer running",
                old["study"],
                old["results"],
                _runners(old["ended"]),
            )
    if answer["clashes"]:
        raise UsageError([_clash_problem(record, c) for c in answer["clashes"]])
    for other in answer["same"]:
        if other["hash"] != bundle.hash:
            logger.warning(
                "another run of study '%s' into %s is going on (%s) with code %s; this run's code "
                "%s replaces it on the workers, so that run's remaining tasks run this code",
                study,
                results,
                _runners([other]),
                short_hash(other["hash"]),
                bundle.short_hash,
            )
    shipped = ShippedBundle(client=client, study=study, plugin=name)
    try:
        register_bundle(client, bundle=bundle, name=name)
    except BaseException:
        shipped.release()
        raise
    return shipped
