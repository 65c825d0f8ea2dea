"""Where results live: the storage backends (a local folder, any fsspec file system) and the
manifest entries that commit part files. Light on purpose (no pandas, no pyarrow), so that
``check`` can read a results location quickly; ``dask_workspace.results`` builds on it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import posixpath
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

from dask_workspace.errors import Problem, UsageError

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Storage backends


class Backend(Protocol):
    """The few storage operations the store needs; paths are relative to the results root."""

    description: str

    def write_bytes(self, rel: str, data: bytes) -> None: ...
    def read_bytes(self, rel: str) -> bytes: ...
    def exists(self, rel: str) -> bool: ...
    def list_files(self, rel_dir: str) -> list[str]: ...
    def delete(self, rel: str) -> None: ...


class LocalBackend:
    """A directory on a local (or mounted) file system; writes are temp file + fsync + rename."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.description = str(root)

    def write_bytes(self, rel: str, data: bytes) -> None:
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def list_files(self, rel_dir: str) -> list[str]:
        base = self.root / rel_dir
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)


class FsspecBackend:
    """Any fsspec file system (Azure Blob through adlfs). A blob written with one upload is
    visible only once committed, which makes each write atomic."""

    def __init__(self, fs: Any, root: str, *, description: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.description = description

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(rel), data)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._path(rel))

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._path(rel)))

    def list_files(self, rel_dir: str) -> list[str]:
        base = self._path(rel_dir)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        prefix = self.root + "/"
        return sorted(p[len(prefix) :] for p in found if p.startswith(prefix))

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(rel))


def open_backend(uri: str) -> Backend:
    """A backend for a results URI: a local path (or ``file://``), or ``az://container/prefix``
    (also ``abfs://`` / ``abfss://``) for Azure Blob Storage.

    Azure credentials come from the environment, as adlfs reads them: in the cluster
    ``AZURE_STORAGE_ACCOUNT_NAME`` plus ``DefaultAzureCredential`` (workload identity); for tests
    and Azurite ``AZURE_STORAGE_CONNECTION_STRING``; or ``AZURE_STORAGE_ACCOUNT_KEY``.

    Raises:
        UsageError: unsupported scheme, missing container, no Azure account configured, or a
            local path that is a file.
    """
    if not uri or not uri.strip():
        raise UsageError(
            [Problem("--results", "is empty; give a directory or az://container/prefix")]
        )
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "file", uri
    scheme = scheme.lower()
    if scheme == "file":
        root = pathlib.Path(rest).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise UsageError([Problem("--results", f"{root} is a file; give a directory")])
        return LocalBackend(root)
    if scheme in ("az", "abfs", "abfss"):
        container = rest.split("/", 1)[0].split("@", 1)[0]
        if not container:
            raise UsageError(
                [Problem("--results", f"{uri!r} names no container; use az://container/prefix")]
            )
        try:
            import fsspec

            # A fresh instance: credentials come from the environment of this run.
            fs, path = fsspec.core.url_to_fs(uri, skip_instance_cache=True)
        except (ValueError, ImportError) as exc:
            raise UsageError(
                [
                    Problem(
                        "--results",
                        f"cannot use {uri}: {exc}. Set AZURE_STORAGE_ACCOUNT_NAME (the runner "
                        "then signs in with DefaultAzureCredential) or "
                        "AZURE_STORAGE_CONNECTION_STRING.",
                    )
                ]
            ) from None
        try:
            with warnings.catch_warnings():
                # adlfs warns when the identity may not read container properties (a role
                # scoped to the container): the container exists then, which is all we need.
                warnings.simplefilter("ignore")
                fs.mkdir(container, exist_ok=True)
        except Exception:  # may lack the right to create containers; writes tell
            logger.debug("could not ensure container %s exists", container, exc_info=True)
        return FsspecBackend(fs, path, description=uri)
    raise UsageError(
        [
            Problem(
                "--results",
                f"unsupported scheme {scheme!r} in {uri!r}; use a local path or "
                "az://container/prefix",
            )
        ]
    )


@dataclass(frozen=True)
class ManifestEntry:
    part: str
    groups: tuple[int, ...]
    failed: tuple[int, ...]
    files: tuple[str, ...]
    #: The study bundle hash (code identity) of the run that wrote it; None before bundles.
    bundle: str | None = None


def read_manifest(backend: Backend) -> list[ManifestEntry]:
    """The committed manifest entries of a results location, oldest first (reads only)."""
    entries: list[ManifestEntry] = []
    seen: set[int] = set()
    for rel in backend.list_files("manifest"):
        name = posixpath.basename(rel)
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            doc = json.loads(backend.read_bytes(rel))
            entry = ManifestEntry(
                part=str(doc["part"]),
                groups=tuple(int(g) for g in doc["groups"]),
                failed=tuple(int(g) for g in doc.get("failed", ())),
                files=tuple(str(f) for f in doc["files"]),
                bundle=doc.get("bundle"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            # Never happens with atomic writes; if it does, the entry's groups rerun and its
            # files are treated as uncommitted.
            logger.warning("ignoring unreadable manifest entry %s: %s", rel, exc)
            continue
        # A failed group appears again when --retry-failed ran it again; a persisted group
        # never should.
        dup = seen.intersection(entry.groups + entry.failed)
        if dup:
            logger.warning("manifest %s repeats persisted groups %s", rel, sorted(dup))
        seen.update(entry.groups)
        entries.append(entry)
    return entries
