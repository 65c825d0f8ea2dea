"""The scheduler's dashboard during a run: /metrics answers (prometheus_client is installed) and
/json/identity.json neither fails nor puts a traceback in the scheduler's log. Real processes."""

from __future__ import annotations

import pathlib
import subprocess
import time
import urllib.error
import urllib.request

from conftest import ROOT, _env, free_port, runner_command, start_cluster
from studyfolder import make_study_folder

from dask_workspace.dashboard import json_safe


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_json_safe_turns_tuple_keys_into_strings() -> None:
    doc = {"w": {("execute", "simulate", "thread-cpu", "seconds"): 1.5, "n": [{(1, 2): 3}]}}
    assert json_safe(doc) == {"w": {"execute.simulate.thread-cpu.seconds": 1.5, "n": [{"1.2": 3}]}}


def test_metrics_and_identity_during_a_run(tmp_path: pathlib.Path) -> None:
    port = free_port()
    cluster = start_cluster(tmp_path / "cluster", pods=(("pod", 2, 1),), dashboard_port=port)
    base = f"http://127.0.0.1:{port}"
    study = make_study_folder(tmp_path / "study", package="dash_pkg", groups=30, sleep=0.05)
    try:
        status, body = _get(f"{base}/metrics")
        assert status == 200 and b"dask_scheduler_workers" in body
        cmd = runner_command(
            study, scheduler=cluster.address, results=str(tmp_path / "r"), summary=None
        )
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT
        )
        codes = []
        while proc.poll() is None:
            codes.append(_get(f"{base}/json/identity.json")[0])
            time.sleep(0.05)
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert proc.returncode == 0, out
        # After the run, the workers' metrics still carry the tuple-keyed digests.
        codes.append(_get(f"{base}/json/identity.json")[0])
    finally:
        cluster.stop()
    assert len(codes) > 5 and set(codes) == {200}, codes
    log = (tmp_path / "cluster" / "scheduler.log").read_text()
    assert "Uncaught exception GET /json/identity.json" not in log
    # Only the dashboard's tracebacks count: a client or worker closing its connection at the end
    # of the run can log an unrelated StreamClosedError traceback on a loaded machine.
    blocks = log.split("Traceback (most recent call last):")[1:]
    dashboard_tracebacks = [b[:400] for b in blocks if "identity" in b or "/json/" in b]
    assert not dashboard_tracebacks, dashboard_tracebacks
