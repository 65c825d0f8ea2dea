#!/usr/bin/env bash
# `npm test`: every test, TypeScript and Python. Installs what it needs first.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/ensure-node.sh
bash scripts/ensure-venv.sh
echo "== typecheck"
npx tsc --noEmit
echo "== vitest (TypeScript)"
npx vitest run
echo "== ruff (Python lint)"
.venv/bin/ruff check runner
echo "== pytest (Python)"
# Two test processes (pytest-xdist), each with its own Dask cluster: most of a test's time is
# spent waiting on real scheduler and worker processes, so two at once fit two cores.
.venv/bin/python -m pytest runner/tests -n 2
