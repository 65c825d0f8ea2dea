#!/usr/bin/env bash
# Provides the tools for `npm run test:e2e`, cached outside the repository.
#
#   bash test/e2e/tools.sh           build or find every tool; rebuild only what a pin changed
#   bash test/e2e/tools.sh --check   builds nothing; exit 0 when every tool is ready, 1 when only
#                                    tools that this script builds are missing (or stale), 2 when a
#                                    tool it cannot build is missing (or Go is)
#   bash test/e2e/tools.sh --env     print `export` lines (PATH, PULUMI_HOME) for the cached tools
#
# Built with the Go toolchain from the Go module proxy (our machines reach no other download host):
#   - pulumi (the CLI), pinned to package.json's @pulumi/pulumi;
#   - kube-apiserver, kube-controller-manager, kube-scheduler (k8s.io/kubernetes) and etcd (the
#     go.etcd.io/etcd/server/v3 version that Kubernetes itself pins), from one throwaway module;
#   - kwok (simulated nodes, so pods become Ready and `pulumi up` awaits real rollouts).
# Found, not built: the Node.js language host `pulumi-language-nodejs` and the Kubernetes provider
# plugin `pulumi-resource-kubernetes`. The Go module proxy serves neither module (it answers
# "403 This module version is not available"), so they come from the cache's bin/ (placed there
# by hand), from $PATH (an official Pulumi install), or, for the provider, from
# `pulumi plugin install` where the plugin host is reachable.
#
# Environment: DASK_WORKSPACE_CACHE (default ~/.cache/dask-workspace).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${DASK_WORKSPACE_CACHE:-$HOME/.cache/dask-workspace}"
BIN="$CACHE/bin"
STAMPS="$CACHE/stamps"
BUILD="$CACHE/build"
LOGS="$CACHE/logs"
SHARE="$CACHE/share"
PULUMI_HOME_DIR="$CACHE/pulumi-home"

# Pins. The Pulumi pins follow package.json so the CLI and plugin match the SDKs the program loads.
PULUMI_VERSION="$(node -p 'require(process.argv[1]).dependencies["@pulumi/pulumi"]' "$ROOT/package.json")"
K8S_PROVIDER_VERSION="$(node -p 'require(process.argv[1]).dependencies["@pulumi/kubernetes"]' "$ROOT/package.json")"
KUBE_VERSION="1.36.3"
KWOK_VERSION="0.8.0"

# The pulumi pkg/v3 release is newer than the checksum database's copy (its lookup answers 404), so
# the module proxy alone vouches for github.com/pulumi/pulumi modules; everything else is checked.
export GONOSUMDB="github.com/pulumi/pulumi"
# Two parallel compiles: this is a 2-core machine shared with other work.
export GOFLAGS="-buildvcs=false -p=${E2E_GO_PARALLEL:-2}"
export GOTOOLCHAIN=local

MODE="${1:-ensure}"

log() { echo "e2e-tools: $*" >&2; }

go_version() { go env GOVERSION 2>/dev/null || echo "no-go"; }

# stamp_ok NAME WANT: true when the recorded stamp equals WANT and every listed binary exists.
stamp_ok() {
  local name="$1" want="$2"
  shift 2
  [[ -f "$STAMPS/$name" && "$(cat "$STAMPS/$name")" == "$want" ]] || return 1
  local b
  for b in "$@"; do [[ -x "$BIN/$b" ]] || return 1; done
}

write_stamp() { mkdir -p "$STAMPS" && echo "$2" >"$STAMPS/$1"; }

# --- Pulumi CLI -------------------------------------------------------------------------------
# pkg/v3's go.mod replaces sdk/v3 with a relative path, so `go install pkg@version` is refused;
# a throwaway module that requires pkg and sdk at the same version builds the same program.
pulumi_stamp() { echo "pulumi=$PULUMI_VERSION $(go_version)"; }
build_pulumi() {
  local dir="$BUILD/pulumi"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<EOF
module dask-workspace.local/e2e-tools/pulumi

go 1.26

// Copied from github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION's go.mod.
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
  rm -f "$dir/go.sum"
  (
    cd "$dir"
    go get -tool "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$PULUMI_VERSION" \
      "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
    go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      -o "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  )
}

# --- Kubernetes control plane -----------------------------------------------------------------
# k8s.io/kubernetes replaces its k8s.io/* staging modules with ./staging/src/...; here each one
# points at its published v0.X.Y twin. The list comes from the module's own go.mod.
kube_stamp() { echo "kubernetes=$KUBE_VERSION recipe=2 $(go_version)"; }
build_kube() {
  local dir="$BUILD/kube" minor="${KUBE_VERSION#*.}"
  local staging_version="0.${minor}" mod etcd_version ldflags
  mkdir -p "$dir"
  (
    cd "$dir"
    mod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).GoMod));')"
    {
      printf 'module dask-workspace.local/e2e-tools/kube\n\ngo 1.26\n\nreplace (\n'
      # "k8s.io/api => ./staging/src/k8s.io/api" becomes "k8s.io/api => k8s.io/api v0.36.3".
      sed -n -E 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/src/.*#\1#p' "$mod" | while read -r m; do
        printf '\t%s => %s v%s\n' "$m" "$m" "$staging_version"
      done
      printf ')\n'
    } >go.mod
    rm -f go.sum
    # etcd at the version Kubernetes itself pins (go.etcd.io/etcd/server/v3 is the etcd program).
    etcd_version="$(sed -n -E 's#^\s*go\.etcd\.io/etcd/server/v3 (v[0-9.]+).*#\1#p' "$mod")"
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@v$KUBE_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@v$KUBE_VERSION" \
      "go.etcd.io/etcd/server/v3@$etcd_version"
    # The version stamps that Kubernetes' own build (hack/lib/version.sh) sets: /version reports
    # v1.36.3 instead of v0.0.0-master, and clients such as the Pulumi provider read it.
    ldflags="-s -w"
    local pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=${KUBE_VERSION%%.*}"
      ldflags+=" -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
    done
    go build -trimpath -ldflags "$ldflags" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  )
}

# --- kwok -------------------------------------------------------------------------------------
kwok_stamp() { echo "kwok=$KWOK_VERSION $(go_version)"; }
build_kwok() {
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  # kwok ships its default node and pod lifecycles as YAML in its module; the binary needs them
  # passed with --config (kwokctl embeds them, kwok does not).
  local src
  src="$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).Dir));')"
  mkdir -p "$SHARE"
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"
      cat "$src/kustomize/stage/$f"
    done
  } >"$SHARE/kwok-stages.yaml"
}

# --- plugins the proxy does not serve ---------------------------------------------------------
# find_plugin NAME: prints the path of NAME from the cache's bin/ or $PATH, or nothing.
find_plugin() {
  if [[ -x "$BIN/$1" ]]; then
    echo "$BIN/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  fi
}

provider_installed() {
  [[ -n "$(find_plugin pulumi-resource-kubernetes)" ]] && return 0
  [[ -x "$BIN/pulumi" ]] || return 1
  PULUMI_HOME="$PULUMI_HOME_DIR" "$BIN/pulumi" plugin ls --json 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const want = process.argv[1];
      const ok = JSON.parse(s || "[]").some((p) => p.name === "kubernetes" && p.kind === "resource" && p.version === want);
      process.exit(ok ? 0 : 1);
    });' "$K8S_PROVIDER_VERSION"
}

ensure_plugins() {
  local missing=0 lang lang_version
  lang="$(find_plugin pulumi-language-nodejs)"
  if [[ -n "$lang" ]]; then
    lang_version="$("$lang" -version 2>/dev/null || echo unknown)"
    if [[ "$lang_version" != "v$PULUMI_VERSION" ]]; then
      log "note: $lang is $lang_version, the CLI is v$PULUMI_VERSION (mixed versions usually work)."
    fi
  else
    log "missing: pulumi-language-nodejs v$PULUMI_VERSION (the Node.js language host)."
    log "  The Go module proxy does not serve github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"
    log "  (403: This module version is not available). An official Pulumi install ships it next to"
    log "  the pulumi binary: put that directory on PATH, or copy the binary to $BIN/."
    missing=1
  fi
  if ! provider_installed; then
    if [[ "$MODE" == "ensure" && -x "$BIN/pulumi" ]]; then
      log "installing the kubernetes provider plugin v$K8S_PROVIDER_VERSION with 'pulumi plugin install'"
      PULUMI_HOME="$PULUMI_HOME_DIR" timeout 300 "$BIN/pulumi" plugin install resource kubernetes \
        "$K8S_PROVIDER_VERSION" >&2 || true
    fi
    if ! provider_installed; then
      log "missing: pulumi-resource-kubernetes v$K8S_PROVIDER_VERSION (the Kubernetes provider plugin)."
      log "  The Go module proxy does not serve github.com/pulumi/pulumi-kubernetes/provider/v4"
      log "  (403: This module version is not available) and the plugin download host is unreachable"
      log "  here. Where it is reachable: PULUMI_HOME=$PULUMI_HOME_DIR pulumi plugin install resource"
      log "  kubernetes $K8S_PROVIDER_VERSION; or copy a pulumi-resource-kubernetes binary to $BIN/."
      missing=1
    fi
  fi
  return "$missing"
}

print_env() {
  echo "export PATH=\"$BIN:\$PATH\""
  echo "export PULUMI_HOME=\"$PULUMI_HOME_DIR\""
}

main() {
  mkdir -p "$BIN" "$STAMPS" "$BUILD" "$LOGS" "$SHARE" "$PULUMI_HOME_DIR"
  if [[ "$MODE" == "--env" ]]; then
    print_env
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "the Go toolchain is needed to build the e2e tools (go1.26 or newer on PATH)."
    return 2
  fi
  local ready=0
  local -a steps=(
    "pulumi|$(pulumi_stamp)|build_pulumi|pulumi"
    "kube|$(kube_stamp)|build_kube|kube-apiserver kube-controller-manager kube-scheduler etcd"
    "kwok|$(kwok_stamp)|build_kwok|kwok"
  )
  local step name want fn bins
  for step in "${steps[@]}"; do
    IFS='|' read -r name want fn bins <<<"$step"
    # shellcheck disable=SC2086 # bins is a space-separated list of binary names
    if stamp_ok "$name" "$want" $bins && { [[ "$name" != kwok ]] || [[ -f "$SHARE/kwok-stages.yaml" ]]; }; then
      continue
    fi
    if [[ "$MODE" == "--check" ]]; then
      log "not built: $name ($want)"
      ready=1
      continue
    fi
    log "building $name ($want); log: $LOGS/$name.log"
    local t0 secs
    t0=$(date +%s)
    if "$fn" >"$LOGS/$name.log" 2>&1; then
      secs=$(($(date +%s) - t0))
      echo "$(date -u +%FT%TZ) $name $secs s ($want)" >>"$LOGS/build-times.log"
      log "built $name in ${secs}s"
      write_stamp "$name" "$want"
    else
      log "building $name failed; the end of $LOGS/$name.log:"
      tail -n 20 "$LOGS/$name.log" >&2
      ready=1
    fi
  done
  # A missing plugin outranks a missing build: no build here can provide it.
  ensure_plugins || ready=2
  if [[ "$ready" == 0 ]]; then
    log "ready: pulumi v$PULUMI_VERSION, kube v$KUBE_VERSION, kwok v$KWOK_VERSION in $BIN;" \
      "language host $(find_plugin pulumi-language-nodejs);" \
      "kubernetes provider $(find_plugin pulumi-resource-kubernetes || true)"
  fi
  return "$ready"
}

main
