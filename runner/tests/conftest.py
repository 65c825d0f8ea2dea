"""Real Dask clusters for the runner's tests: ``dask scheduler`` and ``dask worker`` processes
started from the project's .venv (never a mock of Dask), plus helpers to run the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from distributed import Client

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
DASK = str(BIN / "dask")
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@dataclass
class DaskCluster:
    """A scheduler and worker "pods" (one ``dask worker`` process tree each)."""

    address: str
    scheduler: subprocess.Popen[Any]
    pods: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    log_dir: pathlib.Path | None = None

    def client(self) -> Client:
        return Client(self.address, set_as_default=False, timeout=30)

    def add_pod(
        self,
        name: str,
        *,
        nworkers: int = 2,
        nthreads: int = 2,
        memory_limit: str = "1GiB",
        env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        assert self.log_dir is not None
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 -- closed with the process
        self.pods[name] = subprocess.Popen(
            [
                DASK,
                "worker",
                self.address,
                "--nworkers",
                str(nworkers),
                "--nthreads",
                str(nthreads),
                "--memory-limit",
                memory_limit,
                "--name",
                name,
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(env),
            start_new_session=True,
        )

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        with self.client() as c:  # connecting also waits for the scheduler to listen
            if n > 0:
                c.wait_for_workers(n, timeout=timeout)

    def worker_pids(self) -> dict[str, int]:
        with self.client() as c:
            return c.run(os.getpid)

    def stop(self) -> None:
        procs = [*self.pods.values(), self.scheduler]
        for p in procs:
            _kill_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(p, signal.SIGKILL)
                p.wait(timeout=5)


def start_cluster(
    log_dir: pathlib.Path,
    *,
    pods: Sequence[tuple[str, int, int]] = (("pod", 2, 2),),
    memory_limit: str = "1GiB",
    scheduler_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    dashboard_port: int | None = None,
) -> DaskCluster:
    """Starts ``dask scheduler`` and one ``dask worker`` per (name, nworkers, nthreads)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(log_dir / "scheduler.log", "wb")  # noqa: SIM115 -- closed with the process
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
        + (
            ["--no-dashboard"]
            if dashboard_port is None
            else ["--dashboard-address", f"127.0.0.1:{dashboard_port}"]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(scheduler_env),
        start_new_session=True,
    )
    cluster = DaskCluster(address=address, scheduler=scheduler, log_dir=log_dir)
    try:
        for name, nworkers, nthreads in pods:
            cluster.add_pod(
                name,
                nworkers=nworkers,
                nthreads=nthreads,
                memory_limit=memory_limit,
                env=worker_env,
            )
        cluster.wait_for_workers(sum(n for _, n, _ in pods))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A shared cluster: one pod of 2 worker processes x 2 threads."""
    c = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.stop()


# ---------------------------------------------------------------------------------------------
# Studies and the CLI


def write_study(path: pathlib.Path, **fields: Any) -> pathlib.Path:
    doc = {
        "name": "syn",
        "model": "dask_workspace.examples.synthetic:simulate",
        "targets": {
            "mean_x": "dask_workspace.examples.synthetic:mean_x",
            "seeds": "dask_workspace.examples.synthetic:seeds",
        },
        "replicates": 3,
        "seed": 7,
    }
    doc.update(fields)
    # The study gets a folder of its own (its bundle): summaries and other files the tests write
    # beside ``path`` must not change the study's code hash between runs.
    folder = path.parent / f"{path.stem}-study"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / path.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any] | None


def runner_command(
    study: pathlib.Path, *, scheduler: str, results: str, summary: pathlib.Path | None, args=()
) -> list[str]:
    cmd = [PYTHON, "-m", "dask_workspace", "run", str(study), "--scheduler", scheduler]
    cmd += ["--results", results]
    if summary is not None:
        cmd += ["--summary", str(summary)]
    return cmd + list(args)


def run_cli(
    args: Sequence[str], *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "dask_workspace", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(env),
        cwd=ROOT,
    )


def run_study_cli(
    study: pathlib.Path,
    *,
    scheduler: str,
    results: str,
    summary: pathlib.Path | None = None,
    args: Sequence[str] = (),
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> CliResult:
    cmd = runner_command(study, scheduler=scheduler, results=results, summary=summary, args=args)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=_env(env), cwd=ROOT
    )
    data = None
    if summary is not None and summary.exists():
        data = json.loads(summary.read_text())
    return CliResult(proc.returncode, proc.stdout, proc.stderr, data)
