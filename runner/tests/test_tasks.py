"""The worker-side task functions, called directly (they are plain functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from dask_workspace.tasks import (
    TargetValue,
    TaskError,
    check_functions,
    collect_outputs,
    evaluate_target,
    outputs_key,
    parse_group,
    simulate_key,
    simulate_replicate,
    target_key,
)

SYN = "dask_workspace.examples.synthetic"


def test_keys_are_distinct_and_parse_back_to_their_group():
    keys = {
        simulate_key(token="s-1234abcd", group_id=g, replicate=r, attempt=a)
        for g in range(3)
        for r in range(4)
        for a in range(2)
    }
    assert len(keys) == 3 * 4 * 2
    assert (
        parse_group(simulate_key(token="s-x", group_id=12, replicate=3, attempt=1), token="s-x")
        == 12
    )
    assert (
        parse_group(target_key(token="s-x", group_id=5, target_index=0, attempt=0), token="s-x")
        == 5
    )
    assert parse_group(outputs_key(token="s-x", group_id=7, attempt=2), token="s-x") == 7
    assert parse_group(outputs_key(token="s-x", group_id=7, attempt=2), token="other") is None
    assert parse_group(("tuple", 1), token="s-x") is None


def test_simulate_captures_exceptions_and_bad_returns():
    ok = simulate_replicate(f"{SYN}:simulate", {"x": 2.0}, 5)
    assert ok["x"] == 2.0 and ok["seed"] == 5
    err = simulate_replicate(f"{SYN}:simulate", {"x": 1.0, "fail_seed_mod": 5}, 10)
    assert isinstance(err, TaskError) and err.stage == "simulate"
    assert "synthetic failure for seed 10" in err.error
    bad = simulate_replicate(f"{SYN}:duration", {"x": 1.0}, 1)  # returns a float, not a dict
    assert isinstance(bad, TaskError) and "returned float; expected a dict" in bad.error


def test_targets_scalar_dict_and_failure_propagation():
    reps = [simulate_replicate(f"{SYN}:simulate", {"x": 3.0}, s) for s in (1, 2, 3)]
    v = evaluate_target(f"{SYN}:mean_x", "mean_x", {"x": 3.0}, *reps)
    assert isinstance(v, TargetValue) and v.values == {"mean_x": 3.0}
    assert v.replicate_bytes > 0
    d = evaluate_target(f"{SYN}:seeds", "seeds", {"x": 3.0}, *reps)
    assert d.values == {"seeds.replicates": 3.0, "seeds.distinct": 3.0}
    failed = TaskError(stage="simulate", task="seed 9", error="ValueError: boom")
    out = evaluate_target(f"{SYN}:mean_x", "mean_x", {"x": 3.0}, reps[0], failed)
    assert out == TaskError(stage="simulate", task="replicate 1 (seed 9)", error="ValueError: boom")
    raised = evaluate_target(f"{SYN}:mean_x", "mean_x", {"x": 3.0, "fail_target": True}, *reps)
    assert isinstance(raised, TaskError) and raised.stage == "target"
    assert "synthetic target failure" in raised.error


def test_collect_outputs_skips_failed_replicates_and_types_columns():
    reps = [
        {"series": np.array([1.0, 2.0]), "df": pd.DataFrame({"a": [1, 2, 3]}), "s": 4.5},
        TaskError(stage="simulate", task="seed 1", error="x"),
        {"series": np.array([3.0, 4.0]), "df": pd.DataFrame({"a": [4]}), "s": 5.5},
    ]
    types = {"beta": "float64", "tag": "string"}
    tables = collect_outputs(["series", "df", "s"], 4, {"beta": 0.2, "tag": "q"}, types, *reps)
    series = tables["series"].to_pandas()
    assert list(series.columns) == ["group_id", "replicate", "beta", "tag", "time", "value"]
    assert series["replicate"].tolist() == [0, 0, 2, 2]  # replicate 1 failed: skipped
    assert series["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert (series["group_id"] == 4).all() and (series["tag"] == "q").all()
    assert tables["series"].schema.field("beta").type == pa.float64()
    assert tables["df"].num_rows == 4
    assert tables["s"].to_pandas()["value"].tolist() == [4.5, 5.5]
    missing = collect_outputs(["nope"], 0, {}, {}, reps[0])
    assert isinstance(missing, TaskError) and "has no output 'nope'" in missing.error
    two_d = collect_outputs(["m"], 0, {}, {}, {"m": np.zeros((2, 2))})
    assert isinstance(two_d, TaskError) and "shape (2, 2)" in two_d.error


def test_check_functions_reports_what_cannot_be_imported():
    assert check_functions([f"{SYN}:simulate", f"{SYN}:mean_x"]) == {}
    problems = check_functions(["no_such_module_xyz:f", f"{SYN}:nope"])
    assert "ModuleNotFoundError" in problems["no_such_module_xyz:f"]
    assert "AttributeError" in problems[f"{SYN}:nope"]
