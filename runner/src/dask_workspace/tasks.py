"""The functions that run on the workers, and the task keys that name them.

A group's graph is R ``simulate_replicate`` tasks, one ``evaluate_target`` task per target (each
depends on all R replicates) and, when the study keeps raw outputs, one ``collect_outputs`` task
that turns the replicates' kept outputs into Arrow tables **on the worker**. The runner gathers
only the targets' small values and the collected outputs, once each; simulation results never
travel to the runner.

Exceptions raised by user code are caught here and returned as ``TaskError`` values, so that a
failing model never crashes the run and the runner knows the stage and the replicate that failed.
Dask-level failures (a worker dying under a task, ``KilledWorker``) still surface as erred
futures, which the runner handles separately (retry with new keys).
"""

from __future__ import annotations

import functools
import importlib
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from dask.sizeof import sizeof

#: The column that numbers a kept 1-D output's entries (its time axis).
TIME_COLUMN = "time"

#: Longest error text kept per failure (the end of the traceback is the useful part).
MAX_ERROR_CHARS = 4000


# ---------------------------------------------------------------------------------------------
# Task keys


def simulate_key(*, token: str, group_id: int, replicate: int, attempt: int) -> str:
    """Distinct key per replicate; ``attempt`` changes on a retry so nothing stale is reused."""
    return f"simulate-{token}-g{group_id}-r{replicate}-a{attempt}"


def target_key(*, token: str, group_id: int, target_index: int, attempt: int) -> str:
    return f"target-{token}-g{group_id}-t{target_index}-a{attempt}"


def outputs_key(*, token: str, group_id: int, attempt: int) -> str:
    return f"outputs-{token}-g{group_id}-a{attempt}"


# ``-r3-`` one replicate, ``-t1-`` a target, ``-r0to7-`` a chunk of replicates, ``-r0to7-fused-`` a
# whole group in one task (dask_workspace.chunking), ``-g4to6-packed-`` several whole groups in
# one task (dask_workspace.packing).
_KEY = re.compile(
    r"^(simulate|target|outputs)-(?P<token>.+)-g(?P<group>\d+)(?:to(?P<last>\d+)-packed)?-"
    r"(?:[rt]\d+-|r\d+to\d+-(?:fused-)?)?a\d+$"
)


def parse_groups(key: object, *, token: str) -> range | None:
    """The group ids of one of this study's task keys (several for a pack), or None for any
    other key."""
    if not isinstance(key, str):
        return None
    m = _KEY.match(key)
    if m is None or m.group("token") != token:
        return None
    first = int(m.group("group"))
    last = first if m.group("last") is None else int(m.group("last"))
    return range(first, last + 1)


def parse_group(key: object, *, token: str) -> int | None:
    """The (first) group id of one of this study's task keys, or None for any other key."""
    groups = parse_groups(key, token=token)
    return None if groups is None else groups.start


def key_stage(key: str) -> str:
    """``simulate`` / ``target`` / ``outputs`` from a task key (for failure records)."""
    return key.split("-", 1)[0]


# ---------------------------------------------------------------------------------------------
# Results passed between tasks and back to the runner


@dataclass(frozen=True)
class TaskError:
    """A user function raised (or returned something unusable)."""

    stage: str
    task: str
    error: str


@dataclass(frozen=True)
class TargetValue:
    """A target's value(s) and the measured size of the replicate results it read.

    ``values`` maps the name in the aggregates table's ``target`` column (``incidence`` for a
    scalar target, ``incidence.rmse`` for key ``rmse`` of a dict-valued one) to the value.
    """

    values: dict[str, float]
    #: ``dask.sizeof`` of the R replicate results: what one group holds in worker memory.
    replicate_bytes: int


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()
    if len(text) > MAX_ERROR_CHARS:
        text = "..." + text[-MAX_ERROR_CHARS:]
    return text


@functools.lru_cache(maxsize=64)
def resolve_function(ref: str) -> Callable[..., Any]:
    """Imports ``module:function`` (dots after the colon walk attributes)."""
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj


def check_functions(refs: Sequence[str]) -> dict[str, str]:
    """Tries to import every reference; returns ref -> error text for the ones that fail.

    Runs on the runner and, through ``Client.run``, on one worker before anything is submitted.
    """
    problems: dict[str, str] = {}
    for ref in refs:
        try:
            resolve_function(ref)
        except Exception as exc:  # any import-time failure is the user's to see
            problems[ref] = f"{type(exc).__name__}: {exc}"
    return problems


# ---------------------------------------------------------------------------------------------
# Worker-side task functions


def simulate_replicate(model: str, params: dict[str, Any], seed: int) -> Any:
    """One replicate: ``model(params, seed)``; a ``TaskError`` if it raised or returned no dict."""
    try:
        result = resolve_function(model)(dict(params), seed)
    except Exception as exc:  # user code: record, never crash the run
        return TaskError(stage="simulate", task=f"seed {seed}", error=_error_text(exc))
    if not isinstance(result, Mapping):
        return TaskError(
            stage="simulate",
            task=f"seed {seed}",
            error=f"{model} returned {type(result).__name__}; expected a dict of named outputs",
        )
    return result


def _first_failure(replicates: Sequence[Any]) -> TaskError | None:
    for r, rep in enumerate(replicates):
        if isinstance(rep, TaskError):
            return TaskError(stage=rep.stage, task=f"replicate {r} ({rep.task})", error=rep.error)
    return None


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real | np.number):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def evaluate_target(
    target: str, name: str, params: dict[str, Any], *replicates: Any
) -> TargetValue | TaskError:
    """``target(replicates, params)`` over a group's R replicates (all must have succeeded)."""
    failed = _first_failure(replicates)
    if failed is not None:
        return failed
    try:
        value = resolve_function(target)(list(replicates), dict(params))
    except Exception as exc:  # user code: record, never crash the run
        return TaskError(stage="target", task=f"target {name}", error=_error_text(exc))
    try:
        if isinstance(value, Mapping):
            values = {f"{name}.{k}": _as_float(v) for k, v in value.items()}
        else:
            values = {name: _as_float(value)}
    except TypeError as exc:
        return TaskError(
            stage="target",
            task=f"target {name}",
            error=f"{target} returned {value!r:.200}: {exc}; "
            "a target returns a float or a dict of floats",
        )
    return TargetValue(values=values, replicate_bytes=int(sizeof(list(replicates))))


_ARROW_TYPES = {
    "float64": pa.float64(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def arrow_type(column_type: str) -> pa.DataType:
    return _ARROW_TYPES[column_type]


def _output_frame(value: Any, *, name: str) -> pd.DataFrame:
    """One replicate's output as rows: a DataFrame as is, a 1-D array (or Series) as
    (``time``, ``value``) rows -- ``time`` is the position 0..n-1 along the array --, a scalar as
    one ``value`` row."""
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    if isinstance(value, pd.Series):
        return pd.DataFrame({TIME_COLUMN: np.arange(len(value)), "value": value.to_numpy()})
    if np.isscalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return pd.DataFrame({"value": [value]})
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(
            f"output {name!r} has shape {arr.shape}; keep 1-D arrays, scalars or DataFrames"
        )
    return pd.DataFrame({TIME_COLUMN: np.arange(len(arr), dtype=np.int64), "value": arr})


def collect_outputs(
    names: Sequence[str],
    group_id: int,
    params: dict[str, Any],
    parameter_types: dict[str, str],
    *replicates: Any,
) -> dict[str, pa.Table] | TaskError:
    """The kept raw outputs of one group as one Arrow table per output name.

    Rows carry ``group_id``, ``replicate`` and the parameters. Failed replicates are skipped
    (their failure is recorded by the targets); a replicate that lacks a kept output fails the
    outputs stage.
    """
    tables: dict[str, pa.Table] = {}
    try:
        for name in names:
            frames = []
            for r, rep in enumerate(replicates):
                if isinstance(rep, TaskError):
                    continue
                if name not in rep:
                    raise KeyError(
                        f"replicate {r} has no output {name!r} (it returned {sorted(rep)!r})"
                    )
                frame = _output_frame(rep[name], name=name)
                clash = set(frame.columns) & ({"group_id", "replicate"} | set(params))
                if clash:
                    raise ValueError(
                        f"output {name!r} has columns {sorted(clash)} that clash with "
                        "group_id/replicate/parameter columns; rename them"
                    )
                frame.insert(0, "replicate", np.full(len(frame), r, dtype=np.int64))
                frames.append(frame)
            if not frames:
                continue
            data = pd.concat(frames, ignore_index=True)
            table = pa.Table.from_pandas(data, preserve_index=False)
            n = table.num_rows
            table = table.add_column(0, "group_id", pa.array(np.full(n, group_id, dtype=np.int64)))
            for i, (p, t) in enumerate(parameter_types.items(), start=2):
                table = table.add_column(i, p, pa.array([params[p]] * n, type=arrow_type(t)))
            tables[name] = table
    except Exception as exc:  # user data: record, never crash the run
        return TaskError(stage="outputs", task="collect outputs", error=_error_text(exc))
    return tables
