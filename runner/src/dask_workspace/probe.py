"""The first replicate durations of a run, pushed by the scheduler as they happen.

Adaptive chunking (``dask_workspace.chunking``) packs nothing until it has measured how long a
replicate takes. Waiting for a whole group to report through its targets makes the start of a
run slow: the first group runs one task per replicate, and no other group is admitted until its
last replicate and its targets are done. On the bundled sir-grid study (30 replicates of a few
milliseconds) that was the largest single loss of utilization.

The auto window waits the same way for its first measured replicate size (until then it
assumes ``auto-window.replicate-memory`` per replicate, 32 MiB, which on the local stack holds a
30-replicate study to one group).

Instead, the run's scheduler plugin (``dask_workspace.diagnostics.RunStatsPlugin``) publishes the
compute time and result size of the run's first ``k`` single-replicate tasks as scheduler events
on a topic of its own, and the runner subscribes to that topic::

    k = min(R, worker threads)    the first replicates run side by side, one per thread
    estimate = the mean of those k durations (what a chunk of n replicates takes is n x the
               mean, the measure the groups' own reports use later; a slower report raises the
               estimate at once)
    replicate bytes = the largest of those k results (the window's memory budget; the group's
                      targets report their measurement later, and the larger one counts)

so packing starts after about one replicate duration instead of one group. Nothing is added to
the graph and no result is gathered: the scheduler already knows each task's compute time and
the size its worker reported for the result.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ProbeRequest:
    """What the scheduler plugin publishes: the compute seconds of the run's first ``count``
    single-replicate simulation tasks, each as one event on ``topic``."""

    topic: str
    count: int


def probe_count(*, replicates: int, threads: int) -> int:
    """How many replicate durations the estimate waits for: one per worker thread (they run
    side by side, so waiting for all of them costs about one replicate), at most R, at least
    one."""
    return max(1, min(replicates, threads))


@dataclass(frozen=True)
class ProbeSample:
    """One replicate as the scheduler saw it: compute seconds and result bytes (-1: unknown)."""

    seconds: float
    nbytes: int


def first_estimate(samples: list[ProbeSample], *, needed: int) -> ProbeSample | None:
    """Per-replicate seconds and bytes from the first samples: None until ``needed`` arrived,
    then their mean duration (a chunk of n replicates takes n x the mean) and the largest
    result (the memory budget sized for the largest holds)."""
    if len(samples) < max(needed, 1):
        return None
    return ProbeSample(
        seconds=sum(s.seconds for s in samples) / len(samples),
        nbytes=max(s.nbytes for s in samples),
    )


class ProbeFeed:
    """Receives the plugin's events on the client's event loop and wakes the runner's loop."""

    def __init__(self, *, request: ProbeRequest, wake: threading.Condition | None) -> None:
        self.request = request
        self._wake = wake
        self._samples: deque[ProbeSample] = deque()
        self._client: Client | None = None

    def subscribe(self, client: Client) -> None:
        """Subscribes before the plugin is registered, so no event is published unheard."""
        self._client = client
        client.subscribe_topic(self.request.topic, self._on_event)

    def _on_event(self, event: Any) -> None:
        # Runs on the client's event loop thread: record, then wake the runner's loop.
        try:
            _, msg = event
            n = max(int(msg.get("replicates", 1)), 1)
            nbytes = int(msg.get("nbytes", -1))
            sample = ProbeSample(
                seconds=float(msg["seconds"]) / n, nbytes=nbytes // n if nbytes >= 0 else -1
            )
        except (TypeError, ValueError, KeyError, AttributeError):  # not ours: ignore
            return
        self._samples.append(sample)
        self.notify()

    def notify(self, *_: Any) -> None:
        """Wakes the runner's loop (also a future's done callback)."""
        if self._wake is not None:
            with self._wake:
                self._wake.notify_all()

    def has_news(self) -> bool:
        return bool(self._samples)

    def drain(self) -> list[ProbeSample]:
        out = []
        while self._samples:
            out.append(self._samples.popleft())
        return out

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.unsubscribe_topic(self.request.topic)
            except Exception:  # the client may be closing already
                logger.debug("could not unsubscribe from %s", self.request.topic, exc_info=True)
            self._client = None
