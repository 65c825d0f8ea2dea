"""Results store on a local directory: commit protocol, resume, orphan cleanup."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from dask_workspace.errors import UsageError
from dask_workspace.results import (
    Failure,
    GroupRecord,
    ResultStore,
    open_backend,
    read_results,
)
from dask_workspace.study import build_study


def make_study(seed: int = 1):
    return build_study(
        {
            "name": "r",
            "model": "m:f",
            "targets": {"t": "m:g"},
            "parameters": {"grid": {"a": [0.5, 1.5, 2.5], "k": ["u", "v"]}},
            "replicates": 2,
            "seed": seed,
            "outputs": ["series"],
        }
    )


def record(study, gid, *, fail=False):
    params = study.groups[gid]
    if fail:
        return GroupRecord(
            group_id=gid, params=params, failure=Failure("simulate", "replicate 0", "ValueError")
        )
    table = pa.table({"group_id": [gid, gid], "replicate": [0, 1], "value": [1.0, 2.0]})
    return GroupRecord(
        group_id=gid,
        params=params,
        values={"t": params["a"] * 2, "t.extra": 1.0},
        outputs={"series": table},
    )


def test_write_then_read_back_and_resume(tmp_path):
    s = make_study()
    store = ResultStore.open(str(tmp_path / "res"), study=s)
    assert store.prepare().done == frozenset()
    store.write([record(s, 0), record(s, 1), record(s, 4, fail=True)])
    store.write([record(s, 2)])
    res = read_results(str(tmp_path / "res"))
    assert res.persisted == {0, 1, 2} and res.failed == {4}
    agg = res.aggregates.sort_values(["group_id", "target"])
    assert list(agg.columns) == ["group_id", "a", "k", "target", "value"]
    assert agg[agg.target == "t"].set_index("group_id")["value"].to_dict() == {
        0: 1.0,
        1: 1.0,
        2: 3.0,
    }
    assert res.failures[["group_id", "a", "k", "stage"]].values.tolist() == [
        [4, 2.5, "u", "simulate"]
    ]
    assert len(res.outputs["series"]) == 6
    assert json.loads((tmp_path / "res/study.json").read_text())["groups_total"] == 6

    again = ResultStore.open(str(tmp_path / "res"), study=s).prepare()
    assert again.persisted == {0, 1, 2} and again.failed == {4} and again.parts == 2


def test_uncommitted_parts_are_removed_and_never_read(tmp_path):
    s = make_study()
    uri = str(tmp_path / "res")
    store = ResultStore.open(uri, study=s)
    store.prepare()
    store.write([record(s, 0)])
    # A crash after a part file but before its manifest entry: simulate it by deleting the entry.
    entry = store.write([record(s, 1)])
    manifest = tmp_path / "res/manifest" / f"{entry.part}.json"
    manifest.unlink()
    orphan = tmp_path / "res/aggregates" / f"part-{entry.part}.parquet"
    assert orphan.exists()
    assert read_results(uri).persisted == {0}  # readers follow the manifest only
    state = ResultStore.open(uri, study=s).prepare()
    assert state.persisted == {0}
    assert not orphan.exists()
    assert not (tmp_path / "res/outputs/series" / f"part-{entry.part}.parquet").exists()
    assert not list((tmp_path / "res").rglob(".tmp-*"))


def test_a_different_study_on_the_same_uri_is_refused(tmp_path):
    uri = str(tmp_path / "res")
    ResultStore.open(uri, study=make_study(seed=1)).prepare()
    with pytest.raises(UsageError, match="holds results of another study definition"):
        ResultStore.open(uri, study=make_study(seed=2)).prepare()


def test_unusable_uris(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="is a file; give a directory"):
        open_backend(str(f))
    with pytest.raises(UsageError, match="unsupported scheme 's3'"):
        open_backend("s3://bucket/x")
    with pytest.raises(UsageError, match="names no container"):
        open_backend("az://")
