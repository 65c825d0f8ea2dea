"""Study bundles: the study file plus the folder it sits in, so a study's own code travels.

A bundle is every file below the study file's folder ("study folder"), except:

* names starting with ``.`` (hidden files and folders, ``.studyignore`` itself included),
  ``__pycache__`` folders, ``*.pyc`` / ``*.pyo`` files, ``node_modules`` and ``results``
  folders -- the default list in ``bundle-ignore.txt`` beside this module, a data file that the
  Pulumi program reads too;
* any folder that holds a results location of ours (``study.json`` beside a ``manifest/``
  folder);
* what the study folder's ``.studyignore`` names: one fnmatch pattern per line (``*``, ``?``,
  ``[..]``), ``#`` comments and blank lines ignored. A pattern without ``/`` matches the name of
  a file or folder at any depth; a pattern with ``/`` matches the path from the study folder (a
  leading ``/`` is dropped); a trailing ``/`` matches folders only. A skipped folder is skipped
  with everything below it.

Symlinks are followed only while they stay inside the study folder.

The bundle's hash is the study's code identity: sha256 over ``relpath \\0 sha256(content) \\n``
for every selected file, sorted by relative POSIX path (bytewise on UTF-8). Users see its first
12 hex digits.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import os
import pathlib
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dask_workspace.errors import Problem, UsageError

logger = logging.getLogger(__name__)

#: The default skip list, read by this module and by the Pulumi program (infra/).
DEFAULT_IGNORE_FILE = pathlib.Path(__file__).with_name("bundle-ignore.txt")
#: The per-study ignore file, in the study folder.
STUDY_IGNORE_FILE = ".studyignore"
#: Folder names never bundled, whatever the ignore files say.
ALWAYS_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "results"})
#: How many hex digits of the hash users see.
SHORT_HASH = 12


def short_hash(value: str | None) -> str:
    """The form users see: the first 12 hex digits (``unknown`` when there is none)."""
    return value[:SHORT_HASH] if value else "unknown"


@dataclass(frozen=True, kw_only=True)
class IgnoreRule:
    """One compiled ignore pattern."""

    pattern: str
    #: Matches the path from the study folder (True) or the name (False).
    anchored: bool
    #: A trailing ``/``: folders only.
    dir_only: bool
    regex: re.Pattern[str]


def parse_ignore(text: str) -> list[IgnoreRule]:
    """The rules of an ignore file's text (one pattern a line; ``#`` comments, blanks skipped)."""
    rules: list[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        if anchored:
            line = line.lstrip("/")
        if not line:
            continue
        rules.append(
            IgnoreRule(
                pattern=pattern,
                anchored=anchored,
                dir_only=dir_only,
                regex=re.compile(fnmatch.translate(line)),
            )
        )
    return rules


def is_ignored(rules: Sequence[IgnoreRule], *, rel: str, is_dir: bool) -> bool:
    """Whether ``rules`` skip the entry at relative POSIX path ``rel``."""
    name = rel.rsplit("/", 1)[-1]
    return any(
        (not r.dir_only or is_dir) and r.regex.match(rel if r.anchored else name) is not None
        for r in rules
    )


def is_results_location(path: pathlib.Path) -> bool:
    """A results location of ours: ``study.json`` beside a ``manifest/`` folder."""
    return (path / "study.json").is_file() and (path / "manifest").is_dir()


def bundle_hash(entries: Iterable[tuple[str, str]]) -> str:
    """The bundle hash of (relative path, sha256 hex of the content) pairs. Pure."""
    h = hashlib.sha256()
    for rel, digest in sorted(entries, key=lambda e: e[0].encode("utf-8")):
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def changed_files(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Relative paths added, removed or changed between two {path: sha256} listings. Pure."""
    return sorted(
        (set(old) ^ set(new)) | {p for p in set(old) & set(new) if old[p] != new[p]},
        key=lambda p: p.encode("utf-8"),
    )


@dataclass(frozen=True, kw_only=True)
class BundleFile:
    #: Relative POSIX path from the study folder.
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """The selected files of a study folder and their hash."""

    study_dir: pathlib.Path
    #: Sorted by path (bytewise on UTF-8).
    files: tuple[BundleFile, ...]
    hash: str

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def short_hash(self) -> str:
        return short_hash(self.hash)

    def listing(self) -> dict[str, str]:
        """{path: sha256} of every file (what the results record, to name changed files)."""
        return {f.path: f.sha256 for f in self.files}

    def describe(self) -> dict[str, object]:
        """The ``bundle --json`` document."""
        return {
            "study_dir": str(self.study_dir),
            "files": [{"path": f.path, "size": f.size} for f in self.files],
            "total_bytes": self.total_bytes,
            "hash": self.hash,
        }

    def pack(self) -> bytes:
        """The files as one zip archive (fixed timestamps and order: same files, same bytes)."""
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in self.files:
                info = zipfile.ZipInfo(f.path, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, (self.study_dir / f.path).read_bytes())
        return sink.getvalue()


def _read_rules(path: pathlib.Path, *, required: bool) -> list[IgnoreRule]:
    try:
        return parse_ignore(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError([Problem(STUDY_IGNORE_FILE, f"cannot read {path}: {exc}")]) from None


def _inside(target: pathlib.Path, root: pathlib.Path) -> bool:
    return target == root or root in target.parents


def build_bundle(*, study_file: str | os.PathLike[str]) -> Bundle:
    """The bundle of a study file: its folder, recursively, minus the skipped files.

    Raises:
        UsageError: the study file does not exist, a symlink leaves the study folder (or is
            broken), or a file cannot be read.
    """
    study = pathlib.Path(study_file)
    if not study.is_file():
        raise UsageError([Problem("STUDY", f"study file not found: {study}")])
    study_dir = study.resolve().parent
    real_root = pathlib.Path(os.path.realpath(study_dir))
    ignore_file = study_dir / STUDY_IGNORE_FILE
    rules = _read_rules(DEFAULT_IGNORE_FILE, required=True) + _read_rules(
        ignore_file, required=False
    )
    found: list[tuple[str, pathlib.Path]] = []

    def unsafe(abs_path: pathlib.Path, rel: str, why: str) -> UsageError:
        return UsageError(
            [
                Problem(
                    "bundle",
                    f"{abs_path} {why}; a bundle only follows links that stay inside the study "
                    f"folder {study_dir}. Copy the file in, or add {rel!r} to {ignore_file}",
                )
            ]
        )

    def walk(folder: pathlib.Path, rel_dir: str) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            abs_path = folder / name
            if entry.is_symlink():
                if is_ignored(rules, rel=rel, is_dir=False) or is_ignored(
                    rules, rel=rel, is_dir=True
                ):
                    continue  # left out anyway: where it points does not matter
                try:
                    target = pathlib.Path(os.path.realpath(abs_path, strict=True))
                except OSError:
                    raise unsafe(abs_path, rel, "is a broken symlink") from None
                if not _inside(target, real_root):
                    raise unsafe(abs_path, rel, f"is a symlink to {target}, outside")
            is_dir = entry.is_dir(follow_symlinks=True)
            if is_dir:
                if name in ALWAYS_SKIPPED_DIRS or is_ignored(rules, rel=rel, is_dir=True):
                    continue
                if is_results_location(abs_path):
                    continue
                walk(abs_path, rel)
            elif entry.is_file(follow_symlinks=True):
                if name.endswith((".pyc", ".pyo")) or is_ignored(rules, rel=rel, is_dir=False):
                    continue
                found.append((rel, abs_path))

    try:
        walk(study_dir, "")
        files = []
        for rel, abs_path in sorted(found, key=lambda f: f[0].encode("utf-8")):
            data = abs_path.read_bytes()
            files.append(
                BundleFile(path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            )
    except OSError as exc:
        raise UsageError([Problem("bundle", f"cannot read the study folder: {exc}")]) from None
    return Bundle(
        study_dir=study_dir,
        files=tuple(files),
        hash=bundle_hash((f.path, f.sha256) for f in files),
    )


def written_inside(bundle: Bundle, path: str | os.PathLike[str]) -> bool:
    """Whether a file the run writes (``--summary``) would land in the bundle: inside the study
    folder, not hidden, and not left out by the ignore files."""
    target = pathlib.Path(os.path.abspath(path))
    try:
        rel = target.relative_to(bundle.study_dir).as_posix()
    except ValueError:
        return False
    parts = rel.split("/")
    if any(p.startswith(".") or p in ALWAYS_SKIPPED_DIRS for p in parts):
        return False
    rules = _read_rules(DEFAULT_IGNORE_FILE, required=True) + _read_rules(
        bundle.study_dir / STUDY_IGNORE_FILE, required=False
    )
    last = len(parts) - 1
    return not any(
        is_ignored(rules, rel="/".join(parts[: i + 1]), is_dir=i < last) for i in range(last + 1)
    )


def format_listing(bundle: Bundle) -> str:
    """The human form of ``python -m dask_workspace bundle``."""
    lines = [f"study folder {bundle.study_dir}"]
    width = max((len(f.path) for f in bundle.files), default=0)
    lines += [f"  {f.path:<{width}}  {f.size:>10,d} B" for f in bundle.files]
    lines.append(f"{len(bundle.files)} files, {bundle.total_bytes:,d} bytes")
    lines.append(f"hash {bundle.hash} (short {bundle.short_hash})")
    return "\n".join(lines)
