"""Shipping a study bundle to every worker, including the ones that join later.

The runner registers one :class:`StudyBundlePlugin` (a Dask ``WorkerPlugin``) per study run
through its client, named after the study and its results location (:func:`plugin_name`). The
scheduler keeps registered worker plugins and hands them to every worker that registers with it,
so workers started by autoscaling, restarted by their nanny (memory restarts,
``Client.restart_workers``), recycled by ``--lifetime`` or by the runner's watchdog all get the
bundle before they run a task.

On a worker the bundle is unpacked into ``<worker local directory>/study-bundles/<hash>/`` and put
first on ``sys.path``. Bundles of different studies sit side by side. A new bundle under the same
plugin name (the same study into the same results location) replaces the previous one: its
``sys.path`` entry goes, the modules imported from it are forgotten, so a fixed model is imported
fresh on the same workers (``--retry-failed`` after a fix). Other studies' folders and modules
are left alone. Which studies may share a cluster (no two different modules of one name) is
``dask_workspace.cluster_bundles``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import pathlib
import shutil
import sys
import uuid
import zipfile
from io import BytesIO
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

logger = logging.getLogger(__name__)

#: Bundle plugins are named ``<prefix>-<study name>-<results hash>``: one per study run on a
#: cluster; registering a new bundle of a study replaces that study's previous one (and only it).
PLUGIN_PREFIX = "dask-workspace-study-bundle"
#: Folder under the worker's local directory that holds unpacked bundles.
BUNDLES_DIR = "study-bundles"

#: The bundle folder each study (plugin name) has active in this process. Two studies with the
#: same bundle share its folder.
_ACTIVE: dict[str, str] = {}


def plugin_name(study_name: str, results: str) -> str:
    """The worker plugin name of a study's bundle: one per study and results location (the unit
    whose code the results record), readable by the study name (letters, digits, '-', '_')."""
    return f"{PLUGIN_PREFIX}-{study_name}-{hashlib.sha256(results.encode()).hexdigest()[:8]}"


def unpack(*, data: bytes, digest: str, root: pathlib.Path) -> pathlib.Path:
    """Unpacks a bundle archive into ``root/<digest>`` (once; atomically through a temp folder)."""
    final = root / digest
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{digest[:12]}-{uuid.uuid4().hex[:6]}"
    with zipfile.ZipFile(BytesIO(data)) as zf:
        for name in zf.namelist():
            # Paths come from our own packer; refuse anything that would leave the folder anyway.
            if name.startswith("/") or ".." in pathlib.PurePosixPath(name).parts:
                raise ValueError(f"unsafe path {name!r} in a study bundle")
        zf.extractall(tmp)
    try:
        os.replace(tmp, final)
    except OSError:  # another process of the same worker host got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _forget_modules(folder: str) -> list[str]:
    prefix = folder.rstrip(os.sep) + os.sep
    gone = []
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        paths = list(getattr(module, "__path__", []) or [])
        if origin.startswith(prefix) or any(str(p).startswith(prefix) for p in paths):
            del sys.modules[name]
            gone.append(name)
    return gone


def _drop(path: str) -> None:
    """Takes a bundle folder off ``sys.path`` and forgets its modules, unless another study
    still uses the same folder."""
    if path in _ACTIVE.values():
        return
    with contextlib.suppress(ValueError):
        sys.path.remove(path)
    _forget_modules(path)


def _fresh_imports() -> None:
    importlib.invalidate_caches()
    from dask_workspace.tasks import resolve_function

    resolve_function.cache_clear()


def activate(folder: pathlib.Path | str, *, key: str = "") -> None:
    """Puts ``folder`` first on ``sys.path`` as the bundle of ``key`` (a study's plugin name),
    replacing the bundle that key activated before (its modules are forgotten, so the next import
    reads the new code). Bundles of other keys stay."""
    path = str(folder)
    old = _ACTIVE.get(key)
    _ACTIVE[key] = path
    if old is not None and old != path:
        _drop(old)
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    _forget_modules(path)  # a re-activation imports afresh too
    _fresh_imports()


def deactivate(folder: pathlib.Path | str, *, key: str = "") -> None:
    """Undoes :func:`activate` of ``folder`` for ``key`` (nothing if ``key`` has moved on to
    another folder since)."""
    path = str(folder)
    if _ACTIVE.get(key) == path:
        del _ACTIVE[key]
    _drop(path)
    _fresh_imports()


class StudyBundlePlugin(WorkerPlugin):
    """Unpacks a study's bundle on each worker and puts it first on ``sys.path``."""

    def __init__(self, *, digest: str, data: bytes, name: str = PLUGIN_PREFIX) -> None:
        self.digest = digest
        self.data = data
        #: The plugin name: one per study and results location (``plugin_name``).
        self.name = name
        self.folder: str | None = None

    def setup(self, worker: Any) -> None:
        root = pathlib.Path(worker.local_directory) / BUNDLES_DIR
        folder = unpack(data=self.data, digest=self.digest, root=root)
        activate(folder, key=self.name)
        self.folder = str(folder)
        logger.info("study bundle %s (%s) at %s", self.digest[:12], self.name, folder)

    def teardown(self, worker: Any) -> None:
        if self.folder is not None:
            deactivate(self.folder, key=self.name)


#: Above this, a bundle is probably data that should not travel to every worker.
LARGE_BUNDLE_BYTES = 64 * 2**20


def register_bundle(client: Any, *, bundle: Any, name: str) -> None:
    """Registers the bundle with the scheduler as plugin ``name``: every worker now and later
    gets it."""
    data = bundle.pack()
    if len(data) > LARGE_BUNDLE_BYTES:
        largest = sorted(bundle.files, key=lambda f: -f.size)[:3]
        logger.warning(
            "the study bundle is %.0f MiB packed (largest: %s); every worker receives it. Leave "
            "data out with a .studyignore, or build an image with it",
            len(data) / 2**20,
            ", ".join(f"{f.path} ({f.size / 2**20:.0f} MiB)" for f in largest),
        )
    plugin = StudyBundlePlugin(digest=bundle.hash, data=data, name=name)
    client.register_plugin(plugin, name=name)
    logger.info(
        "study bundle %s: %d files, %d bytes, shipped to every worker",
        bundle.short_hash,
        len(bundle.files),
        bundle.total_bytes,
    )


def activate_locally(study_dir: pathlib.Path) -> None:
    """The runner (and ``check``) import the study's modules from the study folder itself."""
    path = str(study_dir)
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    importlib.invalidate_caches()
