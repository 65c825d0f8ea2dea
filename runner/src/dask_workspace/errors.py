"""Domain errors and exit codes of the runner.

Exit codes (contract, see runner/README.md "Summary and exit codes"):

* 0 -- every group of the study is persisted;
* 2 -- bad input: study file, flags, settings or a results URI that cannot be used;
* 3 -- the run finished but some groups failed (they are listed in the failures table);
* 4 -- the cluster cannot run the study (no workers, workers keep dying, scheduler unreachable);
* 5 -- the results storage failed while writing (already persisted groups stay valid);
* 130 / 143 -- interrupted by SIGINT / SIGTERM after persisting every finished group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_FAILED_GROUPS = 3
EXIT_CLUSTER = 4
EXIT_STORAGE = 5
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (a field path or flag) and what to do about it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UsageError(Exception):
    """Bad input (exit 2). Carries every problem found, shown one per line, no traceback."""

    def __init__(self, problems: Sequence[Problem] | str, *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(path="", message=problems)]
        self.problems = list(problems)
        self.source = source
        super().__init__(self.format())

    def format(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(f"{prefix}{p}" for p in self.problems)


class ClusterError(Exception):
    """The cluster cannot run the study (exit 4). The message says what happened and what to
    change (window, workers.nprocs, workers.podMemory)."""


class StorageError(Exception):
    """Writing results failed (exit 5). Groups in earlier part files stay persisted."""
