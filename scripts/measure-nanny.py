#!/usr/bin/env python
"""Measure the memory a `dask worker` pod needs besides its worker processes' limits.

A worker pod's memory cgroup holds the nanny host process (`dask worker` itself, running one
Nanny object per worker process), its helper processes (multiprocessing's resource tracker) and
the worker processes. Only the worker processes are limited by `--memory-limit`; everything else
must fit in the pod's *headroom*. This script measures it for the pinned distributed:

    .venv/bin/python scripts/measure-nanny.py            # N = 1, 2, 4, 8
    .venv/bin/python scripts/measure-nanny.py --nworkers 1,2 --settle 3 --json out.json

For each N it starts a real `dask scheduler` and `dask worker --nworkers N --nthreads 1
--memory-limit <4 GiB in bytes>` (the same flags infra/dask.ts renders), waits until the N
workers are connected and idle, samples the process tree with psutil for a few seconds and keeps
the maximum of each figure:

- host: the `dask worker` process (RSS, USS, PSS);
- helpers: every other process of the tree that is not a worker process or under one;
- worker: the largest idle worker process (RSS) -- the floor of any useful memory limit.

It also measures how fast one process can grow its RSS (numpy, first touch of fresh pages), i.e.
how far a worker can overshoot between two nanny memory checks (every 100 ms).

The numbers feed `minHeadroom()` in infra/memory.ts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
DASK = ROOT / ".venv" / "bin" / "dask"
PYTHON = ROOT / ".venv" / "bin" / "python"
#: Large on purpose: the limit must not influence the idle footprint being measured.
MEMORY_LIMIT_BYTES = 4 * 1024 * MiB


@dataclass
class Row:
    """One measurement, all sizes in MiB (maxima over the sampling period)."""

    nworkers: int
    host_rss: float
    host_uss: float
    host_pss: float
    helpers: int
    helpers_rss: float
    helpers_pss: float
    #: host + helpers: what the headroom must hold before any overshoot.
    overhead_rss: float
    overhead_pss: float
    worker_rss_max: float
    worker_pss_max: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_workers(*, address: str, n: int, timeout: float) -> list[int]:
    """Blocks until `n` workers are connected; returns their process ids."""
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)
        # Let start-up allocations settle so idle figures are not start-up peaks.
        time.sleep(1.0)
        pids = client.run(os.getpid)
        return sorted(int(p) for p in pids.values())


def sample(*, host: psutil.Process, worker_pids: list[int]) -> dict[str, float]:
    worker_set = set(worker_pids)
    tree = host.children(recursive=True)
    under_workers: set[int] = set(worker_set)
    for pid in worker_pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            under_workers.update(c.pid for c in psutil.Process(pid).children(recursive=True))
    helpers = [p for p in tree if p.pid not in under_workers]
    host_info = host.memory_full_info()
    helper_infos = [p.memory_full_info() for p in helpers]
    worker_infos = [psutil.Process(pid).memory_full_info() for pid in worker_pids]
    return {
        "host_rss": host_info.rss / MiB,
        "host_uss": host_info.uss / MiB,
        "host_pss": host_info.pss / MiB,
        "helpers": len(helpers),
        "helpers_rss": sum(i.rss for i in helper_infos) / MiB,
        "helpers_pss": sum(i.pss for i in helper_infos) / MiB,
        "worker_rss_max": max(i.rss for i in worker_infos) / MiB,
        "worker_pss_max": max(i.pss for i in worker_infos) / MiB,
    }


def measure(*, nworkers: int, settle: float, timeout: float) -> Row:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(os.devnull, "w")  # noqa: SIM115 - closed in finally
    scheduler = subprocess.Popen(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", ":0"],
        stdout=log, stderr=log, env=env, start_new_session=True,
    )  # fmt: skip
    worker = None
    try:
        worker = subprocess.Popen(
            [str(DASK), "worker", address, "--nworkers", str(nworkers), "--nthreads", "1",
             "--memory-limit", str(MEMORY_LIMIT_BYTES), "--name", "measure"],
            stdout=log, stderr=log, env=env, start_new_session=True,
        )  # fmt: skip
        worker_pids = wait_for_workers(address=address, n=nworkers, timeout=timeout)
        host = psutil.Process(worker.pid)
        maxima: dict[str, float] = {}
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            for key, value in sample(host=host, worker_pids=worker_pids).items():
                maxima[key] = max(maxima.get(key, 0.0), value)
            time.sleep(0.25)
        return Row(
            nworkers=nworkers,
            host_rss=maxima["host_rss"],
            host_uss=maxima["host_uss"],
            host_pss=maxima["host_pss"],
            helpers=int(maxima["helpers"]),
            helpers_rss=maxima["helpers_rss"],
            helpers_pss=maxima["helpers_pss"],
            overhead_rss=maxima["host_rss"] + maxima["helpers_rss"],
            overhead_pss=maxima["host_pss"] + maxima["helpers_pss"],
            worker_rss_max=maxima["worker_rss_max"],
            worker_pss_max=maxima["worker_pss_max"],
        )
    finally:
        for proc in (worker, scheduler):
            if proc is None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


ALLOC_PROBE = r"""
import time, numpy as np, psutil
proc = psutil.Process()
chunks, rates = [], []
chunk = 16 * 1024 * 1024
for trial in range(3):
    chunks.clear()
    start_rss = proc.memory_info().rss
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.1:
        chunks.append(np.ones(chunk // 8))  # np.ones touches every page
    rates.append((proc.memory_info().rss - start_rss) / (time.perf_counter() - t0))
print(max(rates))
"""


def allocation_rate() -> float:
    """Fastest RSS growth of one process (bytes per second), numpy first-touch allocation."""
    out = subprocess.run(
        [str(PYTHON), "-c", ALLOC_PROBE], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--nworkers", default="1,2,4,8", help="comma-separated worker process counts"
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of sampling per N")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for workers")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rows = []
    for n in (int(x) for x in args.nworkers.split(",")):
        logger.info("measuring --nworkers %s ...", n)
        rows.append(measure(nworkers=n, settle=args.settle, timeout=args.timeout))
    rate = allocation_rate()

    header = (
        f"{'N':>3} {'host RSS':>9} {'host USS':>9} {'host PSS':>9} {'helpers':>8} "
        f"{'help RSS':>9} {'overhead RSS':>13} {'overhead PSS':>13} {'worker RSS':>11}"
    )
    print(header)
    for r in rows:
        print(
            f"{r.nworkers:>3} {r.host_rss:>9.1f} {r.host_uss:>9.1f} {r.host_pss:>9.1f} "
            f"{r.helpers:>8} {r.helpers_rss:>9.1f} {r.overhead_rss:>13.1f} "
            f"{r.overhead_pss:>13.1f} {r.worker_rss_max:>11.1f}"
        )
    print(
        "(MiB; overhead = host + helpers = what headroom must hold; worker = idle worker process)"
    )
    print(
        f"fastest RSS growth of one process: {rate / MiB:.0f} MiB/s "
        f"= {rate / MiB / 10:.0f} MiB per 100 ms nanny tick"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"rows": [asdict(r) for r in rows], "alloc_bytes_per_s": rate}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
