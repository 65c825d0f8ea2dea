"""``--retry-failed``: run the groups this location recorded as failed again, with today's code.

A failed group stays failed on a results location until a run with ``--retry-failed`` runs it
again. The new attempt is committed like any group; ``read_results`` then counts only each
group's latest attempt, so the aggregates hold every group once, and the failures table keeps
the old rows (``failure_history``, ``retried`` = True) while ``failures`` shows only what is
still unresolved.

Pure functions: what to run, and the lines that tell the user where they stand.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from dask_workspace.results import ResumeState

RETRY_FLAG = "--retry-failed"


def plan(resume: ResumeState, *, retry_failed: bool) -> ResumeState:
    """The resume state the run works from: with ``retry_failed`` the failed groups are not
    done (they run again); without it they are final."""
    if not retry_failed:
        return resume
    return ResumeState(persisted=resume.persisted, failed=frozenset(), parts=resume.parts)


def resume_line(resume: ResumeState, *, total: int, results: str, retry_failed: bool) -> str | None:
    """The log line at start (same counts as the summary's groups_persisted / groups_failed)."""
    persisted, failed = len(resume.persisted), len(resume.failed)
    if not persisted and not failed:
        return None
    line = f"resuming {results}: {persisted} of {total} groups persisted, {failed} failed"
    if failed and retry_failed:
        return f"{line}; running the {failed} failed groups again ({RETRY_FLAG})"
    if failed:
        return f"{line} (kept as failed; {RETRY_FLAG} runs them again)"
    return line


def nothing_to_do(*, failed: int) -> str:
    """The message when every group of the study is already in the results."""
    if failed:
        return (
            f"nothing to do: every group is already in the results, {failed} of them failed; "
            f"{RETRY_FLAG} runs those again"
        )
    return "nothing to do: every group is already in the results"


def format_params(params: Mapping[str, Any]) -> str:
    """``beta=0.2, gamma=0.1`` for messages."""
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in params.items())


def retry_command(argv: Sequence[str]) -> str:
    """The exact command to run the failed groups again: this run's command plus
    ``--retry-failed`` (once)."""
    args = [a for a in argv if a != RETRY_FLAG]
    return shlex.join(["python", "-m", "dask_workspace", *args, RETRY_FLAG])


def read_failures_snippet(results: str) -> str:
    return (
        'python -c "from dask_workspace.results import read_results; '
        f'print(read_results({results!r}).failures)"'
    )


def failure_hint(*, results: str, argv: Sequence[str] | None) -> str:
    """What to do after a run with failures: read them, fix, retry."""
    lines = [f"read the failures: {read_failures_snippet(results)}"]
    if argv:
        lines.append(f"after fixing the model, run the failed groups again: {retry_command(argv)}")
    else:
        lines.append(f"after fixing the model, rerun the same command with {RETRY_FLAG}")
    return "\n".join(lines)
