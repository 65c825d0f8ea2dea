"""Code identity on resume, --retry-failed after a fix, fail fast, and what the user is told.
Real scheduler and worker processes (the session cluster); the model lives in the study folder."""

from __future__ import annotations

import json
import pathlib
import shlex
import time

import pandas as pd
from conftest import free_port, run_cli, run_study_cli
from studyfolder import make_study_folder, set_bug

from dask_workspace.results import read_results

FAST = ["--flush-groups", "2", "--flush-seconds", "1"]


def test_code_change_is_refused_then_retry_failed_after_the_fix_runs_each_group_once(
    cluster, tmp_path: pathlib.Path
) -> None:
    folder = tmp_path / "study"
    study = make_study_folder(folder, package="retry_pkg", groups=10, bug="odd")
    results, summary = tmp_path / "res", tmp_path / "s.json"
    args = [*FAST, "--fail-fast", "0"]

    first = run_study_cli(
        study, scheduler=cluster.address, results=str(results), summary=summary, args=args
    )
    assert first.returncode == 3, first.stderr
    assert first.summary["groups_persisted"] == 5 and first.summary["groups_failed"] == 5
    # Each failure warning shows the group's parameters.
    assert "group 1 (x=1, sleep=0.0) failed in simulate" in first.stderr
    # The end of the run: how to read the failures, and the exact command to retry.
    assert f"print(read_results('{results}').failures)" in first.stderr
    retry_line = next(
        line
        for line in first.stderr.splitlines()
        if "--retry-failed" in line and " summary {" not in line
    )
    command = retry_line.split("run the failed groups again: ", 1)[1]
    assert shlex.split(command)[:4] == ["python", "-m", "dask_workspace", "run"]
    assert shlex.split(command)[-1] == "--retry-failed"
    failures = read_results(str(results)).failures
    assert sorted(failures.group_id) == [1, 3, 5, 7, 9]
    assert list(failures.columns[:2]) == ["group_id", "x"]

    # Resuming without a fix: the resume line and the summary agree (5 persisted, 5 failed).
    again = run_study_cli(
        study, scheduler=cluster.address, results=str(results), summary=summary, args=args
    )
    assert again.returncode == 3
    assert f"resuming {results}: 5 of 10 groups persisted, 5 failed" in again.stderr
    assert again.summary["groups_persisted"] == 5 and again.summary["groups_failed"] == 5
    assert "--retry-failed runs those again" in again.stderr

    # The fix changes the code: a plain resume is refused, naming both hashes and the file.
    set_bug(folder, package="retry_pkg", bug=None)
    refused = run_study_cli(
        study, scheduler=cluster.address, results=str(results), summary=summary, args=args
    )
    assert refused.returncode == 2
    assert "holds results made with other code" in refused.stderr
    assert "changed files: retry_pkg/model.py" in refused.stderr
    assert "--allow-code-change" in refused.stderr and "new --results" in refused.stderr
    assert refused.summary is None  # bad input: no run summary at all
    assert "groups persisted" not in refused.stderr

    # check says the same before anything starts; with --retry-failed the new code is accepted.
    checked = run_cli(["check", str(study), "--no-run", "--json", "--results", str(results)])
    doc = json.loads(checked.stdout)
    assert checked.returncode == 2 and doc["hash_matches"] is False
    assert (doc["groups_persisted"], doc["groups_failed"]) == (5, 5)
    assert any("other code" in p for p in doc["problems"])
    retry_check = run_cli(
        ["check", str(study), "--no-run", "--json", "--results", str(results), "--retry-failed"]
    )
    assert retry_check.returncode == 0 and json.loads(retry_check.stdout)["ok"]

    # --retry-failed runs the 5 failed groups with the fixed code: every group once, exit 0.
    retried = run_study_cli(
        study,
        scheduler=cluster.address,
        results=str(results),
        summary=summary,
        args=[*args, "--retry-failed"],
    )
    assert retried.returncode == 0, retried.stderr
    assert "running the 5 failed groups again (--retry-failed)" in retried.stderr
    assert retried.summary["groups_persisted"] == 10 and retried.summary["groups_failed"] == 0
    assert retried.summary["groups_run"] == 5
    r = read_results(str(results))
    assert list(r.aggregates.group_id) == sorted(r.aggregates.group_id)
    assert r.aggregates.groupby("group_id").size().to_dict() == {g: 1 for g in range(10)}
    assert (r.aggregates["value"] == r.aggregates["x"]).all()
    assert r.outputs["who"].groupby("group_id").size().to_dict() == {g: 2 for g in range(10)}
    assert r.failed == set() and r.persisted == set(range(10))
    # Only unresolved failures, with the table's columns; the history keeps and marks them.
    assert r.failures.empty and list(r.failures.columns[:2]) == ["group_id", "x"]
    assert sorted(r.failure_history.group_id) == [1, 3, 5, 7, 9]
    assert r.failure_history["retried"].all()

    # And now a resume is complete with nothing to do.
    done = run_study_cli(
        study, scheduler=cluster.address, results=str(results), summary=summary, args=args
    )
    assert done.returncode == 0 and "nothing to do" in done.stderr


def test_allow_code_change_keeps_the_results(cluster, tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "study"
    study = make_study_folder(folder, package="allow_pkg", groups=3)
    results = tmp_path / "res"
    assert run_study_cli(study, scheduler=cluster.address, results=str(results)).returncode == 0
    (folder / "notes.txt").write_text("a note\n")
    refused = run_study_cli(study, scheduler=cluster.address, results=str(results))
    assert refused.returncode == 2 and "changed files: notes.txt" in refused.stderr
    allowed = run_study_cli(
        study, scheduler=cluster.address, results=str(results), args=["--allow-code-change"]
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "nothing to do" in allowed.stderr
    # A .studyignore leaves the note out; the hash then matches the recorded one again.
    (folder / ".studyignore").write_text("notes.txt\n")
    ignored = run_study_cli(study, scheduler=cluster.address, results=str(results))
    assert ignored.returncode == 0, ignored.stderr


def test_fail_fast_stops_a_systematic_bug(cluster, tmp_path: pathlib.Path) -> None:
    study = make_study_folder(tmp_path / "study", package="fastfail_pkg", groups=60, bug="always")
    results, summary = tmp_path / "res", tmp_path / "s.json"
    proc = run_study_cli(
        study,
        scheduler=cluster.address,
        results=str(results),
        summary=summary,
        args=[*FAST, "--window", "2", "--fail-fast", "3"],
    )
    assert proc.returncode == 3, proc.stderr
    s = proc.summary
    assert s["status"] == "failed-fast"
    assert s["groups_failed"] == 3 and s["groups_persisted"] == 0
    # The numbers differ per group (x, seed); the error is the same once they are ignored.
    assert "all failed in simulate with the same error: ValueError: model bug" in proc.stderr
    assert "--retry-failed" in proc.stderr
    assert s["groups_run"] == 3  # the window's other groups were dropped, not run
    assert len(read_results(str(results)).failures) == 3


def test_bad_study_and_check(cluster, tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "study"
    study = make_study_folder(folder, package="check_pkg", groups=4)
    ok = run_cli(["check", str(study), "--json"])
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] and doc["groups_total"] == 4 and doc["problems"] == []
    assert doc["replicate_seconds"] >= 0 and doc["peak_memory_bytes"] > 0
    assert doc["process_memory_bytes"] >= 256 * 2**20
    bundle = json.loads(run_cli(["bundle", str(study), "--json"]).stdout)
    assert doc["bundle_hash"] == bundle["hash"]

    # A location: how much it holds and whether the code matches.
    results = tmp_path / "res"
    assert run_study_cli(study, scheduler=cluster.address, results=str(results)).returncode == 0
    cmd = ["check", str(study), "--no-run", "--json", "--results", str(results)]
    held = json.loads(run_cli(cmd).stdout)
    assert (held["groups_persisted"], held["groups_failed"], held["hash_matches"]) == (4, 0, True)
    assert held["replicate_seconds"] is None  # --no-run

    # A typo in a function name: a missing function, exit 2, the same words as run.
    text = study.read_text().replace("model:simulate", "model:simulat")
    study.write_text(text)
    typo = run_cli(["check", str(study), "--no-run"])
    assert typo.returncode == 2
    assert "model: missing function: check_pkg.model" in typo.stderr
    assert "did you mean simulate" in typo.stderr
    bad = json.loads(run_cli(["check", str(study), "--json", "--results", str(results)]).stdout)
    assert not bad["ok"] and any("another study definition" in p for p in bad["problems"])
    # A missing module names both fixes.
    study.write_text(text.replace("check_pkg.model:simulat", "chek_pkg.model:simulate"))
    missing = run_cli(["check", str(study), "--no-run"])
    assert missing.returncode == 2
    assert "module 'chek_pkg' not found" in missing.stderr
    assert "beside the study file" in missing.stderr and "--requirements" in missing.stderr
    # Schema problems: every one, with its field.
    study.write_text("name: 1bad\nmodel: x\nreplicates: 0\n")
    schema = run_cli(["check", str(study), "--no-run"])
    assert schema.returncode == 2 and "replicates" in schema.stderr and "name" in schema.stderr


def test_unreachable_scheduler_fails_in_seconds_naming_the_address(tmp_path: pathlib.Path) -> None:
    study = make_study_folder(tmp_path / "study", package="unreach_pkg", groups=2)
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = run_study_cli(study, scheduler=address, results=str(tmp_path / "r"), timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 4
    assert f"cannot reach the Dask scheduler at {address}: connection refused" in proc.stderr
    assert took < 15, took


def test_read_results_empty_failures_have_columns(cluster, tmp_path: pathlib.Path) -> None:
    study = make_study_folder(tmp_path / "study", package="cols_pkg", groups=5)
    results = tmp_path / "res"
    assert run_study_cli(study, scheduler=cluster.address, results=str(results)).returncode == 0
    r = read_results(str(results))
    assert list(r.failures.columns) == ["group_id", "x", "sleep", "stage", "task", "error"]
    assert r.failures.empty and r.failures["x"].dtype == "int64"
    assert list(r.aggregates.group_id) == list(range(5))
    pd.testing.assert_index_equal(r.aggregates.index, pd.RangeIndex(5))
