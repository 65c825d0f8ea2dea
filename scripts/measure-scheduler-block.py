#!/usr/bin/env python
"""Measure how long a real `dask scheduler` stops answering `/health` while a large graph arrives.

The scheduler's liveness probe must not kill a scheduler that is merely busy: a restart loses every
task's state. This script starts a real `dask scheduler` on loopback (no workers: the graph is
only received, not run), polls its dashboard `/health` route every 0.1 s from a thread, as the
kubelet would, and submits graphs of growing size with one `client.map` call each. For each size
it reports the longest time `/health` took to answer (or stayed unanswered) while the graph was
being received, and the submission's own wall time:

    .venv/bin/python scripts/measure-scheduler-block.py                 # 10k, 50k, 200k tasks
    .venv/bin/python scripts/measure-scheduler-block.py --sizes 100000 --json out.json

The numbers feed `SCHEDULER_LIVENESS` in infra/workspace/probes.ts (docs/security.md).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inc(x: int) -> int:
    return x + 1


class HealthPoller(threading.Thread):
    """Polls `/health` and keeps the longest unanswered stretch (seconds)."""

    def __init__(self, *, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.worst = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=600) as r:
                    r.read()
            except OSError:
                pass
            self.worst = max(self.worst, time.monotonic() - t0)
            self.stop.wait(self.interval)


def measure(*, sizes: list[int], interval: float) -> list[dict[str, float]]:
    from distributed import Client

    port, dash = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            f"127.0.0.1:{dash}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[dict[str, float]] = []
    try:
        url = f"http://127.0.0.1:{dash}/health"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "the scheduler did not start within 60 s"
                    ) from None
                time.sleep(0.2)
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            for n in sizes:
                poller = HealthPoller(url=url, interval=interval)
                poller.start()
                t0 = time.monotonic()
                futures = client.map(_inc, range(n), pure=False)
                # The graph is on the scheduler once it reports the tasks.
                while (
                    client.run_on_scheduler(
                        lambda dask_scheduler: len(dask_scheduler.tasks)
                    )
                    < n
                ):
                    time.sleep(0.1)
                submit = time.monotonic() - t0
                time.sleep(max(1.0, interval * 5))
                poller.stop.set()
                poller.join()
                rows.append(
                    {
                        "tasks": n,
                        "submit_seconds": submit,
                        "worst_health_seconds": poller.worst,
                    }
                )
                print(
                    f"{n:>8} tasks: submitted in {submit:6.2f} s, /health worst {poller.worst:6.2f} s",
                    flush=True,
                )
                client.cancel(futures)
                del futures
                time.sleep(2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="10000,50000,200000", help="comma-separated task counts"
    )
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between /health polls"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = measure(
        sizes=[int(s) for s in args.sizes.split(",")], interval=args.interval
    )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
