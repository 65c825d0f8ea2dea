"""Shipping a study bundle to every worker, including the ones that join later.

The runner registers one :class:`StudyBundlePlugin` (a Dask ``WorkerPlugin``) through its
client. The scheduler keeps registered worker plugins and hands them to every worker that
registers with it, so workers started by autoscaling, restarted by their nanny (memory restarts,
``Client.restart_workers``), recycled by ``--lifetime`` or by the runner's watchdog all get the
bundle before they run a task.

On a worker the bundle is unpacked into ``<worker local directory>/study-bundles/<hash>/`` and put
first on ``sys.path``. A new bundle replaces the previous one: its ``sys.path`` entry goes, the
modules imported from it are forgotten, so a fixed model is imported fresh on the same workers
(``--retry-failed`` after a fix).
"""

from __future__ import annotations

import contextlib
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

#: One study bundle per cluster at a time: registering a new one replaces the old one.
PLUGIN_NAME = "dask-workspace-study-bundle"
#: Folder under the worker's local directory that holds unpacked bundles.
BUNDLES_DIR = "study-bundles"

#: sys.path entries this process added for bundles (newest last).
_ACTIVE: list[str] = []


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


def activate(folder: pathlib.Path | str) -> None:
    """Puts ``folder`` first on ``sys.path``, replacing the bundle activated before (its modules
    are forgotten, so the next import reads the new code)."""
    path = str(folder)
    for old in list(_ACTIVE):
        if old == path:
            continue
        with contextlib.suppress(ValueError):
            sys.path.remove(old)
        _ACTIVE.remove(old)
        _forget_modules(old)
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    if path not in _ACTIVE:
        _ACTIVE.append(path)
    _forget_modules(path)  # a re-activation imports afresh too
    importlib.invalidate_caches()
    from dask_workspace.tasks import resolve_function

    resolve_function.cache_clear()


def deactivate(folder: pathlib.Path | str) -> None:
    path = str(folder)
    with contextlib.suppress(ValueError):
        sys.path.remove(path)
    if path in _ACTIVE:
        _ACTIVE.remove(path)
    _forget_modules(path)
    importlib.invalidate_caches()


class StudyBundlePlugin(WorkerPlugin):
    """Unpacks the study bundle on each worker and puts it first on ``sys.path``."""

    name = PLUGIN_NAME

    def __init__(self, *, digest: str, data: bytes) -> None:
        self.digest = digest
        self.data = data
        self.folder: str | None = None

    def setup(self, worker: Any) -> None:
        root = pathlib.Path(worker.local_directory) / BUNDLES_DIR
        folder = unpack(data=self.data, digest=self.digest, root=root)
        activate(folder)
        self.folder = str(folder)
        logger.info("study bundle %s at %s", self.digest[:12], folder)

    def teardown(self, worker: Any) -> None:
        if self.folder is not None:
            deactivate(self.folder)


#: Above this, a bundle is probably data that should not travel to every worker.
LARGE_BUNDLE_BYTES = 64 * 2**20


def register_bundle(client: Any, *, bundle: Any) -> None:
    """Registers the bundle with the scheduler: every worker now and later gets it."""
    data = bundle.pack()
    if len(data) > LARGE_BUNDLE_BYTES:
        largest = sorted(bundle.files, key=lambda f: -f.size)[:3]
        logger.warning(
            "the study bundle is %.0f MiB packed (largest: %s); every worker receives it. Leave "
            "data out with a .studyignore, or build an image with it",
            len(data) / 2**20,
            ", ".join(f"{f.path} ({f.size / 2**20:.0f} MiB)" for f in largest),
        )
    plugin = StudyBundlePlugin(digest=bundle.hash, data=data)
    client.register_plugin(plugin, name=PLUGIN_NAME)
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
