"""Why a study's ``module:function`` cannot be imported, said so that the fix is obvious.

Three cases, each with its own message:

* the study's own module is missing: name it and both fixes -- put it in the study folder (it
  travels with the study bundle) or install it in the images (``npm run images:build --
  --requirements <file>`` / ``--package <dir>``);
* the module exists but imports something that is not installed (numba, a framework): name
  that dependency and the image fix;
* the module exists but has no such function: a missing function, with the names it does have.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from dask_workspace.errors import Problem, UsageError

IMAGE_FIX = (
    "npm run images:build -- --requirements <requirements.txt> (packages from PyPI) or "
    "--package <dir> (a local package), then use the built images"
)


def _bundle_fix(module: str) -> str:
    top = module.split(".")[0]
    return f"put {top}/ (a package) or {top}.py beside the study file: it travels in the bundle"


def diagnose(ref: str) -> str | None:
    """None when ``module:function`` imports and is callable, else what is wrong and the fix.

    Runs in the runner, in ``check`` and (through ``Client.run``) on a worker.
    """
    module_name, _, attr = ref.partition(":")
    try:
        module: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            return (
                f"module {missing!r} not found (from {ref}). Either {_bundle_fix(missing)}; "
                f"or install it in the images: {IMAGE_FIX}"
            )
        return (
            f"module {module_name!r} imports {missing!r}, which is not installed. Install it "
            f"in the images: {IMAGE_FIX}; or, if it is your own code, "
            f"{_bundle_fix(missing)}"
        )
    except Exception as exc:  # the module's own code failed while importing
        return f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
    obj: Any = module
    walked = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = f" It defines: {', '.join(sorted(names)[:12])}." if names and not close else ""
            where = getattr(module, "__file__", None) or walked
            return f"missing function: {walked} ({where}) has no {part!r}{hint}{known}"
        obj = getattr(obj, part)
        walked = f"{walked}.{part}"
    if not callable(obj):
        return f"{ref} is a {type(obj).__name__}, not a function"
    return None


def diagnose_all(refs: Sequence[str]) -> dict[str, str]:
    """ref -> problem, for every reference that cannot be used."""
    problems = {}
    for ref in refs:
        why = diagnose(ref)
        if why is not None:
            problems[ref] = why
    return problems


def study_refs(study: Any) -> dict[str, str]:
    """The study's function references, each with the field that names it."""
    return {study.model: "model", **{ref: f"targets.{n}" for n, ref in study.targets.items()}}


def as_problems(
    found: Mapping[str, str], *, fields: Mapping[str, str], where: str
) -> list[Problem]:
    return [Problem(fields.get(ref, ref), f"{why}{where}") for ref, why in found.items()]


def check_study_imports(study: Any) -> list[Problem]:
    """Problems importing the study's functions in this process."""
    fields = study_refs(study)
    return as_problems(diagnose_all(list(fields)), fields=fields, where="")


def check_on_workers(client: Any, study: Any) -> None:
    """The study's functions must import on the workers (checked on one worker), else exit 2."""
    fields = study_refs(study)
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
    if not workers:
        return
    found = client.run(diagnose_all, list(fields), workers=workers[:1])[workers[0]]
    if found:
        raise UsageError(
            as_problems(found, fields=fields, where=f" (on worker {workers[0]})"),
            source=study.source,
        )
