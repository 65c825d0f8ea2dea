"""Measures the "paused forever" failure (docs/why.md, failure 4) and the candidate fixes.

One worker pod (a real memory cgroup limited to the pod size) runs ``dask worker --nworkers 2``.
Each task leaks unmanaged memory (``examples/studies/leak/leaky.py``). With Dask's defaults the
workers cross the pause threshold, stop running tasks, never reach the terminate threshold (only a
running task could push them there), and the nanny never restarts them: the run hangs.

Variants (each a fresh scheduler + pod):
- ``defaults``: pause 0.80, terminate 0.95, no lifetime (the users' setup);
- ``lifetime``: ``--lifetime L --lifetime-stagger S --lifetime-restart``;
- ``no-pause``: ``distributed.worker.memory.pause: false`` (the nanny restarts at terminate);
- ``watchdog``: defaults, plus a client-side watchdog that gracefully restarts a worker that has
  been paused for W seconds while its tasks made no progress (what a runner watchdog would do).

Run: ``.venv/bin/python bench/paused_forever.py --out bench/paused-forever.json
--markdown bench/PAUSED-FOREVER.md`` (about 12 minutes; ``--workloads short`` for half).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from distributed import Client, as_completed

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
LEAK_DIR = ROOT / "examples" / "studies" / "leak"
MI = 1 << 20


@dataclass
class Variant:
    """One configuration of the worker pod."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    worker_args: list[str] = field(default_factory=list)
    watchdog_seconds: float | None = None
    #: Restart at once (after one confirming poll) when a paused, idle worker's unmanaged memory
    #: alone is above the pause threshold: spilling managed data can never unpause it.
    watchdog_unmanaged: bool = False


@dataclass
class Outcome:
    """What happened in one variant."""

    variant: str
    tasks: int
    completed: int
    erred: int  # futures that came back as errors (e.g. KilledWorker)
    executions: int  # task starts, including re-runs after a kill
    hung: bool
    wall_seconds: float
    first_pause_seconds: float | None
    paused_worker_seconds: float
    memory_restarts: int
    worker_processes_seen: int
    watchdog_restarts: int
    pod_oom_kills: int
    pod_peak_mib: float
    timeline: list[tuple[float, int, int]]  # (t, completed, paused workers)


def own_memory_cgroup() -> Path:
    """The v1 memory cgroup this process sits in (this harness measures on cgroup v1 hosts)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    raise SystemExit("paused_forever: needs a cgroup v1 memory controller")


def make_pod_cgroup(*, name: str, limit: int) -> Path:
    pod = own_memory_cgroup() / name
    pod.mkdir()
    (pod / "memory.limit_in_bytes").write_text(str(limit))
    memsw = pod / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        memsw.write_text(str(limit))
    return pod


def remove_cgroup(pod: Path) -> None:
    for _ in range(200):
        pids = [int(p) for p in (pod / "cgroup.procs").read_text().split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            pod.rmdir()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"cannot remove {pod}")


def oom_kills(pod: Path) -> int:
    for line in (pod / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def scheduler_state(dask_scheduler) -> dict:  # runs on the scheduler
    return {
        addr: {
            "status": ws.status.name,
            "executing": ws.metrics.get("task_counts", {}).get("executing", 0),
            "unmanaged": ws.memory.unmanaged,
            "limit": ws.memory_limit,
        }
        for addr, ws in dask_scheduler.workers.items()
    }


def counted_leak_task(i: int, *, log: str, leak_mib: int, seconds: float) -> int:
    """leaky.leak_task that first records that it started (to count re-executions)."""
    import leaky  # imported on the worker, from the study folder

    with open(log, "a") as f:
        f.write(f"{i}\n")
    return leaky.leak_task(i, leak_mib=leak_mib, seconds=seconds)


def _tmpdir() -> str:  # runs on the scheduler, whose DASK_TEMPORARY_DIRECTORY is the workdir
    import dask

    return str(dask.config.get("temporary-directory"))


def hopeless(worker: dict, *, pause: float = 0.8) -> bool:
    """Paused by unmanaged memory alone: spilling every result would not unpause the worker.
    (``pause`` is the workers' distributed.worker.memory.pause in these variants.)"""
    return worker["unmanaged"] >= pause * worker["limit"]


async def _recycle(dask_worker) -> None:  # runs on the worker
    await dask_worker.close_gracefully(restart=True, reason="paused-without-progress")


def run_variant(v: Variant, *, workdir: Path, **kw: float) -> Outcome:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    env["PYTHONPATH"] = f"{LEAK_DIR}:{env.get('PYTHONPATH', '')}"
    env["DASK_TEMPORARY_DIRECTORY"] = str(workdir)
    env.update(v.env)
    sched_file = workdir / f"{v.name}-scheduler.json"
    logs = workdir / f"{v.name}"
    logs.mkdir()
    with contextlib.ExitStack() as files:
        sched_log = files.enter_context(open(logs / "scheduler.log", "w"))
        pod_log = files.enter_context(open(logs / "pod-0.log", "w"))
        return _run_variant(
            v, env=env, sched_file=sched_file, sched_log=sched_log, pod_log=pod_log, **kw
        )


def _run_variant(
    v: Variant,
    *,
    env: dict[str, str],
    sched_file: Path,
    sched_log: IO[str],
    pod_log: IO[str],
    tasks: int,
    leak_mib: int,
    seconds: float,
    pod_memory: int,
    per_process: int,
    hang_seconds: float,
) -> Outcome:
    sched = subprocess.Popen(
        [
            "dask",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--scheduler-file",
            str(sched_file),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=sched_log,
        start_new_session=True,
    )
    pod = make_pod_cgroup(name=f"paused-forever-{os.getpid()}-{v.name}", limit=pod_memory)
    worker = None
    try:
        for _ in range(300):
            if sched_file.exists():
                break
            time.sleep(0.1)
        worker_argv = [
            "dask",
            "worker",
            "--scheduler-file",
            str(sched_file),
            "--host",
            "127.0.0.1",
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--memory-limit",
            str(per_process),
            "--name",
            "pod-0",
            "--no-dashboard",
            *v.worker_args,
        ]
        worker = subprocess.Popen(
            [
                "sh",
                "-c",
                'echo $$ > "$1" && shift && exec "$@"',
                "sh",
                str(pod / "cgroup.procs"),
                *worker_argv,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=pod_log,
            start_new_session=True,
        )
        with Client(scheduler_file=str(sched_file)) as client:
            client.wait_for_workers(2, timeout=120)
            return drive(
                client,
                v,
                tasks=tasks,
                leak_mib=leak_mib,
                seconds=seconds,
                hang_seconds=hang_seconds,
                pod=pod,
            )
    finally:
        for p in (worker, sched):
            if p is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        remove_cgroup(pod)


def drive(
    client: Client,
    v: Variant,
    *,
    tasks: int,
    leak_mib: int,
    seconds: float,
    hang_seconds: float,
    pod: Path,
) -> Outcome:
    log = Path(client.run_on_scheduler(_tmpdir)) / f"{v.name}.starts"
    t0 = time.monotonic()
    futures = [
        client.submit(
            counted_leak_task, i, log=str(log), leak_mib=leak_mib, seconds=seconds, pure=False
        )
        for i in range(tasks)
    ]
    ac = as_completed(futures)
    # Release each result as it arrives, as the runner's window does: a held result would be lost
    # with every worker restart and recomputed, which measures failure mode 2, not this one.
    del futures
    completed = 0
    erred = 0
    last_progress = t0
    first_pause: float | None = None
    paused_since: dict[str, float] = {}
    paused_worker_seconds = 0.0
    seen: set[str] = set()
    watchdog_restarts = 0
    timeline: list[tuple[float, int, int]] = []
    last_poll = 0.0
    hung = False
    while completed < tasks:
        for f in ac.next_batch(block=False):
            erred += f.status == "error"
            f.release()
            completed += 1
            last_progress = time.monotonic()
        now = time.monotonic()
        if now - last_poll >= 0.5:
            dt = now - last_poll if last_poll else 0.0
            last_poll = now
            state = client.run_on_scheduler(scheduler_state)
            seen.update(state)
            paused = [a for a, s in state.items() if s["status"] == "paused"]
            paused_worker_seconds += dt * len(paused)
            if paused and first_pause is None:
                first_pause = now - t0
            for a in list(paused_since):
                if a not in paused:
                    del paused_since[a]
            for a in paused:
                # A paused worker still finishing a task is not stuck yet: wait for it.
                if state[a]["executing"]:
                    paused_since.pop(a, None)
                else:
                    paused_since.setdefault(a, now)
            timeline.append((round(now - t0, 2), completed, len(paused)))
            if v.watchdog_seconds is not None:
                stuck = [
                    a
                    for a, since in paused_since.items()
                    if now - since >= v.watchdog_seconds
                    or (v.watchdog_unmanaged and now - since >= 0.4 and hopeless(state[a]))
                ]
                for a in stuck:
                    since = paused_since[a]
                    logger.info("watchdog: %s paused and idle %.0fs; restarting", a, now - since)
                    # The same graceful path as --lifetime: retire (move data), then the nanny
                    # starts a fresh process.
                    client.run(_recycle, workers=[a], wait=False)
                    watchdog_restarts += 1
                    del paused_since[a]
        if now - last_progress > hang_seconds:
            hung = True
            break
        time.sleep(0.05)
    wall = time.monotonic() - t0
    restarts = len(client.get_events("worker-restart-memory"))
    ac.clear()
    starts = len(log.read_text().split()) if log.exists() else 0
    peak = int((pod / "memory.max_usage_in_bytes").read_text()) / MI
    return Outcome(
        variant=v.name,
        tasks=tasks,
        completed=completed,
        erred=erred,
        executions=starts,
        hung=hung,
        wall_seconds=round(wall, 1),
        first_pause_seconds=None if first_pause is None else round(first_pause, 1),
        paused_worker_seconds=round(paused_worker_seconds, 1),
        memory_restarts=restarts,
        worker_processes_seen=len(seen),
        watchdog_restarts=watchdog_restarts,
        pod_oom_kills=oom_kills(pod),
        pod_peak_mib=round(peak, 1),
        timeline=timeline,
    )


#: Workloads measured by default: many short tasks, and fewer 1-second tasks.
WORKLOADS = {
    "short": {"tasks": 120, "seconds": 0.25},
    "long": {"tasks": 60, "seconds": 1.0},
}


def markdown(doc: dict) -> str:
    """The measurement as a Markdown section (bench/PAUSED-FOREVER.md)."""
    lines = [
        "# Paused forever: measurement",
        "",
        "Generated by `.venv/bin/python bench/paused_forever.py --out bench/paused-forever.json",
        "--markdown bench/PAUSED-FOREVER.md` (raw numbers in the JSON).",
        "",
        "One worker pod in a real memory cgroup (1Gi; `dask worker --nworkers 2 --nthreads 1",
        "--memory-limit 400MiB`, Dask's default thresholds: pause 0.8, terminate 0.95) runs tasks",
        "that each leak unmanaged memory (`examples/studies/leak/leaky.py`), submitted at once;",
        "results are released as they arrive, as the runner's window does. Variants:",
        "",
        "- `defaults`: the users' setup;",
        "- `lifetime`: `--lifetime 30s --lifetime-stagger 5s --lifetime-restart`;",
        "- `no-pause`: `distributed.worker.memory.pause: false` (the nanny restarts at terminate);",
        "- `watchdog`: a client recycles a worker that has been paused with no task executing for",
        "  5 s (`close_gracefully(restart=True)`: retire, then the nanny starts a new process);",
        "- `watchdog-unmanaged`: the same, but at once (paused and idle on two polls 0.5 s apart)",
        "  when the worker's *unmanaged* memory alone is above the pause threshold, i.e. spilling",
        "  every result could not unpause it; otherwise after 30 s.",
        "",
        "`executions` above `tasks` means tasks were killed while running and ran again.",
        "",
    ]
    for run in doc["runs"]:
        p = run["params"]
        lines += [
            f"## {p['tasks']} tasks of {p['seconds']} s, {p['leak_mib']} MiB leaked per task",
            "",
            f"A run with no finished task for {p['hang_seconds']:g} s counts as hung.",
            "",
            "| variant | completed | hung | wall s | paused worker-s | executions "
            "| nanny restarts | recycled by watchdog | pod OOM kills | pod peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for o in run["outcomes"]:
            lines.append(
                f"| {o['variant']} | {o['completed']}/{o['tasks']} | "
                f"{'**yes**' if o['hung'] else 'no'} | {o['wall_seconds']} | "
                f"{o['paused_worker_seconds']} | {o['executions']} | {o['memory_restarts']} | "
                f"{o['watchdog_restarts']} | {o['pod_oom_kills']} | {o['pod_peak_mib']} |"
            )
        lines.append("")
    lines += decision(doc)
    return "\n".join(lines)


def decision(doc: dict) -> list[str]:
    """The decision these numbers support (figures computed from the runs above)."""

    def walls(variant: str) -> str:
        return " and ".join(
            f"{o['wall_seconds']} s"
            for run in doc["runs"]
            for o in run["outcomes"]
            if o["variant"] == variant
        )

    reruns = sum(
        o["executions"] - o["tasks"]
        for run in doc["runs"]
        for o in run["outcomes"]
        if o["variant"] == "no-pause"
    )
    return [
        "## Decision",
        "",
        "- **Not a threshold default.** Moving `pause` closer to `terminate` keeps the hang (a "
        "paused worker runs nothing, so it never reaches terminate). Turning pausing off "
        f"finishes fastest ({walls('no-pause')}), but only because the nanny kills workers in "
        f"the middle of tasks ({reruns} tasks re-ran here): every such kill counts toward "
        "`allowed-failures` (a leaky but healthy group can end as `KilledWorker`, i.e. look "
        "poisonous), shrinks the runner's window (it reacts to memory restarts), and throws "
        "away up to a whole simulation each time; it also removes the brake on managed memory.",
        "- **Not a lifetime default.** `--lifetime` recycles gracefully and ends the hang "
        f"({walls('lifetime')}), but no single duration fits: too short recycles healthy "
        "workers (retirement does not wait for running tasks), too long leaves leaking workers "
        "paused for most of it. `workers.lifetime` stays available (off by default), e.g. for "
        "clients other than the runner.",
        "- **A runner watchdog.** Recycle (retire, then the nanny restarts the process) a worker "
        "that is paused with nothing executing. Waiting a fixed 5 s "
        f"({walls('watchdog')}) already ends the hang without killing a task; recycling at once "
        "when the worker's unmanaged memory alone is above the pause threshold -- spilling can "
        f"never unpause it -- is close to the no-pause speed ({walls('watchdog-unmanaged')}) "
        "with zero tasks killed. Keep the long fallback for workers paused by managed memory, "
        "which spilling can still unpause.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the outcomes as JSON here")
    parser.add_argument("--markdown", type=Path, help="write them as a Markdown report here")
    parser.add_argument("--workloads", default="short,long", help=f"any of {', '.join(WORKLOADS)}")
    parser.add_argument("--leak-mib", type=int, default=16, help="MiB leaked per task")
    parser.add_argument("--pod-mib", type=int, default=1024, help="pod memory limit (cgroup)")
    parser.add_argument("--process-mib", type=int, default=400, help="--memory-limit per process")
    parser.add_argument(
        "--hang-seconds", type=float, default=45, help="no progress this long = hung"
    )
    parser.add_argument("--lifetime", default="30s", help="--lifetime of the lifetime variant")
    parser.add_argument(
        "--stagger", default="5s", help="--lifetime-stagger of the lifetime variant"
    )
    parser.add_argument(
        "--watchdog-seconds", type=float, default=5, help="paused-without-progress limit"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs (printed at the end)")
    parser.add_argument(
        "--variants", default="defaults,lifetime,no-pause,watchdog,watchdog-unmanaged"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(LEAK_DIR))
    variants = {
        "defaults": Variant("defaults"),
        "lifetime": Variant(
            "lifetime",
            worker_args=[
                "--lifetime",
                args.lifetime,
                "--lifetime-stagger",
                args.stagger,
                "--lifetime-restart",
            ],
        ),
        "no-pause": Variant("no-pause", env={"DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "False"}),
        "watchdog": Variant("watchdog", watchdog_seconds=args.watchdog_seconds),
        "watchdog-unmanaged": Variant(
            "watchdog-unmanaged", watchdog_seconds=30, watchdog_unmanaged=True
        ),
    }
    runs = []
    workdir = Path(tempfile.mkdtemp(prefix="paused-forever-"))
    try:
        for workload in args.workloads.split(","):
            w = WORKLOADS[workload]
            outcomes = []
            wdir = workdir / workload
            wdir.mkdir()
            for name in args.variants.split(","):
                o = run_variant(
                    variants[name],
                    tasks=w["tasks"],
                    leak_mib=args.leak_mib,
                    seconds=w["seconds"],
                    pod_memory=args.pod_mib * MI,
                    per_process=args.process_mib * MI,
                    hang_seconds=args.hang_seconds,
                    workdir=wdir,
                )
                d = asdict(o)
                print(json.dumps({k: d[k] for k in d if k != "timeline"}), flush=True)
                outcomes.append(d)
            params = {k: v for k, v in vars(args).items() if k not in ("out", "markdown", "keep")}
            runs.append({"params": {**params, **w, "workload": workload}, "outcomes": outcomes})
    finally:
        if args.keep:
            print(f"logs kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    doc = {"runs": runs}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
