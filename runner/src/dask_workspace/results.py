"""Results: Parquet part files and the manifest that makes re-runs resume.

Layout under the results URI (a local path or ``az://container/prefix``)::

    study.json                              the study definition (name, fingerprint, ...)
    aggregates/part-<run>-<seq>.parquet     group_id, <parameters>, target, value
    outputs/<name>/part-<run>-<seq>.parquet group_id, replicate, <parameters>, <output columns>
    failures/part-<run>-<seq>.parquet       group_id, <parameters>, stage, task, error
    manifest/<run>-<seq>.json               groups and files of one flush

A dict-valued target ``incidence`` returning ``{"rmse": ..., "bias": ...}`` gives rows with
``target`` = ``incidence.rmse`` and ``incidence.bias``, so the aggregates table keeps its four
kinds of columns whatever the targets return.

Durability protocol (one runner per results URI at a time):

1. Finished groups are buffered and flushed together (every N groups or T seconds).
2. A flush writes its part files first, each atomically (local: temp file, fsync, rename; Blob:
   a blob only becomes visible once its upload is committed).
3. Then it writes the manifest entry naming the groups and files. The manifest entry is the
   commit point: a group is persisted exactly when a manifest entry lists it.
4. On start, part files that no manifest entry names (a crash between 2 and 3) are deleted, and
   the groups listed in the manifest are skipped. A crash therefore loses at most the one
   unflushed buffer, and nothing is ever duplicated.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import posixpath
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dask_workspace.errors import Problem, StorageError, UsageError
from dask_workspace.storage import (  # noqa: F401 -- re-exported: the results API
    Backend,
    FsspecBackend,
    LocalBackend,
    ManifestEntry,
    open_backend,
    read_manifest,
)
from dask_workspace.study import Study
from dask_workspace.tasks import arrow_type

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
TABLES = ("aggregates", "failures")


# ---------------------------------------------------------------------------------------------
# Records and tables


@dataclass(frozen=True)
class Failure:
    stage: str
    task: str
    error: str


@dataclass
class GroupRecord:
    """What one finished group contributes to the results."""

    group_id: int
    params: dict[str, Any]
    #: aggregates-table target name -> value; empty when the group failed.
    values: dict[str, float] = field(default_factory=dict)
    failure: Failure | None = None
    outputs: dict[str, pa.Table] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.outputs.values())


def _param_arrays(records: Sequence[GroupRecord], study: Study, repeat: Sequence[int]) -> dict:
    cols: dict[str, pa.Array] = {}
    for p, t in study.parameter_types.items():
        values = [r.params[p] for r, n in zip(records, repeat, strict=True) for _ in range(n)]
        cols[p] = pa.array(values, type=arrow_type(t))
    return cols


def aggregates_table(records: Sequence[GroupRecord], study: Study) -> pa.Table:
    ok = [r for r in records if r.failure is None]
    repeat = [len(r.values) for r in ok]
    data: dict[str, Any] = {
        "group_id": pa.array([r.group_id for r in ok for _ in r.values], type=pa.int64())
    }
    data.update(_param_arrays(ok, study, repeat))
    data["target"] = pa.array([t for r in ok for t in r.values], type=pa.string())
    data["value"] = pa.array([v for r in ok for v in r.values.values()], type=pa.float64())
    return pa.table(data)


def failures_table(records: Sequence[GroupRecord], study: Study) -> pa.Table:
    failed = [r for r in records if r.failure is not None]
    data: dict[str, Any] = {"group_id": pa.array([r.group_id for r in failed], type=pa.int64())}
    data.update(_param_arrays(failed, study, [1] * len(failed)))
    for col in ("stage", "task", "error"):
        data[col] = pa.array([getattr(r.failure, col) for r in failed], type=pa.string())
    return pa.table(data)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


# ---------------------------------------------------------------------------------------------
# The store


@dataclass(frozen=True)
class ResumeState:
    """What a results URI already holds for this study."""

    persisted: frozenset[int]
    failed: frozenset[int]
    parts: int

    @property
    def done(self) -> frozenset[int]:
        return self.persisted | self.failed


class ResultStore:
    """Writes part files and manifest entries for one run of one study."""

    def __init__(self, *, backend: Backend, study: Study) -> None:
        self.backend = backend
        self.study = study
        now = dt.datetime.now(dt.UTC)
        self.run_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        #: The study bundle hash this run records in each manifest entry.
        self.bundle_hash: str | None = None
        #: The committed manifest entries found by ``prepare`` (oldest first).
        self.entries: list[ManifestEntry] = []

    @classmethod
    def open(cls, uri: str, *, study: Study) -> ResultStore:
        return cls(backend=open_backend(uri), study=study)

    # -- start of a run -------------------------------------------------------------------

    def prepare(self) -> ResumeState:
        """Checks the URI holds this study (or nothing), removes uncommitted part files, and
        returns the groups already persisted.

        Raises:
            UsageError: the URI holds a different study, or cannot be read or written.
        """
        where = self.backend.description
        try:
            if self.backend.exists("study.json"):
                recorded = json.loads(self.backend.read_bytes("study.json"))
                if recorded.get("fingerprint") != self.study.fingerprint:
                    raise UsageError(
                        [
                            Problem(
                                "--results",
                                f"{where} holds results of another study definition "
                                f"({recorded.get('name')!r}, fingerprint "
                                f"{str(recorded.get('fingerprint'))[:8]}; this study "
                                f"{self.study.name!r} is {self.study.fingerprint[:8]}). "
                                "Resuming would mix them: use a new --results location, "
                                "or the study file that produced these results.",
                            )
                        ]
                    )
            else:
                self.backend.write_bytes(
                    "study.json", json.dumps(self.study.describe(), indent=2).encode()
                )
            entries = self._read_manifest()
            self._remove_orphans(entries)
            if isinstance(self.backend, LocalBackend):
                # Marks the folder as a results location from the start (study.json beside
                # manifest/): a study bundle never picks it up, even before the first flush.
                (self.backend.root / "manifest").mkdir(parents=True, exist_ok=True)
        except UsageError:
            raise
        except Exception as exc:  # any storage failure: say where and why
            raise UsageError(
                [Problem("--results", f"cannot use {where}: {type(exc).__name__}: {exc}")]
            ) from None
        self.entries = entries
        persisted: set[int] = set()
        failed: set[int] = set()
        for e in entries:
            persisted.update(e.groups)
            failed.update(e.failed)
        return ResumeState(
            persisted=frozenset(persisted),
            failed=frozenset(failed - persisted),
            parts=len(entries),
        )

    def _read_manifest(self) -> list[ManifestEntry]:
        return read_manifest(self.backend)

    def _remove_orphans(self, entries: Iterable[ManifestEntry]) -> None:
        committed = {f for e in entries for f in e.files}
        candidates = (
            self.backend.list_files("aggregates")
            + self.backend.list_files("failures")
            + self.backend.list_files("outputs")
        )
        for rel in candidates:
            if rel not in committed:
                logger.warning(
                    "removing %s: written by a run that stopped before committing it", rel
                )
                self.backend.delete(rel)

    # -- flushing -------------------------------------------------------------------------

    def _write_part(self, rel: str, table: pa.Table) -> None:
        self.backend.write_bytes(rel, _parquet_bytes(table))

    def write(self, records: Sequence[GroupRecord]) -> ManifestEntry:
        """Writes one flush: the part files, then the manifest entry that commits them.

        Raises:
            StorageError: when any write fails (nothing of this flush counts as persisted).
        """
        part = f"{self.run_id}-{self._seq:05d}"
        self._seq += 1
        files: list[str] = []
        try:
            tables: dict[str, pa.Table] = {}
            if any(r.failure is None and r.values for r in records):
                tables["aggregates"] = aggregates_table(records, self.study)
            if any(r.failure is not None for r in records):
                tables["failures"] = failures_table(records, self.study)
            for name in self.study.outputs:
                parts = [r.outputs[name] for r in records if name in r.outputs]
                if parts:
                    tables[f"outputs/{name}"] = pa.concat_tables(
                        parts, promote_options="permissive"
                    )
            files = [f"{prefix}/part-{part}.parquet" for prefix in tables]
            # The part files side by side (each is its own atomic write; the final flush of a
            # run is on its critical path), then the manifest entry that commits them.
            if len(tables) <= 1:
                for rel, table in zip(files, tables.values(), strict=True):
                    self._write_part(rel, table)
            else:
                with ThreadPoolExecutor(max_workers=len(tables)) as pool:
                    for done in [
                        pool.submit(self._write_part, rel, table)
                        for rel, table in zip(files, tables.values(), strict=True)
                    ]:
                        done.result()
            entry = ManifestEntry(
                part=part,
                groups=tuple(sorted(r.group_id for r in records if r.failure is None)),
                failed=tuple(sorted(r.group_id for r in records if r.failure is not None)),
                files=tuple(files),
                bundle=self.bundle_hash,
            )
            doc = {
                "version": MANIFEST_VERSION,
                "part": part,
                "study": self.study.fingerprint,
                "groups": list(entry.groups),
                "failed": list(entry.failed),
                "files": files,
                "bundle": self.bundle_hash,
                "written_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            self.backend.write_bytes(f"manifest/{part}.json", json.dumps(doc).encode())
        except Exception as exc:  # report any storage failure the same way
            raise StorageError(
                f"writing results part {part} to {self.backend.description} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return entry


# ---------------------------------------------------------------------------------------------
# Reading results back


@dataclass
class Results:
    """The committed contents of a results URI.

    Each group counts once: when ``--retry-failed`` ran a failed group again, only its latest
    attempt's rows are in ``aggregates`` and ``outputs``. ``failures`` holds the failures still
    unresolved (one row per failed group, its latest attempt); ``failure_history`` holds every
    failure ever recorded, with ``retried`` True where a later attempt ran the group again.
    """

    study: dict[str, Any]
    aggregates: pd.DataFrame
    failures: pd.DataFrame
    outputs: dict[str, pd.DataFrame]
    persisted: set[int]
    failed: set[int]
    parts: int
    failure_history: pd.DataFrame = field(default_factory=pd.DataFrame)


_ENTRY = "__entry"
_PARAMETER_DTYPES = {"float64": "float64", "int64": "int64", "bool": "bool", "string": "object"}


def _empty_failures(study: Mapping[str, Any]) -> pd.DataFrame:
    """The failures table with its columns and no rows."""
    columns: dict[str, pd.Series] = {"group_id": pd.Series(dtype="int64")}
    for name, kind in dict(study.get("parameters") or {}).items():
        columns[name] = pd.Series(dtype=_PARAMETER_DTYPES.get(kind, "object"))
    for col in ("stage", "task", "error"):
        columns[col] = pd.Series(dtype="object")
    return pd.DataFrame(columns)


def _read_latest(
    backend: Backend, files: Sequence[tuple[int, str]], latest: Mapping[int, int]
) -> pd.DataFrame:
    """The rows of ``files`` (each with the index of the manifest entry that committed it),
    keeping only rows of each group's latest entry. Sorted by group_id (stable)."""
    tables = []
    for index, rel in files:
        table = pq.read_table(io.BytesIO(backend.read_bytes(rel)))
        tables.append(table.append_column(_ENTRY, pa.array([index] * table.num_rows, pa.int64())))
    if not tables:
        return pd.DataFrame()
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    if "group_id" in frame.columns:
        keep = frame["group_id"].map(latest) == frame[_ENTRY]
        frame = frame[keep.to_numpy()]
        frame = frame.sort_values("group_id", kind="stable")
    return frame.drop(columns=[_ENTRY]).reset_index(drop=True)


def read_results(uri: str) -> Results:
    """Reads only what the manifest commits (never a half-written or uncommitted part).

    Aggregates come sorted by ``group_id``; every group counts once (its latest attempt).
    """
    backend = open_backend(uri)
    if not backend.exists("study.json"):
        raise UsageError([Problem("results", f"{backend.description} holds no study results")])
    study = json.loads(backend.read_bytes("study.json"))
    docs = []
    for rel in backend.list_files("manifest"):
        if not rel.endswith(".json") or posixpath.basename(rel).startswith("."):
            continue
        docs.append(json.loads(backend.read_bytes(rel)))
    latest: dict[int, int] = {}
    latest_failed: dict[int, bool] = {}
    files: dict[str, list[tuple[int, str]]] = {}
    for index, doc in enumerate(docs):
        for g in doc["groups"]:
            latest[int(g)], latest_failed[int(g)] = index, False
        for g in doc.get("failed", ()):
            latest[int(g)], latest_failed[int(g)] = index, True
        for f in doc["files"]:
            files.setdefault(posixpath.dirname(f), []).append((index, f))
    persisted = {g for g, failed in latest_failed.items() if not failed}
    failed = {g for g, failed_now in latest_failed.items() if failed_now}
    outputs = {
        d.removeprefix("outputs/"): _read_latest(backend, fs, latest)
        for d, fs in files.items()
        if d.startswith("outputs/")
    }
    failure_files = files.get("failures", [])
    if failure_files:
        unresolved = _read_latest(backend, failure_files, latest)
        history = _failure_history(backend, failure_files, latest)
    else:
        unresolved = _empty_failures(study)
        history = unresolved.assign(retried=pd.Series(dtype="bool"))
    return Results(
        study=study,
        aggregates=_read_latest(backend, files.get("aggregates", []), latest),
        failures=unresolved,
        outputs=outputs,
        persisted=persisted,
        failed=failed,
        parts=len(docs),
        failure_history=history,
    )


def _failure_history(
    backend: Backend, files: Sequence[tuple[int, str]], latest: Mapping[int, int]
) -> pd.DataFrame:
    tables = []
    for index, rel in files:
        table = pq.read_table(io.BytesIO(backend.read_bytes(rel)))
        tables.append(table.append_column(_ENTRY, pa.array([index] * table.num_rows, pa.int64())))
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame["retried"] = (frame["group_id"].map(latest) != frame[_ENTRY]).to_numpy()
    return (
        frame.sort_values("group_id", kind="stable").drop(columns=[_ENTRY]).reset_index(drop=True)
    )
