"""Study folders with their own model package, for the bundle, retry and check tests.

The package is written next to the study file only: the test clusters' workers cannot import it
unless the runner's bundle reaches them.
"""

from __future__ import annotations

import pathlib
import textwrap
from typing import Any

import yaml

MODEL = '''
"""A test model living in its study folder."""
import os
import time

import numpy as np
import pandas as pd

BUG = {bug!r}


def simulate(params, seed):
    if BUG == "always":
        raise ValueError(f"model bug: cannot use x={{params['x']}} with seed {{seed}}")
    if BUG == "odd" and int(params["x"]) % 2 == 1:
        raise ValueError(f"x={{params['x']}} is odd")
    time.sleep(float(params.get("sleep", 0.0)))
    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except ValueError:
        name = "local"
    who = pd.DataFrame({{"worker": [name], "pid": [os.getpid()]}})
    return {{"x": float(params["x"]), "who": who}}


def mean_x(replicates, params):
    return float(np.mean([r["x"] for r in replicates]))
'''


def make_study_folder(
    folder: pathlib.Path,
    *,
    package: str,
    groups: int,
    replicates: int = 2,
    sleep: float = 0.0,
    bug: str | None = None,
    name: str = "own",
    **fields: Any,
) -> pathlib.Path:
    """Writes ``folder/study.yaml`` and ``folder/<package>/model.py``; returns the study file."""
    pkg = folder / package
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    set_bug(folder, package=package, bug=bug)
    doc: dict[str, Any] = {
        "name": name,
        "model": f"{package}.model:simulate",
        "targets": {"mean_x": f"{package}.model:mean_x"},
        "parameters": {"grid": {"x": list(range(groups)), "sleep": [sleep]}},
        "replicates": replicates,
        "seed": 11,
        "outputs": ["who"],
    }
    doc.update(fields)
    study = folder / "study.yaml"
    study.write_text(yaml.safe_dump(doc, sort_keys=False))
    return study


def set_bug(folder: pathlib.Path, *, package: str, bug: str | None) -> None:
    """Rewrites the model with another bug setting (None: no bug): the bundle hash changes."""
    (folder / package / "model.py").write_text(textwrap.dedent(MODEL.format(bug=bug)))
