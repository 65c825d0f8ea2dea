"""Runner settings, resolved through Dask config.

The defaults live in ``workspace.yaml`` beside this module and are registered with
``dask.config.update_defaults`` on import, so every setting can be changed the way Dask users
expect: a YAML file in ``DASK_CONFIG``, or an environment variable such as
``DASK_WORKSPACE__RUNNER__WINDOW=8``. Command-line flags win over both
(``dask.config.get(key, override_with=flag)``).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

from dask_workspace.chunking import Chunking, parse_chunking, parse_fold
from dask_workspace.errors import Problem, UsageError

DEFAULTS_FILE = pathlib.Path(__file__).with_name("workspace.yaml")
PREFIX = "workspace.runner"

Mode = Literal["window", "batch"]


def _register_defaults() -> None:
    with DEFAULTS_FILE.open(encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)


_register_defaults()


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """Resolved runner settings (see workspace.yaml for the meaning of each)."""

    mode: Mode
    #: Fixed window in groups, or None for ``auto``.
    window: int | None
    batch_size: int
    flush_groups: int
    flush_seconds: float
    flush_bytes: int
    progress_interval: float
    tasks_per_thread: float
    memory_fraction: float
    replicate_memory: int
    safety_factor: float
    max_window: int
    group_retries: int
    no_workers_timeout: float
    stall_timeout: float
    connect_timeout: float
    #: Seconds a worker may stay paused and idle before it is recycled; None: never.
    paused_restart_after: float | None
    worker_selector: str
    kube_poll_interval: float
    #: Stop when the first this-many groups of a run fail with the same error; 0: never.
    fail_fast: int = 5
    #: Resume a location whose results were made with other code (another bundle hash).
    allow_code_change: bool = False
    #: Give up after refused connections for this long (outside Kubernetes).
    connect_refused_timeout: float = 3.0
    #: ``auto``: pack short replicates into tasks of about chunk_seconds; ``off``: one each.
    chunking: Chunking = "auto"
    chunk_seconds: float = 0.2
    chunk_fold: bool = True
    #: Pack several whole short groups into one task (dask_workspace.packing).
    chunk_pack_groups: bool = True


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a positive integer")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return value


def parse_window(value: Any) -> int | None:
    """``"auto"`` -> None (size from the cluster), else a positive integer number of groups."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        return _positive_int(value)
    except ValueError:
        raise ValueError(f"must be 'auto' or a positive integer, got {value!r}") from None


def _mode(value: Any) -> Mode:
    if value not in ("window", "batch"):
        raise ValueError(f"must be 'window' or 'batch', got {value!r}")
    return value


def _seconds(value: Any) -> float:
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"must be a duration such as 30s or 5 minutes, got {value!r}") from None
    if seconds is None or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return float(seconds)


def _bytes(value: Any) -> int:
    try:
        n = parse_bytes(value) if isinstance(value, str) else value
    except (ValueError, TypeError):
        raise ValueError(f"must be a size such as 256 MiB, got {value!r}") from None
    if isinstance(n, bool) or not isinstance(n, int | float) or n <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return int(n)


def _optional_seconds(value: Any) -> float | None:
    if value is None or value is False or (isinstance(value, str) and value.lower() == "false"):
        return None
    return _seconds(value)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"must be true or false, got {value!r}")


def _selector(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or " " in value.strip():
        raise ValueError(f"must be a Kubernetes label selector such as a=b,c=d, got {value!r}")
    return value.strip()


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    if math.isinf(value):
        raise ValueError("must be finite")
    return float(value)


# field name -> (dask config key below workspace.runner, parser)
_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "mode": ("mode", _mode),
    "window": ("window", parse_window),
    "batch_size": ("batch-size", _positive_int),
    "flush_groups": ("flush-groups", _positive_int),
    "flush_seconds": ("flush-seconds", _seconds),
    "flush_bytes": ("flush-bytes", _bytes),
    "progress_interval": ("progress-interval", _seconds),
    "tasks_per_thread": ("auto-window.tasks-per-thread", _positive_number),
    "memory_fraction": ("auto-window.memory-fraction", _fraction),
    "replicate_memory": ("auto-window.replicate-memory", _bytes),
    "safety_factor": ("auto-window.safety-factor", _positive_number),
    "max_window": ("auto-window.max", _positive_int),
    "group_retries": ("group-retries", _non_negative_int),
    "no_workers_timeout": ("no-workers-timeout", _seconds),
    "stall_timeout": ("stall-timeout", _seconds),
    "connect_timeout": ("connect-timeout", _seconds),
    "paused_restart_after": ("paused-restart-after", _optional_seconds),
    "worker_selector": ("kubernetes.worker-selector", _selector),
    "kube_poll_interval": ("kubernetes.poll-interval", _seconds),
    "fail_fast": ("fail-fast", _non_negative_int),
    "allow_code_change": ("allow-code-change", _flag),
    "connect_refused_timeout": ("connect-refused-timeout", _seconds),
    "chunking": ("chunking", parse_chunking),
    "chunk_seconds": ("chunk-seconds", _seconds),
    "chunk_fold": ("chunk-fold-targets", parse_fold),
    "chunk_pack_groups": ("chunk-pack-groups", parse_fold),
}


def load_settings(*, overrides: Mapping[str, tuple[str, Any]] | None = None) -> RunnerSettings:
    """Resolves every runner setting from Dask config, with command-line overrides on top.

    Args:
        overrides: field name -> (flag name for messages, value); a None value means "not given".

    Raises:
        UsageError: listing every invalid setting at once, each named by the flag or the Dask
            config key it came from.
    """
    overrides = overrides or {}
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for field, (key, parse) in _FIELDS.items():
        flag, given = overrides.get(field, (None, None))
        full_key = f"{PREFIX}.{key}"
        raw = dask.config.get(full_key, override_with=given)
        source = flag if given is not None and flag else full_key
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            problems.append(Problem(path=source, message=str(exc)))
    if problems:
        raise UsageError(problems)
    return RunnerSettings(**values)
