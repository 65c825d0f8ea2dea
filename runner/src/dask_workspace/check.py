"""``python -m dask_workspace check STUDY``: everything ``run`` would refuse, found in seconds.

Checks, without a cluster:

* the study file's schema (every problem at once, the same messages as ``run``);
* its bundle (the study folder; an unsafe symlink is a problem);
* that the model and the targets import from the bundle, in this process (a missing module names
  both fixes, a missing function is called one);
* unless ``--no-run``: one replicate and the targets of the first group, in this process, with
  their time and peak memory, and the worker memory and window that fit;
* with ``--results``: how many groups that location already holds, and whether it was made with
  the same code (the bundle hash).

Exit 0 when all is well, 2 on any problem. ``--json`` prints one JSON object.
"""

from __future__ import annotations

import importlib
import math
import pathlib
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

from dask_workspace.errors import UsageError

#: Memory of an idle Dask worker process with numpy/pandas loaded (measured ~200 MiB; rounded up).
WORKER_BASELINE_BYTES = 256 * 2**20
#: Dask's default ``distributed.worker.memory.target``: spilling starts above it.
TARGET_FRACTION = 0.6
#: Worker processes per pod by default (``workers.nprocs``).
DEFAULT_NPROCS = 2
MIB = 2**20


@dataclass(kw_only=True)
class CheckReport:
    study_file: str
    study: str | None = None
    bundle_hash: str | None = None
    bundle_files: int | None = None
    bundle_bytes: int | None = None
    groups_total: int | None = None
    groups_persisted: int | None = None
    groups_failed: int | None = None
    hash_matches: bool | None = None
    problems: list[str] = field(default_factory=list)
    replicate_seconds: float | None = None
    targets_seconds: float | None = None
    peak_memory_bytes: int | None = None
    replicate_bytes: int | None = None
    process_memory_bytes: int | None = None
    pod_memory_bytes: int | None = None
    window_groups_per_process: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        d = {"ok": self.ok}
        d.update({k: v for k, v in self.__dict__.items()})
        return d


def fit(*, replicates: int, replicate_bytes: int, peak_bytes: int) -> dict[str, int]:
    """The worker memory and window that fit one group of this study. Pure.

    A worker process holds one group's R replicate results until its targets ran (times 2 for
    copies in flight, like the auto window's safety factor) plus one running task's peak, over
    an idle worker's baseline -- all below the fraction where Dask starts spilling.
    """
    per_group = max(1, replicates * replicate_bytes * 2)
    need = WORKER_BASELINE_BYTES + peak_bytes + per_group
    process = math.ceil(need / TARGET_FRACTION / (64 * MIB)) * 64 * MIB
    return {
        "process_memory_bytes": process,
        "pod_memory_bytes": DEFAULT_NPROCS * process + WORKER_BASELINE_BYTES,
        "window_groups_per_process": max(1, int(0.5 * process // per_group)),
    }


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / MIB:,.0f} MiB" if n >= MIB else f"{n:,d} B"


def _problems(err: UsageError) -> list[str]:
    return [f"{err.source}: {p}" if err.source else str(p) for p in err.problems]


def _activate(study_dir: pathlib.Path) -> None:
    path = str(study_dir)
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    importlib.invalidate_caches()


def _try_first_group(study: Any, report: CheckReport) -> None:
    from dask.sizeof import sizeof

    from dask_workspace.tasks import TaskError, evaluate_target, simulate_replicate

    params = study.groups[0]
    seed = study.seed_for(group_id=0, replicate=0)
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        rep = simulate_replicate(study.model, params, seed)
        report.replicate_seconds = round(time.perf_counter() - t0, 4)
        if isinstance(rep, TaskError):
            report.problems.append(
                f"model: the first group's replicate 0 (seed {seed}) failed: {_last(rep.error)}"
            )
            return
        report.replicate_bytes = int(sizeof(rep))
        t1 = time.perf_counter()
        for name, ref in study.targets.items():
            value = evaluate_target(ref, name, params, rep)
            if isinstance(value, TaskError):
                report.problems.append(
                    f"targets.{name}: failed on the first group's replicate: {_last(value.error)}"
                )
        report.targets_seconds = round(time.perf_counter() - t1, 4)
        report.peak_memory_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if report.problems:
        return
    report.__dict__.update(
        fit(
            replicates=study.replicates,
            replicate_bytes=report.replicate_bytes or 0,
            peak_bytes=report.peak_memory_bytes or 0,
        )
    )


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


def _inspect_results(
    *, uri: str, study: Any, bundle: Any, report: CheckReport, allow_code_change: bool
) -> None:
    import json

    from dask_workspace.identity import compare, refusal
    from dask_workspace.results import ResultStore, open_backend

    try:
        backend = open_backend(uri)
        if not backend.exists("study.json"):
            report.groups_persisted, report.groups_failed = 0, 0
            return
        recorded = json.loads(backend.read_bytes("study.json"))
        if study is not None and recorded.get("fingerprint") != study.fingerprint:
            report.problems.append(
                f"--results: {uri} holds results of another study definition "
                f"({recorded.get('name')!r}); use a new --results location, or the study file "
                "that produced these results"
            )
            return
        entries = ResultStore(backend=backend, study=study).read_entries()
    except UsageError as err:
        report.problems.extend(_problems(err))
        return
    except Exception as exc:
        report.problems.append(f"--results: cannot read {uri}: {type(exc).__name__}: {exc}")
        return
    persisted = {g for e in entries for g in e.groups}
    failed = {g for e in entries for g in e.failed} - persisted
    report.groups_persisted, report.groups_failed = len(persisted), len(failed)
    if bundle is not None:
        code = compare(backend=backend, entries=entries, bundle=bundle)
        report.hash_matches = code.matches
        if code.matches is False and not allow_code_change:
            report.problems.append(
                "--results: " + refusal(code, results=uri, study_dir=str(bundle.study_dir))
            )


def check_study(
    *,
    study_file: str,
    results: str | None = None,
    run_first_group: bool = True,
    allow_code_change: bool = False,
) -> CheckReport:
    """Runs every check; problems are collected in the report, never raised."""
    started = time.perf_counter()
    report = CheckReport(study_file=study_file)
    from dask_workspace.bundle import build_bundle
    from dask_workspace.study import load_study

    study = None
    try:
        study = load_study(study_file)
        report.study = study.name
        report.groups_total = len(study.groups)
    except UsageError as err:
        report.problems.extend(_problems(err))
    bundle = None
    try:
        bundle = build_bundle(study_file=study_file)
        report.bundle_hash = bundle.hash
        report.bundle_files = len(bundle.files)
        report.bundle_bytes = bundle.total_bytes
        _activate(bundle.study_dir)
    except UsageError as err:
        report.problems.extend(_problems(err))
    if study is not None and bundle is not None:
        from dask_workspace.imports import check_study_imports

        imports = check_study_imports(study)
        report.problems.extend(f"{study.source}: {p}" for p in imports)
        if not imports and run_first_group:
            _try_first_group(study, report)
    if results:
        _inspect_results(
            uri=results,
            study=study,
            bundle=bundle,
            report=report,
            allow_code_change=allow_code_change,
        )
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def format_report(report: CheckReport) -> str:
    """The human form: problems first, then what was measured."""
    lines = [f"error: {p}" for p in report.problems]
    if report.study is not None:
        lines.append(f"study {report.study}: {report.groups_total} groups")
    if report.bundle_hash is not None:
        lines.append(
            f"bundle {report.bundle_hash[:12]}: {report.bundle_files} files, "
            f"{report.bundle_bytes:,d} bytes"
        )
    if report.replicate_seconds is not None and report.peak_memory_bytes is not None:
        lines.append(
            f"first group: replicate {report.replicate_seconds:.3f}s, targets "
            f"{report.targets_seconds or 0:.3f}s, peak memory {_mib(report.peak_memory_bytes)}, "
            f"replicate result {_mib(report.replicate_bytes)}"
        )
    if report.process_memory_bytes is not None:
        lines.append(
            f"fits: workers.memoryPerProcess >= {_mib(report.process_memory_bytes)}, "
            f"workers.podMemory >= {_mib(report.pod_memory_bytes)} with {DEFAULT_NPROCS} "
            f"processes per pod; about {report.window_groups_per_process} groups in flight per "
            "process (the auto window sizes itself from measured replicates)"
        )
    if report.groups_persisted is not None:
        same = {True: "same code", False: "other code", None: "no code hash recorded"}
        lines.append(
            f"results: {report.groups_persisted} of {report.groups_total} groups persisted, "
            f"{report.groups_failed} failed ({same[report.hash_matches]})"
        )
    lines.append(f"{'ok' if report.ok else 'problems found'} ({report.seconds:.2f}s)")
    return "\n".join(lines)
