#!/usr/bin/env bash
# Creates or refreshes .venv/ at the repository root from the pinned lockfile.
# Idempotent and quick when nothing changed: it re-installs only when the lockfile,
# the runner's pyproject or the Python version differ from the last successful install.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WANT_PY="$(cat .python-version)"
STAMP=".venv/.dask-workspace-stamp"
HASH="$(cat .python-version runner/requirements-dev.lock runner/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  exit 0
fi
PYTHON="${DASK_WORKSPACE_PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  for cand in "python$WANT_PY" "python${WANT_PY%.*}" python3; do
    if command -v "$cand" >/dev/null 2>&1; then PYTHON="$cand"; break; fi
  done
fi
HAVE_PY="$("$PYTHON" -c 'import platform; print(platform.python_version())')"
if [[ "${HAVE_PY%.*}" != "${WANT_PY%.*}" ]]; then
  echo "ensure-venv: need Python ${WANT_PY%.*} (the images use $WANT_PY, see .python-version), found $HAVE_PY at $PYTHON." >&2
  echo "ensure-venv: install it (pyenv install $WANT_PY) or set DASK_WORKSPACE_PYTHON to its path." >&2
  exit 1
fi
if [[ "$HAVE_PY" != "$WANT_PY" ]]; then
  echo "ensure-venv: note: Python $HAVE_PY here, images pin $WANT_PY (same minor version, same package pins)." >&2
fi
echo "ensure-venv: building .venv/ with Python $HAVE_PY from runner/requirements-dev.lock" >&2
rm -rf .venv
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r runner/requirements-dev.lock
# The runner package is used from its source tree (like an editable install, without a build step).
SITE="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT/runner/src" > "$SITE/dask_workspace_src.pth"
echo "$HASH" > "$STAMP"
