#!/usr/bin/env bash
# Installs the scanners of `npm run scan` from package registries, cached outside the repository
# (docs/security.md, "Scanners"):
#
#   bash scripts/scan-tools.sh         install what is missing or whose pin changed; exit non-zero
#                                      with the reason when an install fails
#   bash scripts/scan-tools.sh --env   print `export` lines for the installed tools
#
# - kubeconform and kube-score: `go install` from the Go module proxy;
# - checkov and kubernetes-validate (the Kubernetes JSON schemas kubeconform checks against, as the
#   schema host itself is unreachable here): PyPI, in a venv of their own (never in the runner's
#   lockfiles, never in .venv/).
# Each tool is stamped with its pin (and the Go version): a later run with the same pins installs
# nothing. kube-linter and Polaris are not installed: the Go module proxy refuses them.
#
# Environment: DASK_WORKSPACE_CACHE (default ~/.cache/dask-workspace).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DASK_WORKSPACE_CACHE:-$HOME/.cache/dask-workspace}"
SCAN="$CACHE/scan"
BIN="$SCAN/bin"
VENV="$SCAN/venv"
STAMPS="$SCAN/stamps"

KUBECONFORM_VERSION="0.7.0"
KUBE_SCORE_VERSION="1.20.0"
CHECKOV_VERSION="3.3.30"
KUBERNETES_VALIDATE_VERSION="1.37.0"

if [[ "${1:-}" == "--env" ]]; then
  echo "export SCAN_KUBECONFORM='$BIN/kubeconform'"
  echo "export SCAN_KUBE_SCORE='$BIN/kube-score'"
  echo "export SCAN_CHECKOV='$VENV/bin/checkov'"
  echo "export SCAN_PYTHON='$VENV/bin/python'"
  echo "export SCAN_VERSIONS='kubeconform $KUBECONFORM_VERSION, kube-score $KUBE_SCORE_VERSION, checkov $CHECKOV_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION'"
  exit 0
fi

log() { echo "scan-tools: $*" >&2; }
mkdir -p "$BIN" "$STAMPS"

# Go tools: a small, single-package build each; -p=1 keeps a shared 2-core machine usable.
export GOTOOLCHAIN=local
export GOFLAGS="-buildvcs=false -p=${SCAN_GO_PARALLEL:-1}"
go_stamp() { echo "$1=$2 $(go env GOVERSION 2>/dev/null || echo no-go)"; }
go_tool() {
  local name="$1" module="$2" version="$3" stamp
  if ! command -v go >/dev/null; then
    log "no Go toolchain: cannot install $name (install Go, or put $name $version at $BIN/$name)"
    return 1
  fi
  stamp="$(go_stamp "$name" "$version")"
  if [[ -x "$BIN/$name" && "$(cat "$STAMPS/$name" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  log "go install $module@v$version"
  GOBIN="$BIN" nice -n 10 go install -trimpath -ldflags "-s -w" "$module@v$version"
  echo "$stamp" >"$STAMPS/$name"
}

go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION"

# Python tools: one venv, from the project's Python (the one .venv is built from).
PY_STAMP="checkov=$CHECKOV_VERSION kubernetes-validate=$KUBERNETES_VALIDATE_VERSION"
if [[ ! -x "$VENV/bin/checkov" || "$(cat "$STAMPS/python" 2>/dev/null)" != "$PY_STAMP" ]]; then
  PYTHON="${SCAN_BASE_PYTHON:-python3}"
  log "pip install checkov==$CHECKOV_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  echo "$PY_STAMP" >"$STAMPS/python"
fi
log "ready: kubeconform $KUBECONFORM_VERSION, kube-score $KUBE_SCORE_VERSION, checkov $CHECKOV_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION (in $SCAN)"
: "$ROOT"
