#!/usr/bin/env bash
# npm run bench: the workspace benchmark report (bench/REPORT.md, bench/report.png,
# bench/results/workspace-bench.json). Extra arguments go to bench/workspace_bench.py
# (e.g. --quick for a smoke run, --out-dir DIR to write elsewhere).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" bench/workspace_bench.py "$@"
