#!/usr/bin/env bash
# Regenerates the pinned Python lockfiles from runner/requirements*.in.
# The lockfiles are the one source of Python versions for .venv/ and for images/.
set -euo pipefail
cd "$(dirname "$0")/../runner"
PY=$(cat ../.python-version)
uv pip compile --quiet --python-version "$PY" --generate-hashes --no-header --python-platform x86_64-unknown-linux-gnu -o requirements.lock requirements.in
uv pip compile --quiet --python-version "$PY" --generate-hashes --no-header --python-platform x86_64-unknown-linux-gnu -o requirements-dev.lock requirements-dev.in
