"""Several studies on one cluster at the same time, each with its own bundle (the stack's
``jobs.<name>`` runner Jobs all use the workspace's one Dask cluster). Real scheduler and worker
processes; every model package exists only in its study folder."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest
import yaml
from conftest import ROOT, DaskCluster, _env, run_study_cli, runner_command, start_cluster
from distributed.diagnostics.plugin import WorkerPlugin

from dask_workspace.cluster_bundles import RECORDS_KEY, claim_on_scheduler, release_on_scheduler
from dask_workspace.distribute import PLUGIN_PREFIX, plugin_name
from dask_workspace.results import read_results

MODEL = '''
"""A test model living in its study folder: x times this bundle's factor. Groups from x=2 on
wait until the gate file exists (the test opens it): the study is still running meanwhile."""
import os
import time

FACTOR = {factor!r}


def simulate(params, seed):
    while params["x"] >= 2 and params["gate"] and not os.path.exists(params["gate"]):
        time.sleep(0.02)
    return {{"x": float(params["x"]) * FACTOR}}


def mean_x(replicates, params):
    return sum(r["x"] for r in replicates) / len(replicates)
'''

# The scheduler and workers run this module's small inspection functions: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ARGS = ["--flush-groups", "1", "--window", "2", "--fail-fast", "0"]


def study_folder(
    folder: pathlib.Path,
    *,
    name: str,
    package: str,
    factor: float,
    groups: int,
    gate: pathlib.Path | None = None,
) -> pathlib.Path:
    """``folder/study.yaml`` of study ``name`` with its model in ``folder/<package>/``; with a
    ``gate``, groups from x=2 on wait for that file."""
    pkg = folder / package
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(textwrap.dedent(MODEL.format(factor=factor)))
    doc: dict[str, Any] = {
        "name": name,
        "model": f"{package}.model:simulate",
        "targets": {"mean_x": f"{package}.model:mean_x"},
        "parameters": {"grid": {"x": list(range(groups)), "gate": [str(gate or "")]}},
        "replicates": 1,
        "seed": 5,
    }
    study = folder / "study.yaml"
    study.write_text(yaml.safe_dump(doc, sort_keys=False))
    return study


class Run:
    """A runner process in the background, its log in a file."""

    def __init__(self, study: pathlib.Path, address: str, results: pathlib.Path) -> None:
        self.results = results
        self.summary = results.parent / f"{results.name}.summary.json"
        self.log_path = results.parent / f"{results.name}.log"
        cmd = runner_command(
            study, scheduler=address, results=str(results), summary=self.summary, args=ARGS
        )
        self._log = open(self.log_path, "w")  # noqa: SIM115 -- closed in wait()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT
        )

    def persisted(self) -> int:
        manifest = self.results / "manifest"
        if not manifest.is_dir():
            return 0
        return sum(len(json.loads(p.read_text())["groups"]) for p in manifest.glob("*.json"))

    def wait_persisted(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while self.persisted() < n:
            assert self.proc.poll() is None, f"the runner ended early:\n{self.log()}"
            assert time.monotonic() < deadline, f"fewer than {n} groups persisted:\n{self.log()}"
            time.sleep(0.05)

    def wait(self, timeout: float = 180) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()


def assert_values(results: pathlib.Path, *, groups: int, factor: float) -> None:
    """Every group persisted once, computed with the code of ``factor``."""
    r = read_results(str(results))
    assert r.persisted == set(range(groups)) and not r.failed
    agg = r.aggregates
    assert sorted(agg.group_id) == list(range(groups))
    assert (agg["value"] == agg["x"] * factor).all(), agg


def _bundle_state(dask_scheduler: Any) -> dict[str, Any]:
    """The bundle plugins the scheduler hands to workers, and the studies of its records."""
    records = dask_scheduler.task_metadata.get(RECORDS_KEY, {})
    return {
        "plugins": sorted(n for n in dask_scheduler.worker_plugins if n.startswith(PLUGIN_PREFIX)),
        "records": sorted(r["study"] for r in records.values()),
    }


def _bundle_paths() -> list[str]:
    return [p for p in sys.path if "study-bundles" in p]


def assert_clean(cluster: DaskCluster) -> None:
    """No bundle plugin, record or bundle folder is left once every runner has finished."""
    with cluster.client() as c:
        deadline = time.monotonic() + 10
        while True:
            state = c.run_on_scheduler(_bundle_state)
            paths = c.run(_bundle_paths)
            clean = state == {"plugins": [], "records": []} and not any(paths.values())
            if clean or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert state == {"plugins": [], "records": []}
    assert not any(paths.values()), paths


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    # 4 threads: the gated groups of one study (window 2) leave 2 threads to the other.
    c = start_cluster(tmp_path_factory.mktemp("together"), pods=(("pod", 2, 2),))
    try:
        yield c
    finally:
        c.stop()


def test_two_studies_with_their_own_bundles_run_at_once(two_workers, tmp_path) -> None:
    gate = tmp_path / "gate"
    alpha = study_folder(
        tmp_path / "alpha", name="alpha", package="alpha_pkg", factor=1.0, groups=12, gate=gate
    )
    beta = study_folder(tmp_path / "beta", name="beta", package="beta_pkg", factor=10.0, groups=6)
    first = Run(alpha, two_workers.address, tmp_path / "res-alpha")
    try:
        first.wait_persisted(2)
        # The second study ships its bundle while the first one's tasks are running.
        second = Run(beta, two_workers.address, tmp_path / "res-beta")
        assert second.wait() == 0, second.log()
        assert first.proc.poll() is None, first.log()
    finally:
        gate.touch()
        code = first.wait()
    assert code == 0, first.log()
    assert_values(tmp_path / "res-alpha", groups=12, factor=1.0)
    assert_values(tmp_path / "res-beta", groups=6, factor=10.0)
    assert_clean(two_workers)


def test_same_study_twice_keeps_its_bundle_until_the_last_run_ends(two_workers, tmp_path) -> None:
    # One study run into two results locations at once: the run that ends first (here stopped
    # by SIGTERM, which persists and cleans up) must not take the bundle away from the other.
    gate = tmp_path / "gate"
    study = study_folder(
        tmp_path / "twin", name="twin", package="twin_pkg", factor=3.0, groups=10, gate=gate
    )
    long = Run(study, two_workers.address, tmp_path / "res-long")
    try:
        long.wait_persisted(2)
        short = Run(study, two_workers.address, tmp_path / "res-short")
        try:
            short.wait_persisted(2)
            short.proc.send_signal(signal.SIGTERM)
        finally:
            assert short.wait() == 143, short.log()
        assert long.proc.poll() is None, long.log()
    finally:
        gate.touch()
        code = long.wait()
    assert code == 0, long.log()
    assert_values(tmp_path / "res-long", groups=10, factor=3.0)
    resumed = run_study_cli(
        study, scheduler=two_workers.address, results=str(tmp_path / "res-short"), args=ARGS
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_values(tmp_path / "res-short", groups=10, factor=3.0)
    assert_clean(two_workers)


def test_two_studies_with_one_module_name_and_other_code_are_refused(two_workers, tmp_path) -> None:
    gate = tmp_path / "gate"
    first = study_folder(
        tmp_path / "a", name="first", package="shared_pkg", factor=1.0, groups=8, gate=gate
    )
    second = study_folder(
        tmp_path / "b", name="second", package="shared_pkg", factor=10.0, groups=4
    )
    running = Run(first, two_workers.address, tmp_path / "res-first")
    try:
        running.wait_persisted(2)
        summary = tmp_path / "refused.json"
        refused = run_study_cli(
            second,
            scheduler=two_workers.address,
            results=str(tmp_path / "res-second"),
            summary=summary,
            args=ARGS,
        )
        assert refused.returncode == 2, refused.stderr
        assert refused.summary is None  # bad input: no run summary
        err = refused.stderr
        assert "'second'" in err and "'first'" in err and "'shared_pkg'" in err, err
        assert "Rename" in err and ".studyignore" in err, err
        assert str(tmp_path / "res-first") in err, err
        # A copy of the running study with other code, into another location: refused too
        # (it would otherwise swap the code under the running one).
        copy = study_folder(
            tmp_path / "copy", name="first", package="shared_pkg", factor=2.0, groups=8
        )
        again = run_study_cli(
            copy, scheduler=two_workers.address, results=str(tmp_path / "res-copy"), args=ARGS
        )
        assert again.returncode == 2, again.stderr
        assert "Wait for that run to end" in again.stderr, again.stderr
        assert running.proc.poll() is None, running.log()
    finally:
        gate.touch()
        code = running.wait()
    # The running study was not disturbed.
    assert code == 0, running.log()
    assert_values(tmp_path / "res-first", groups=8, factor=1.0)
    # Once the first study is done, the second one runs, with its own code.
    after = run_study_cli(
        second, scheduler=two_workers.address, results=str(tmp_path / "res-second"), args=ARGS
    )
    assert after.returncode == 0, after.stderr
    assert_values(tmp_path / "res-second", groups=4, factor=10.0)
    assert_clean(two_workers)


def test_a_crashed_runners_record_does_not_block_the_next_study(two_workers, tmp_path) -> None:
    gate = tmp_path / "gate"
    crashed = study_folder(
        tmp_path / "a", name="crashed", package="stale_pkg", factor=1.0, groups=8, gate=gate
    )
    later = study_folder(tmp_path / "b", name="later", package="stale_pkg", factor=10.0, groups=4)
    run = Run(crashed, two_workers.address, tmp_path / "res-crashed")
    try:
        run.wait_persisted(2)
        run.proc.send_signal(signal.SIGKILL)  # no cleanup at all: record and plugin stay
    finally:
        run.wait()
        gate.touch()  # lets its tasks that were running end
    with two_workers.client() as c:
        state = c.run_on_scheduler(_bundle_state)
    crashed_plugin = plugin_name("crashed", str(tmp_path / "res-crashed"))
    assert state == {"plugins": [crashed_plugin], "records": ["crashed"]}
    # Same module name, other code: the crashed runner's record is stale, not a clash.
    after = run_study_cli(
        later, scheduler=two_workers.address, results=str(tmp_path / "res-later"), args=ARGS
    )
    assert after.returncode == 0, after.stderr
    assert "study 'crashed'" in after.stderr and "no longer running" in after.stderr
    assert_values(tmp_path / "res-later", groups=4, factor=10.0)
    assert_clean(two_workers)


def test_a_bundle_stays_registered_while_another_run_uses_it(two_workers) -> None:
    # Two runs under one plugin (a resume of a location started before the previous run ended):
    # the first release keeps the bundle, the last one unregisters it. Two real clients.
    record = {
        "study": "overlap",
        "results": "/nowhere/overlap",
        "plugin": f"{PLUGIN_PREFIX}-overlap-test",
        "hash": "0" * 64,
        "modules": {"overlap_pkg": "1" * 64},
    }
    with two_workers.client() as one, two_workers.client() as two:
        for c in (one, two):
            owner = {"client": c.id, "host": "test", "pid": 0, "hash": record["hash"]}
            answer = c.run_on_scheduler(claim_on_scheduler, record=record, owner=owner)
            assert answer["clashes"] == []
        # The plugin itself: any worker plugin will do.
        one.register_plugin(WorkerPlugin(), name=record["plugin"])
        assert one.run_on_scheduler(_bundle_state)["plugins"] == [record["plugin"]]
        kept = one.run_on_scheduler(release_on_scheduler, plugin=record["plugin"], client=one.id)
        assert kept == "kept"
        assert one.run_on_scheduler(_bundle_state)["plugins"] == [record["plugin"]]
        last = two.run_on_scheduler(release_on_scheduler, plugin=record["plugin"], client=two.id)
        assert last == "removed"
        assert one.run_on_scheduler(_bundle_state) == {"plugins": [], "records": []}
