#!/usr/bin/env python
"""Window vs batch on a real local Dask cluster (issue 3's "Done when" figures).

Starts ``dask scheduler`` and one ``dask worker --nworkers 4 --nthreads 2`` (4 processes x
2 threads = 8 slots), then runs a 60-group lognormal study (sigma = 1, R = 8 replicates,
T = 2 targets) through ``python -m dask_workspace run``:

1. window mode, W = 4 groups;
2. batch mode, B = 4 groups (barrier batches), same study, same cluster, same task durations;
3. window mode again with the first run's results URI (resume: must submit 0 tasks).

It checks completeness and correctness of both result sets (every group once; each group's
``mean_x`` equals its own parameter ``x``; 8 distinct seeds per group; window == batch), prints a
table and writes JSON. Utilization is the runner's measured figure: the compute time the
workers reported for the study's tasks / (wall x worker threads), from the scheduler plugin.

    .venv/bin/python bench/runner/bench_window.py [--groups 60] [--median 0.25] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(
    workdir: pathlib.Path, *, nworkers: int, nthreads: int
) -> tuple[str, list]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(workdir / "cluster.log", "wb")  # noqa: SIM115 -- lives as long as the cluster
    common = {"stdout": log, "stderr": subprocess.STDOUT, "start_new_session": True}
    scheduler = subprocess.Popen(
        [
            str(BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        **common,
    )
    workers = subprocess.Popen(
        [
            str(BIN / "dask"),
            "worker",
            address,
            "--nworkers",
            str(nworkers),
            "--nthreads",
            str(nthreads),
            "--memory-limit",
            "2GiB",
            "--name",
            "bench",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ],
        **common,
    )
    from distributed import Client

    with Client(address, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(nworkers, timeout=120)
    return address, [workers, scheduler]


def stop(procs: list) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def write_study(
    path: pathlib.Path, *, groups: int, median: float, sigma: float, reps: int
) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "name": "lognormal",
                "model": "dask_workspace.examples.synthetic:simulate",
                "targets": {
                    "mean_x": "dask_workspace.examples.synthetic:mean_x",
                    "seeds": "dask_workspace.examples.synthetic:seeds",
                },
                "parameters": {
                    "grid": {
                        "x": list(range(groups)),
                        "median_seconds": median,
                        "sigma": sigma,
                    }
                },
                "replicates": reps,
                "seed": 2024,
            },
            sort_keys=False,
        )
    )


def run(
    study: pathlib.Path,
    address: str,
    results: pathlib.Path,
    summary: pathlib.Path,
    *args: str,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "dask_workspace",
        "run",
        str(study),
        "--scheduler",
        address,
        "--results",
        str(results),
        "--summary",
        str(summary),
        "--progress-interval",
        "30",
        *args,
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"runner failed ({proc.returncode}):\n{proc.stderr}")
    data = json.loads(summary.read_text())
    data["process_seconds"] = round(time.monotonic() - started, 2)
    return data


def check(results: pathlib.Path, *, groups: int, reps: int):
    from dask_workspace.results import read_results

    r = read_results(str(results))
    agg = r.aggregates
    mean_x = agg[agg.target == "mean_x"]
    checks = {
        "all_groups_persisted": r.persisted == set(range(groups)) and not r.failed,
        "no_duplicates": not agg.duplicated(["group_id", "target"]).any()
        and len(agg) == groups * 3,
        "targets_match_own_parameters": bool((mean_x["value"] == mean_x["x"]).all()),
        "distinct_seeds_per_group": bool(
            (agg[agg.target == "seeds.distinct"]["value"] == reps).all()
        ),
    }
    return checks, agg.sort_values(["group_id", "target"]).reset_index(drop=True)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--groups", type=int, default=60)
    ap.add_argument("--replicates", type=int, default=8)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--median", type=float, default=0.25, help="median task seconds")
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--nworkers", type=int, default=4)
    ap.add_argument("--nthreads", type=int, default=2)
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=ROOT / "bench/runner/results/window-vs-batch.json",
    )
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-window-") as tmp:
        work = pathlib.Path(tmp)
        # Each study in a folder of its own: its bundle must not take in the summaries and logs
        # written to work/ (they would change its code hash and the resume would be refused).
        (work / "study").mkdir()
        (work / "warm-study").mkdir()
        study = work / "study" / "lognormal.yaml"
        write_study(
            study, groups=a.groups, median=a.median, sigma=a.sigma, reps=a.replicates
        )
        warm = work / "warm-study" / "warm.yaml"
        write_study(warm, groups=2, median=0.01, sigma=0.0, reps=a.replicates)
        address, procs = start_cluster(work, nworkers=a.nworkers, nthreads=a.nthreads)
        try:
            run(
                warm, address, work / "warm", work / "warm.json"
            )  # imports on every worker
            window = run(
                study,
                address,
                work / "window",
                work / "window.json",
                "--mode",
                "window",
                "--window",
                str(a.window),
            )
            batch = run(
                study,
                address,
                work / "batch",
                work / "batch.json",
                "--mode",
                "batch",
                "--batch-size",
                str(a.batch_size),
            )
            resume = run(
                study,
                address,
                work / "window",
                work / "resume.json",
                "--mode",
                "window",
                "--window",
                str(a.window),
            )
        finally:
            stop(procs)
        wchecks, wagg = check(work / "window", groups=a.groups, reps=a.replicates)
        bchecks, bagg = check(work / "batch", groups=a.groups, reps=a.replicates)
    identical = wagg.equals(bagg)

    ratio = window["utilization"] / batch["utilization"]
    rows = [
        (f"window W={a.window}", window),
        (f"batch B={a.batch_size}", batch),
        ("resume (window)", resume),
    ]
    print(
        f"\nlognormal study: {a.groups} groups x (R={a.replicates} + T=2), sigma={a.sigma}, "
        f"median {a.median}s; cluster {a.nworkers} processes x {a.nthreads} threads\n"
    )
    print(
        f"{'run':<18}{'persisted':>10}{'tasks':>8}{'wall s':>9}{'util':>7}"
        f"{'peak groups':>13}{'cluster peak':>14}"
    )
    for name, s in rows:
        util = "-" if s["utilization"] is None else f"{s['utilization']:.3f}"
        print(
            f"{name:<18}{s['groups_persisted']:>10}{s['tasks_submitted']:>8}"
            f"{s['wall_seconds']:>9.1f}{util:>7}{s['peak_inflight_groups']:>13}"
            f"{s.get('peak_cluster_groups')!s:>14}"
        )
    goals = {
        "complete_and_correct": all(wchecks.values()) and all(bchecks.values()),
        "window_equals_batch": bool(identical),
        "window_utilization_ge_0.8": window["utilization"] >= 0.8,
        "window_ge_1.2x_batch": ratio >= 1.2,
        "resume_submits_0_tasks": resume["tasks_submitted"] == 0,
    }
    print(f"\nwindow / batch utilization: {ratio:.2f}x")
    for k, v in goals.items():
        print(f"  {'PASS' if v else 'FAIL'}  {k}")
    report = {
        "command": " ".join([pathlib.Path(sys.executable).name, *sys.argv]),
        "parameters": vars(a) | {"out": str(a.out)},
        "window": window,
        "batch": batch,
        "resume": resume,
        "utilization_ratio": round(ratio, 3),
        "checks": {"window": wchecks, "batch": bchecks},
        "goals": goals,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {a.out}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
