#!/usr/bin/env bash
# Runs a command with the project's toolchain ready: node_modules from the lockfile and .venv/
# from the Python lockfile, each installed on first use (or when its lockfile changed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/scripts/ensure-node.sh"
bash "$ROOT/scripts/ensure-venv.sh"
export PATH="$ROOT/node_modules/.bin:$PATH"
exec "$@"
