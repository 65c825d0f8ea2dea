#!/usr/bin/env bash
# Installs the npm packages pinned in package-lock.json when node_modules/ is missing or older
# than the lockfile.
#
# Why `npm install` and not `npm ci`: the registry this project is built against does not serve
# every platform build that rollup (a vitest dependency) lists as optional (for example
# @rollup/rollup-android-arm-eabi), so those never enter the lockfile, and `npm ci` refuses a
# lockfile that lacks an optional dependency of any platform. `npm install` with an in-sync
# lockfile installs exactly the locked versions; `--no-save` keeps the lockfile untouched.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm install --no-save --no-audit --no-fund >&2
fi
