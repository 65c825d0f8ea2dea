"""Study files: parsing, validation and the list of groups.

A study (YAML or JSON, see runner/README.md "Study files")::

    name: sir-grid
    model: dask_workspace.examples.sir:simulate
    targets:
      incidence: dask_workspace.examples.sir:incidence_loss
    parameters:
      grid: {beta: {start: 0.1, stop: 0.5, num: 20}, gamma: [0.05, 0.1]}   # or sets: [{...}]
    replicates: 30
    seed: 42
    outputs: [prevalence]

Each parameter set is a *group*: R simulation replicates plus one aggregation task per target.
Groups are numbered 0..P-1 in the order the parameters enumerate (``sets`` in file order; ``grid``
as the cartesian product with the first axis varying slowest), and that number is the
``group_id`` in every results table and in the replicate seeds.

Every problem is collected and reported at once, each named by its field path
(``parameters.grid.beta.num: must be an integer >= 1``); nothing is run on bad input.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import pathlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationError

from dask_workspace.errors import Problem, UsageError
from dask_workspace.seeds import replicate_seed

#: Column names the results tables use themselves; parameters may not take them.
RESERVED_COLUMNS = frozenset(
    {"group_id", "replicate", "target", "value", "stage", "task", "error", "time"}
)
#: A study larger than this is refused: the runner keeps the parameter list in memory.
MAX_GROUPS = 5_000_000

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STUDY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_FUNCTION_REF = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)


def _check_ref(value: str) -> str:
    if not _FUNCTION_REF.match(value):
        raise ValueError(
            f"must be 'module:function' (for example dask_workspace.examples.sir:simulate), "
            f"got {value!r}"
        )
    return value


def _check_identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"must be a name of letters, digits and underscores (not starting with a digit), "
            f"got {value!r}"
        )
    return value


def _check_study_name(value: str) -> str:
    if not _STUDY_NAME.match(value):
        raise ValueError(
            "must start with a letter and use only letters, digits, '-' and '_' "
            f"(at most 63 characters), got {value!r}"
        )
    return value


def _unique(values: list[str]) -> list[str]:
    seen: set[str] = set()
    dupes = [v for v in values if v in seen or seen.add(v)]
    if dupes:
        raise ValueError(f"lists {sorted(set(dupes))} more than once")
    return values


FunctionRef = Annotated[str, AfterValidator(_check_ref)]
Identifier = Annotated[str, AfterValidator(_check_identifier)]


class StudyFile(BaseModel):
    """The top level of a study file, as written (parameters are checked separately so that
    every message can name the exact axis or set)."""

    model_config = ConfigDict(extra="forbid")

    #: Names the study in task keys, logs and results; letters, digits, '-' and '_'.
    name: Annotated[str, AfterValidator(_check_study_name)]
    #: ``simulate(params: dict, seed: int) -> dict`` as ``module:function``, importable on workers.
    model: FunctionRef
    #: Target name -> ``target(replicates: list[dict], params: dict) -> float | dict[str, float]``.
    targets: dict[Identifier, FunctionRef] = Field(default_factory=dict)
    #: ``grid`` (cartesian product of axes) or ``sets`` (explicit list of parameter dicts).
    parameters: dict[str, Any]
    #: Simulation replicates per parameter set (R).
    replicates: StrictInt = Field(ge=1)
    #: Study seed; replicate seeds derive from (seed, group, replicate).
    seed: StrictInt = Field(default=0, ge=0)
    #: Raw model outputs to keep, by the key in simulate's result dict.
    outputs: Annotated[list[Identifier], AfterValidator(_unique)] = Field(default_factory=list)
    #: Free text, ignored by the runner.
    description: str | None = None


_MISSING_HINTS = {
    "name": "required: a name for the study, e.g. name: sir-grid",
    "model": "required: the simulation function as module:function, "
    "e.g. model: dask_workspace.examples.sir:simulate",
    "parameters": "required: parameters: {grid: {...}} or parameters: {sets: [{...}, ...]}",
    "replicates": "required: simulation replicates per parameter set, e.g. replicates: 30",
}


def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic marks dict-key errors this way; the key is already there
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(exc: ValidationError, *, known: Sequence[str]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = _loc(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            name = str(err["loc"][-1])
            close = difflib.get_close_matches(name, known, n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
            )
            message = f"unknown field{hint}"
        elif kind == "missing":
            message = _MISSING_HINTS.get(path, "required field is missing")
        else:
            message = err["msg"].removeprefix("Value error, ")
        problems.append(Problem(path=path, message=message))
    return problems


# ---------------------------------------------------------------------------------------------
# Parameters


_TYPE_NAMES = {bool: "bool", int: "int64", float: "float64", str: "string"}


def _scalar_kind(value: Any) -> type | None:
    """The column kind of one parameter value, or None when it is not a scalar."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    return None


def _column_type(kinds: set[type]) -> str | None:
    """The Parquet column type for a parameter whose values have these kinds; None if mixed."""
    if kinds <= {int, float} and kinds:
        return "float64" if float in kinds else "int64"
    if len(kinds) == 1:
        return _TYPE_NAMES[next(iter(kinds))]
    return None


def _check_param_name(name: Any, path: str, problems: list[Problem]) -> bool:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        problems.append(
            Problem(
                path,
                "parameter names must be letters, digits and underscores "
                "(not starting with a digit)",
            )
        )
        return False
    if name in RESERVED_COLUMNS:
        problems.append(
            Problem(
                path,
                f"{name!r} is a column of the results tables; rename the parameter "
                f"(reserved: {', '.join(sorted(RESERVED_COLUMNS))})",
            )
        )
        return False
    return True


def _grid_axis(value: Any, path: str, problems: list[Problem]) -> list[Any] | None:
    if isinstance(value, Mapping):
        allowed = {"start", "stop", "num"}
        extra = sorted(set(value) - allowed)
        missing = sorted(allowed - set(value))
        ok = True
        for k in extra:
            problems.append(Problem(f"{path}.{k}", "unknown field; a range is {start, stop, num}"))
            ok = False
        for k in missing:
            problems.append(Problem(f"{path}.{k}", "required: a range is {start, stop, num}"))
            ok = False
        for k in ("start", "stop"):
            v = value.get(k)
            if k in value and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            ):
                problems.append(Problem(f"{path}.{k}", f"must be a finite number, got {v!r}"))
                ok = False
        num = value.get("num")
        if "num" in value and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
            problems.append(Problem(f"{path}.num", f"must be an integer >= 1, got {num!r}"))
            ok = False
        if not ok:
            return None
        # linspace with both ends included, as plain Python floats rounded to 15 significant
        # digits so that 0.1 + 2 x 0.1 shows as 0.3 (not 0.30000000000000004) in the tables.
        points = np.linspace(value["start"], value["stop"], value["num"])
        return [float(f"{x:.15g}") for x in points]
    if isinstance(value, list):
        if not value:
            problems.append(Problem(path, "an empty list gives no parameter sets; give values"))
            return None
        ok = True
        for i, v in enumerate(value):
            if _scalar_kind(v) is None:
                problems.append(
                    Problem(f"{path}[{i}]", f"must be a number, string or bool, got {v!r}")
                )
                ok = False
            elif isinstance(v, float) and not math.isfinite(v):
                problems.append(Problem(f"{path}[{i}]", f"must be finite, got {v!r}"))
                ok = False
        return list(value) if ok else None
    if _scalar_kind(value) is not None:
        return [value]  # a constant: one value on this axis
    problems.append(
        Problem(
            path,
            "must be a list of values, a range {start, stop, num} or a single value, "
            f"got {value!r}",
        )
    )
    return None


def _grid_groups(grid: Any, problems: list[Problem]) -> list[dict[str, Any]] | None:
    path = "parameters.grid"
    if not isinstance(grid, Mapping) or not grid:
        problems.append(
            Problem(
                path,
                "must map parameter names to values, e.g. "
                "grid: {beta: {start: 0.1, stop: 0.5, num: 20}, gamma: [0.05, 0.1]}",
            )
        )
        return None
    axes: dict[str, list[Any]] = {}
    ok = True
    for name, value in grid.items():
        if not _check_param_name(name, f"{path}.{name}", problems):
            ok = False
            continue
        values = _grid_axis(value, f"{path}.{name}", problems)
        if values is None:
            ok = False
        else:
            axes[name] = values
    if not ok:
        return None
    total = math.prod(len(v) for v in axes.values())
    if total > MAX_GROUPS:
        problems.append(
            Problem(
                path,
                f"the grid has {total:,} parameter sets, more than {MAX_GROUPS:,}; split the study",
            )
        )
        return None
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def _set_groups(sets: Any, problems: list[Problem]) -> list[dict[str, Any]] | None:
    path = "parameters.sets"
    if not isinstance(sets, list) or not sets:
        problems.append(
            Problem(
                path,
                "must be a non-empty list of parameter dicts, e.g. "
                "sets: [{beta: 0.2, gamma: 0.1}, {beta: 0.3, gamma: 0.1}]",
            )
        )
        return None
    if len(sets) > MAX_GROUPS:
        problems.append(Problem(path, f"{len(sets):,} parameter sets, more than {MAX_GROUPS:,}"))
        return None
    ok = True
    first_keys: list[str] | None = None
    for i, entry in enumerate(sets):
        where = f"{path}[{i}]"
        if not isinstance(entry, Mapping) or not entry:
            problems.append(
                Problem(where, f"must be a non-empty dict of parameters, got {entry!r}")
            )
            ok = False
            continue
        for name, v in entry.items():
            if not _check_param_name(name, f"{where}.{name}", problems):
                ok = False
            elif _scalar_kind(v) is None or (isinstance(v, float) and not math.isfinite(v)):
                problems.append(
                    Problem(
                        f"{where}.{name}", f"must be a finite number, string or bool, got {v!r}"
                    )
                )
                ok = False
        if first_keys is None:
            first_keys = list(entry)
        elif set(entry) != set(first_keys):
            missing = sorted(set(first_keys) - set(entry))
            extra = sorted(set(entry) - set(first_keys))
            detail = "; ".join(
                s
                for s in (
                    f"missing {missing}" if missing else "",
                    f"extra {extra}" if extra else "",
                )
                if s
            )
            problems.append(
                Problem(
                    where,
                    f"every set needs the same parameters as sets[0] "
                    f"({', '.join(first_keys)}): {detail}",
                )
            )
            ok = False
    if not ok:
        return None
    return [{k: entry[k] for k in first_keys or []} for entry in sets]


def _parameter_types(
    groups: list[dict[str, Any]], path: str, problems: list[Problem]
) -> dict[str, str] | None:
    kinds: dict[str, set[type]] = {}
    for g in groups:
        for name, v in g.items():
            kinds.setdefault(name, set()).add(type(v) if not isinstance(v, bool) else bool)
    types: dict[str, str] = {}
    for name, ks in kinds.items():
        col = _column_type(ks)
        if col is None:
            names = sorted(_TYPE_NAMES.get(k, k.__name__) for k in ks)
            problems.append(
                Problem(
                    f"{path}.{name}",
                    f"mixes value types {names}; use one type "
                    "per parameter (numbers may mix ints and floats)",
                )
            )
        else:
            types[name] = col
    return types if len(types) == len(kinds) else None


def _coerce(groups: list[dict[str, Any]], types: Mapping[str, str]) -> list[dict[str, Any]]:
    """Ints in a float parameter become floats, so the model and the table see one type."""
    float_params = [n for n, t in types.items() if t == "float64"]
    if not float_params:
        return groups
    return [{k: (float(v) if k in float_params else v) for k, v in g.items()} for g in groups]


def parse_parameters(raw: Any) -> tuple[list[dict[str, Any]], dict[str, str], list[Problem]]:
    """Parameter sets and column types from a study's ``parameters`` section.

    Returns:
        (groups, parameter column types, problems); groups is empty when there are problems.
    """
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        return [], {}, [Problem("parameters", "must be {grid: {...}} or {sets: [...]}")]
    extra = sorted(set(raw) - {"grid", "sets"})
    for k in extra:
        close = difflib.get_close_matches(str(k), ["grid", "sets"], n=1)
        hint = f"did you mean {close[0]!r}?" if close else "use grid or sets"
        problems.append(Problem(f"parameters.{k}", f"unknown field; {hint}"))
    has_grid, has_sets = "grid" in raw, "sets" in raw
    if has_grid and has_sets:
        problems.append(Problem("parameters", "give either grid or sets, not both"))
    if not has_grid and not has_sets:
        if not extra:
            problems.append(Problem("parameters", "needs grid: {...} or sets: [...]"))
        return [], {}, problems
    if has_grid and not has_sets:
        groups, path = _grid_groups(raw["grid"], problems), "parameters.grid"
    elif has_sets and not has_grid:
        groups, path = _set_groups(raw["sets"], problems), "parameters.sets"
    else:
        return [], {}, problems
    if groups is None or problems:
        return [], {}, problems
    types = _parameter_types(groups, path, problems)
    if types is None:
        return [], {}, problems
    return _coerce(groups, types), types, problems


# ---------------------------------------------------------------------------------------------
# The study


@dataclass(frozen=True, kw_only=True)
class Study:
    """A validated study: everything the runner needs, with the groups enumerated."""

    name: str
    model: str
    targets: dict[str, str]
    groups: tuple[dict[str, Any], ...]
    #: Parameter name -> Parquet column type ("float64", "int64", "bool", "string").
    parameter_types: dict[str, str]
    replicates: int
    seed: int
    outputs: tuple[str, ...]
    #: sha256 of the canonical definition; a results URI holds one study definition.
    fingerprint: str
    source: str = field(default="<memory>", compare=False)

    @property
    def token(self) -> str:
        """Study name plus fingerprint prefix: unique task keys per study definition."""
        return f"{self.name}-{self.fingerprint[:8]}"

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.parameter_types)

    @property
    def tasks_per_group(self) -> int:
        """Tasks one group submits: R simulations, T targets, plus one outputs task if kept."""
        return self.replicates + len(self.targets) + (1 if self.outputs else 0)

    def seed_for(self, *, group_id: int, replicate: int) -> int:
        return replicate_seed(study_seed=self.seed, group_index=group_id, replicate=replicate)

    def describe(self) -> dict[str, Any]:
        """What ``study.json`` in the results records about this study."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "model": self.model,
            "targets": self.targets,
            "parameters": self.parameter_types,
            "groups_total": len(self.groups),
            "replicates": self.replicates,
            "seed": self.seed,
            "outputs": list(self.outputs),
        }


def _fingerprint(definition: Mapping[str, Any]) -> str:
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def build_study(raw: Any, *, source: str = "<memory>") -> Study:
    """Validates a parsed study document (a dict) and enumerates its groups.

    Raises:
        UsageError: with every problem, each naming its field.
    """
    if not isinstance(raw, Mapping):
        raise UsageError(
            [
                Problem(
                    "",
                    "a study file must be a mapping with name, model, targets, parameters, "
                    "replicates (see examples/studies/sir-grid.yaml)",
                )
            ],
            source=source,
        )
    problems: list[Problem] = []
    spec: StudyFile | None = None
    try:
        spec = StudyFile.model_validate(dict(raw))
    except ValidationError as exc:
        found = _pydantic_problems(exc, known=list(StudyFile.model_fields))
        # The parameters section has its own, more precise checks below.
        problems.extend(p for p in found if not ("parameters" in raw and p.path == "parameters"))
    groups, types, param_problems = ([], {}, [])
    if "parameters" in raw:
        groups, types, param_problems = parse_parameters(raw["parameters"])
    problems.extend(param_problems)
    if spec is not None and not spec.targets and not spec.outputs:
        problems.append(
            Problem(
                "targets",
                "a study needs at least one target (or outputs to "
                "keep); e.g. targets: {incidence: mymodel:incidence_loss}",
            )
        )
    if problems or spec is None:
        raise UsageError(problems, source=source)
    definition = {
        "name": spec.name,
        "model": spec.model,
        "targets": spec.targets,
        "groups": groups,
        "replicates": spec.replicates,
        "seed": spec.seed,
        "outputs": spec.outputs,
    }
    return Study(
        name=spec.name,
        model=spec.model,
        targets=dict(spec.targets),
        groups=tuple(groups),
        parameter_types=types,
        replicates=spec.replicates,
        seed=spec.seed,
        outputs=tuple(spec.outputs),
        fingerprint=_fingerprint(definition),
        source=source,
    )


class _StudyLoader(yaml.SafeLoader):
    """YAML 1.2-style floats (``1e-3`` is a number, not a string) and no duplicate keys."""


_StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StudyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_study(path: str | pathlib.Path) -> Study:
    """Reads and validates a study file (YAML or JSON).

    Raises:
        UsageError: unreadable file, syntax error, or any invalid field (all listed).
    """
    p = pathlib.Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"study file not found: {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read study file {source}: {exc}") from None
    try:
        if p.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            raw = yaml.load(text, Loader=_StudyLoader)  # a SafeLoader subclass
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise UsageError([Problem("", f"not valid YAML/JSON: {detail}")], source=source) from None
    return build_study(raw, source=source)
