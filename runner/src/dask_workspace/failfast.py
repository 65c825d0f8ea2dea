"""Fail fast: stop a run whose first groups all fail with the same error.

A systematic bug (a typo in the model, a missing data file, a wrong parameter name) fails every
group the same way. Without a stop the run burns the whole study, one group after another.
When the first N groups this run finishes all failed with the same error -- same stage, same
exception type, same message once numbers are ignored -- the run stops with exit 3, the error
and the retry hint. The failed groups are recorded as failed, so ``--retry-failed`` after the
fix runs them again with the rest.

N is ``workspace.runner.fail-fast`` (``--fail-fast N``; 0 turns it off). The default, 5: five
identical failures in a row at the start are all but certain to be one bug, and stopping there
costs five groups; a study whose first groups legitimately fail the same way (and whose later
groups would not) just needs ``--fail-fast 0``. One success among the first N disarms the check
for the rest of the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def last_line(error: str) -> str:
    """The exception line of a traceback text (its last non-blank line)."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def signature(*, stage: str, error: str) -> tuple[str, str, str]:
    """(stage, exception type, message with numbers replaced by N) of a recorded failure."""
    line = last_line(error)
    kind, sep, message = line.partition(": ")
    if not sep or " " in kind.strip():
        kind, message = "", line
    message = _NUMBER.sub("N", _HEX.sub("N", message))
    return stage, kind.strip(), message.strip()


@dataclass
class FailFast:
    """Watches the first ``threshold`` groups of a run. Pure state, no I/O."""

    threshold: int
    seen: int = 0
    armed: bool = True
    first: tuple[str, str, str] | None = None
    first_error: str = ""
    groups: list[int] = field(default_factory=list)

    def observe(self, *, group_id: int, stage: str | None, error: str | None) -> bool:
        """Records one finished group (``stage`` None = it succeeded); True when the run must
        stop now."""
        if self.threshold <= 0 or not self.armed:
            return False
        if stage is None or error is None:
            self.armed = False
            return False
        sig = signature(stage=stage, error=error)
        if self.first is None:
            self.first, self.first_error = sig, error
        elif sig != self.first:
            self.armed = False
            return False
        self.seen += 1
        self.groups.append(group_id)
        if self.seen >= self.threshold:
            self.armed = False
            return True
        return False

    def message(self) -> str:
        stage = self.first[0] if self.first else "?"
        what = last_line(self.first_error)
        return (
            f"stopped early: the first {self.seen} groups of this run (groups "
            f"{', '.join(map(str, self.groups))}) all failed in {stage} with the same error: "
            f"{what}. This looks like a bug in the study's code, not in single groups "
            f"(workspace.runner.fail-fast = {self.threshold}; --fail-fast 0 turns this off)."
        )


class FailFastStop(Exception):  # noqa: N818 -- a stop, not an error of the runner
    """Raised inside the run loop when fail-fast trips."""
