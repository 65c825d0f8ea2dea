"""Study bundles: what is selected, the hash, the ``bundle`` command and the import messages."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys

import pytest
from conftest import ROOT, run_cli

from dask_workspace.bundle import (
    build_bundle,
    bundle_hash,
    changed_files,
    is_ignored,
    parse_ignore,
)
from dask_workspace.cluster_bundles import top_level_names
from dask_workspace.distribute import activate, deactivate, unpack
from dask_workspace.errors import UsageError
from dask_workspace.imports import diagnose

OWN_MODEL = ROOT / "examples" / "studies" / "own-model" / "study.yaml"


def _write(path: pathlib.Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _formula(folder: pathlib.Path, paths: list[str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(paths, key=lambda p: p.encode()):
        digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def test_selection_skips_hidden_caches_results_and_studyignore(tmp_path: pathlib.Path) -> None:
    study = tmp_path / "study.yaml"
    _write(study, "name: s\n")
    _write(tmp_path / "pkg" / "__init__.py")
    _write(tmp_path / "pkg" / "model.py", "def f(): pass\n")
    _write(tmp_path / "pkg" / "__pycache__" / "model.cpython-311.pyc")
    _write(tmp_path / "pkg" / "old.pyc")
    _write(tmp_path / ".git" / "config")
    _write(tmp_path / ".env")
    _write(tmp_path / "node_modules" / "a.js")
    _write(tmp_path / "results" / "aggregates" / "part.parquet")
    # A results location under another name: study.json beside manifest/.
    _write(tmp_path / "out" / "study.json", "{}")
    (tmp_path / "out" / "manifest").mkdir()
    _write(tmp_path / "data" / "big.csv")
    _write(tmp_path / "data" / "small.txt")
    _write(tmp_path / "notes" / "a.md")
    _write(tmp_path / "deep" / "notes" / "b.md")
    _write(tmp_path / "deep" / "notes.md")
    _write(tmp_path / ".studyignore", "# comment\n\n*.csv\nnotes/\n/deep/notes.md\n")
    bundle = build_bundle(study_file=study)
    paths = [f.path for f in bundle.files]
    assert paths == ["data/small.txt", "pkg/__init__.py", "pkg/model.py", "study.yaml"]
    assert bundle.hash == _formula(tmp_path, paths)
    assert bundle.total_bytes == sum((tmp_path / p).stat().st_size for p in paths)


def test_hash_depends_on_content_and_names_only(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        _write(folder / "study.yaml", "name: s\n")
        _write(folder / "m.py", "X = 1\n")
    first, second = (
        build_bundle(study_file=a / "study.yaml"),
        build_bundle(study_file=b / "study.yaml"),
    )
    assert first.hash == second.hash
    os.utime(b / "m.py", (1, 1))  # timestamps do not count
    assert build_bundle(study_file=b / "study.yaml").hash == first.hash
    _write(b / "m.py", "X = 2\n")
    changed = build_bundle(study_file=b / "study.yaml")
    assert changed.hash != first.hash
    assert changed_files(first.listing(), changed.listing()) == ["m.py"]
    # Pack -> unpack gives the same files.
    folder = unpack(data=changed.pack(), digest=changed.hash, root=tmp_path / "unpacked")
    assert (folder / "m.py").read_text() == "X = 2\n"
    assert changed.pack() == changed.pack()


def test_ignore_rules() -> None:
    rules = parse_ignore("data/\n/top.txt\n*.h5\nsub/*.tmp\n")
    assert is_ignored(rules, rel="x/data", is_dir=True)
    assert not is_ignored(rules, rel="x/data", is_dir=False)  # folders only
    assert is_ignored(rules, rel="top.txt", is_dir=False)
    assert not is_ignored(rules, rel="x/top.txt", is_dir=False)  # anchored at the study folder
    assert is_ignored(rules, rel="a/b/c.h5", is_dir=False)
    assert is_ignored(rules, rel="sub/x.tmp", is_dir=False)
    assert bundle_hash([("b", "2"), ("a", "1")]) == bundle_hash([("a", "1"), ("b", "2")])


def test_symlink_outside_is_refused_inside_is_followed(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "study"
    _write(folder / "study.yaml", "name: s\n")
    _write(folder / "real" / "m.py", "X = 1\n")
    (folder / "alias").symlink_to(folder / "real")
    bundle = build_bundle(study_file=folder / "study.yaml")
    assert [f.path for f in bundle.files] == ["alias/m.py", "real/m.py", "study.yaml"]
    _write(tmp_path / "outside.py")
    (folder / "leak.py").symlink_to(tmp_path / "outside.py")
    with pytest.raises(UsageError, match=r"leak\.py is a symlink to .*outside.*\.studyignore"):
        build_bundle(study_file=folder / "study.yaml")
    # The CLI says the same with exit 2.
    proc = run_cli(["bundle", str(folder / "study.yaml")])
    assert proc.returncode == 2
    assert "leak.py" in proc.stderr and "outside" in proc.stderr
    # Ignored, it no longer matters where it points.
    _write(folder / ".studyignore", "leak.py\n")
    assert "leak.py" not in [f.path for f in build_bundle(study_file=folder / "study.yaml").files]


def test_bundle_command_on_the_example_study() -> None:
    proc = run_cli(["bundle", str(OWN_MODEL), "--json"])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    paths = [f["path"] for f in doc["files"]]
    assert paths == ["ownmodel/__init__.py", "ownmodel/model.py", "study.yaml"]
    assert doc["hash"] == _formula(OWN_MODEL.parent, paths)
    assert doc["total_bytes"] == sum(f["size"] for f in doc["files"])
    assert doc["study_dir"] == str(OWN_MODEL.parent)
    human = run_cli(["bundle", str(OWN_MODEL)])
    assert doc["hash"] in human.stdout and "ownmodel/model.py" in human.stdout
    missing = run_cli(["bundle", str(OWN_MODEL.parent / "nope.yaml")])
    assert missing.returncode == 2 and "study file not found" in missing.stderr


def test_import_messages_name_module_fixes_and_missing_functions(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "mypkg_imports" / "__init__.py", "")
    _write(tmp_path / "mypkg_imports" / "model.py", "def simulate(p, s):\n    return {}\n")
    _write(tmp_path / "needsdep_imports.py", "import numbaa_not_installed\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert diagnose("mypkg_imports.model:simulate") is None
        missing_fn = diagnose("mypkg_imports.model:simulat")
        assert missing_fn is not None and missing_fn.startswith("missing function")
        assert "did you mean simulate" in missing_fn
        missing_mod = diagnose("mypkg_imprts.model:simulate")
        assert missing_mod is not None and "module 'mypkg_imprts' not found" in missing_mod
        assert "beside the study file" in missing_mod
        assert "npm run images:build -- --requirements" in missing_mod
        assert "--package <dir>" in missing_mod
        dep = diagnose("needsdep_imports:simulate")
        assert dep is not None and "imports 'numbaa_not_installed', which is not installed" in dep
    finally:
        sys.path.remove(str(tmp_path))


def test_activate_replaces_the_previous_bundle(tmp_path: pathlib.Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _write(old / "swapmod_bundle.py", "VALUE = 1\n")
    _write(new / "swapmod_bundle.py", "VALUE = 2\n")
    try:
        activate(old)
        import swapmod_bundle  # type: ignore[import-not-found]

        assert swapmod_bundle.VALUE == 1
        activate(new)
        assert str(old) not in sys.path and sys.path[0] == str(new)
        import swapmod_bundle as again  # type: ignore[import-not-found]

        assert again.VALUE == 2
    finally:
        for p in (str(old), str(new)):
            if p in sys.path:
                sys.path.remove(p)
        sys.modules.pop("swapmod_bundle", None)


def test_bundles_of_different_studies_stay_side_by_side(tmp_path: pathlib.Path) -> None:
    a1, a2, b = tmp_path / "a1", tmp_path / "a2", tmp_path / "b"
    _write(a1 / "keymod_a.py", "VALUE = 1\n")
    _write(a2 / "keymod_a.py", "VALUE = 2\n")
    _write(b / "keymod_b.py", "VALUE = 3\n")
    try:
        activate(a1, key="study-a")
        activate(b, key="study-b")
        import keymod_a  # type: ignore[import-not-found]
        import keymod_b  # type: ignore[import-not-found]

        assert (keymod_a.VALUE, keymod_b.VALUE) == (1, 3)
        # A new bundle of study a replaces a's only: b's folder and modules stay.
        activate(a2, key="study-a")
        assert str(a1) not in sys.path and str(a2) in sys.path and str(b) in sys.path
        assert "keymod_a" not in sys.modules and sys.modules["keymod_b"] is keymod_b
        import keymod_a as fixed  # type: ignore[import-not-found]

        assert fixed.VALUE == 2
        # Unregistering a's bundle (plugin teardown) leaves b alone.
        deactivate(a2, key="study-a")
        assert str(a2) not in sys.path and "keymod_a" not in sys.modules
        assert sys.modules["keymod_b"] is keymod_b
        # Two studies with the same bundle share its folder until the last one lets go.
        activate(b, key="study-c")
        import keymod_b as shared  # type: ignore[import-not-found]

        deactivate(b, key="study-b")
        assert str(b) in sys.path and sys.modules["keymod_b"] is shared
        deactivate(b, key="study-c")
        assert str(b) not in sys.path and "keymod_b" not in sys.modules
    finally:
        for key, folder in (("study-a", a2), ("study-b", b), ("study-c", b)):
            deactivate(folder, key=key)
        for p in (str(a1), str(a2), str(b)):
            if p in sys.path:
                sys.path.remove(p)
        for name in ("keymod_a", "keymod_b"):
            sys.modules.pop(name, None)


def test_top_level_names_are_what_a_bundle_adds_to_import(tmp_path: pathlib.Path) -> None:
    for rel in (
        "study.yaml",
        "README.md",
        "__init__.py",  # no one imports a name like this
        "mod.py",
        "pkg/__init__.py",
        "pkg/table.csv",
        "nspkg/sub/code.py",  # a namespace package
        "data/values.csv",  # no code below: not a module
        "my-scripts/run.py",  # not a Python name
        "fast.cpython-311-x86_64-linux-gnu.so",
    ):
        _write(tmp_path / rel, rel)
    names = top_level_names(build_bundle(study_file=tmp_path / "study.yaml").files)
    assert sorted(names) == ["fast", "mod", "nspkg", "pkg"]
    # A name's digest covers every file that makes it, and only those.
    _write(tmp_path / "pkg" / "table.csv", "other")
    _write(tmp_path / "README.md", "other")
    again = top_level_names(build_bundle(study_file=tmp_path / "study.yaml").files)
    assert again["pkg"] != names["pkg"]
    assert {n: d for n, d in again.items() if n != "pkg"} == {
        n: d for n, d in names.items() if n != "pkg"
    }
    # The example own-model study brings one package.
    assert list(top_level_names(build_bundle(study_file=OWN_MODEL).files)) == ["ownmodel"]
