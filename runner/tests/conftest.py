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
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest
import yaml
from distributed import Client

from dask_workspace.results import read_results

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


def run_modes(
    study: pathlib.Path,
    *,
    scheduler: str,
    tmp_path: pathlib.Path,
    modes: dict[str, Sequence[str]],
    expect: int,
) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Runs the study once per mode (name -> runner flags), each into its own results location
    under ``tmp_path``, checks the exit code and returns each mode's results and summary."""
    out = {}
    for name, args in modes.items():
        res = run_study_cli(
            study,
            scheduler=scheduler,
            results=str(tmp_path / name),
            summary=tmp_path / f"{name}.json",
            args=args,
        )
        assert res.returncode == expect, res.stderr
        out[name] = (read_results(str(tmp_path / name)), res.summary)
    return out


# ---------------------------------------------------------------------------------------------
# Results compared bit for bit, and worker deaths (chunking and packing tests)


def result_frames(uri: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A results location's aggregates and kept outputs, in a stable row order."""
    r = read_results(uri)
    agg = r.aggregates.sort_values(["group_id", "target"]).reset_index(drop=True)
    outs = {
        name: df.sort_values(
            [c for c in ("group_id", "replicate", "index") if c in df]
        ).reset_index(drop=True)
        for name, df in r.outputs.items()
    }
    return agg, outs


def assert_same_results(a: str, b: str) -> None:
    """Two results locations hold the same values, bit for bit."""
    agg_a, out_a = result_frames(a)
    agg_b, out_b = result_frames(b)
    pd.testing.assert_frame_equal(agg_a, agg_b, check_exact=True)
    assert out_a.keys() == out_b.keys()
    for name in out_a:
        pd.testing.assert_frame_equal(out_a[name], out_b[name], check_exact=True)


KILL_ONCE_MODEL = textwrap.dedent(
    """
    import os, pathlib, signal

    def simulate(params, seed):
        # The first replicate of a marked group to run SIGKILLs its worker, once per marker file.
        # The marker is created atomically (O_EXCL): two replicates of the group running at once
        # on two workers must not both see "no marker" and both kill.
        marker = pathlib.Path(params["marker_dir"]) / f"g{params['x']}"
        if params.get("kill_once"):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return {"x": float(params["x"]), "seed": seed}

    def mean_x(replicates, params):
        return sum(r["x"] for r in replicates) / len(replicates)
    """
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    (d / "killonce.py").write_text(KILL_ONCE_MODEL)
    return d


@pytest.fixture(scope="module")
def fragile_cluster(tmp_path_factory, model_dir):
    # allowed-failures=1 as in test_poison: a task that was running on 2 workers that died
    # becomes KilledWorker (Dask's default is 3; the mechanism is the same).
    c = start_cluster(
        tmp_path_factory.mktemp("fragile"),
        pods=(("cp", 2, 1),),
        # worker-saturation 1.0, the workspace's default: a worker holds only the tasks it runs,
        # so a poison task's death does not also count against a task merely queued beside it.
        scheduler_env={
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
        },
        worker_env={"PYTHONPATH": str(model_dir)},
    )
    try:
        yield c
    finally:
        c.stop()


def run_poison(
    cluster: Any,
    tmp_path: pathlib.Path,
    *,
    kills: Sequence[bool],
    replicates: int,
    args: Sequence[str],
) -> tuple[CliResult, str]:
    """A study whose group i kills every worker it runs on when ``kills[i]`` (group i has x =
    i), run on ``cluster`` (a fragile cluster); the run must exit 3. Returns the result and
    the results URI."""
    sets = [{"x": float(i), "kill_worker": k} for i, k in enumerate(kills)]
    study = write_study(tmp_path / "poison.yaml", parameters={"sets": sets}, replicates=replicates)
    uri = str(tmp_path / "res")
    res = run_study_cli(
        study,
        scheduler=cluster.address,
        results=uri,
        summary=tmp_path / "s.json",
        args=args,
        timeout=240,
    )
    assert res.returncode == 3, res.stderr
    return res, uri


def run_kill_once(cluster, model_dir, tmp_path, *, name, groups, kill, replicates, seed, window=1):
    """Runs a study of the kill-once model (``groups`` groups; group ``kill``'s first replicate to
    run SIGKILLs its worker, once) with a window of ``window`` and chunks of up to 10 s. Returns
    the run and the marker folder (``g<kill>`` exists once the kill happened)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    sets = [{"x": i, "kill_once": i == kill, "marker_dir": str(markers)} for i in range(groups)]
    study = tmp_path / f"{name}.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "model": "killonce:simulate",
                "targets": {"mean_x": "killonce:mean_x"},
                "parameters": {"sets": sets},
                "replicates": replicates,
                "seed": seed,
            }
        )
    )
    res = run_study_cli(
        study,
        scheduler=cluster.address,
        results=str(tmp_path / "res"),
        summary=tmp_path / "s.json",
        args=["--window", str(window), "--chunk-seconds", "10"],
        env={"PYTHONPATH": str(model_dir)},
        timeout=240,
    )
    assert res.returncode == 0, res.stderr
    return res, markers
