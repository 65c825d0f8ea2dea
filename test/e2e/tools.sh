#!/usr/bin/env bash
# Provides the tools for `npm run test:e2e`, built from package registries alone and cached outside
# the repository.
#
#   bash test/e2e/tools.sh           build what is missing (in parallel); rebuild only what a pin or
#                                    its source changed; exit non-zero with the reason when a build fails
#   bash test/e2e/tools.sh --check   builds nothing; exit 0 when every tool is ready, 1 when some must
#                                    still be built, 2 when they cannot be (no Go toolchain)
#   bash test/e2e/tools.sh --env     print `export` lines (PATH, PULUMI_HOME, E2E_LANGHOST,
#                                    E2E_PROVIDER) for the tools this run uses
#   --node (with any mode)           also the real node of `npm run test:node` (docs/e2e.md): kubelet
#                                    and kube-proxy, containerd with its runc shim, CoreDNS,
#                                    kube-router (the NetworkPolicy engine)
#
# Everything is built with the Go toolchain from the Go module proxy (our machines reach no other
# download host):
#   - pulumi (the CLI), pinned to package.json's @pulumi/pulumi;
#   - kube-apiserver, kube-controller-manager, kube-scheduler (k8s.io/kubernetes) and etcd (the
#     go.etcd.io/etcd/server/v3 version that Kubernetes itself pins), from one throwaway module;
#   - kwok (simulated nodes, so pods become Ready and `pulumi up` awaits real rollouts);
#   - the Kubernetes provider plugin pulumi-resource-kubernetes, from the one version of
#     github.com/pulumi/pulumi-kubernetes/provider/v4 the proxy serves (a pseudo-version that is
#     exactly the v4.25.0 tag; every tagged version is refused), used only when no official
#     provider at @pulumi/kubernetes's version is installed;
#   - our own test-only Node.js language host (test/e2e/langhost), used only when no official
#     pulumi-language-nodejs is installed. The proxy serves no official host that fits.
#   - for the real node (--node): kubelet and kube-proxy from the same k8s.io/kubernetes build
#     (built right after the control plane, so they reuse its compiled packages), containerd 2.3
#     (the LTS line that supports both Kubernetes 1.36 and this machine's cgroup v1; Debian's 1.6
#     is not supported by a 1.36 kubelet) with ctr and the runc shim, and a CoreDNS built with only
#     the plugins a cluster DNS needs (its full plugin set would take longer to build than the rest).
#     And kube-router 2.1, whose firewall controller alone enforces NetworkPolicy on the node.
# docs/e2e.md says what each one is and what ours does not do.
#
# Environment: DASK_WORKSPACE_CACHE (default ~/.cache/dask-workspace); E2E_NODE_TOOLS=1 builds the
# node's tools too, as optional (`npm run test:e2e` in .ci/run: a node tool that fails to build is
# reported and left out, and `npm run test:node` then says it is skipped; with --node such a
# failure fails the build); E2E_BUILD_SERIAL=1 builds one
# tool after another instead of all at once; E2E_KEEP_GOCACHE=1 keeps Go's build cache after a build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
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
CONTAINERD_VERSION="2.3.7"
COREDNS_VERSION="1.14.7"
KUBE_ROUTER_VERSION="2.1.0"
# The Kubernetes provider: the proxy refuses every tagged version of provider/v4 and serves this
# pseudo-version, whose commit is the v4.25.0 tag. Pinned, so every build is the same program.
PROVIDER_MODULE_VERSION="v4.0.0-20260115033456-f47bc2d6f199"
PROVIDER_BUILT_VERSION="4.25.0"
LANGHOST_SRC="$ROOT/test/e2e/langhost"
# Where the two fallbacks live: on PATH only when they are the ones chosen (an ambient plugin on
# PATH wins over Pulumi's plugin cache, so an official provider must not be shadowed by ours).
LANGHOST_BIN="$CACHE/langhost/bin"
PROVIDER_BIN="$CACHE/provider/bin"

# The pulumi pkg/v3 release is newer than the checksum database's copy (its lookup answers 404), so
# the module proxy alone vouches for github.com/pulumi/pulumi modules; everything else is checked.
export GONOSUMDB="github.com/pulumi/pulumi"
# Two parallel compiles: this is a 2-core machine shared with other work.
export GOFLAGS="-buildvcs=false -p=${E2E_GO_PARALLEL:-2}"
export GOTOOLCHAIN=local
# A build cache of our own, emptied after each successful build round (E2E_KEEP_GOCACHE=1 keeps it),
# so the e2e tools never leave gigabytes behind; its peak size is logged in logs/build-times.log.
export GOCACHE="$CACHE/go-build"

MODE="ensure"
NODE_TOOLS="${E2E_NODE_TOOLS:-0}"
NODE_OPTIONAL=$NODE_TOOLS
for arg in "$@"; do
  case "$arg" in
    --node) NODE_TOOLS=1 NODE_OPTIONAL=0 ;;
    --check | --env) MODE="$arg" ;;
    *) echo "e2e-tools: unknown argument $arg (use --check, --env, --node)" >&2 && exit 2 ;;
  esac
done

log() { echo "e2e-tools: $*" >&2; }

go_version() { go env GOVERSION 2>/dev/null || echo "no-go"; }

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
# kube_module: the throwaway module in $BUILD/kube that requires k8s.io/kubernetes; prints the
# ldflags that stamp the version the way Kubernetes' own build (hack/lib/version.sh) does, so
# /version reports v1.36.3 instead of v0.0.0-master (clients such as the Pulumi provider read it).
kube_module() {
  local dir="$BUILD/kube" minor="${KUBE_VERSION#*.}"
  local staging_version="0.${minor}" mod etcd_version ldflags pkg
  mkdir -p "$dir"
  cd "$dir"
  mod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).GoMod));')"
  # Made again unless it requires this version and lists every tool (the last one added).
  if [[ ! -f go.mod ]] || ! grep -q "k8s.io/kubernetes v$KUBE_VERSION" go.mod ||
    ! grep -q "k8s.io/kubernetes/cmd/kube-proxy" go.mod; then
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
      "k8s.io/kubernetes/cmd/kubelet@v$KUBE_VERSION" \
      "k8s.io/kubernetes/cmd/kube-proxy@v$KUBE_VERSION" \
      "go.etcd.io/etcd/server/v3@$etcd_version" >&2
  fi
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=${KUBE_VERSION%%.*}"
    ldflags+=" -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
  done
  echo "$ldflags"
}

kube_stamp() { echo "kubernetes=$KUBE_VERSION recipe=3 $(go_version)"; }
build_kube() {
  (
    local ldflags
    ldflags="$(kube_module)"
    cd "$BUILD/kube"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  )
}

# --- the real node (--node) ---------------------------------------------------------------------
# kubelet and kube-proxy: the same module and version as the control plane. main() builds them
# right after build_kube in the same round, so most packages come from the Go build cache.
nodekube_stamp() { echo "kubelet=$KUBE_VERSION recipe=1 $(go_version)"; }
build_nodekube() {
  (
    local ldflags
    ldflags="$(kube_module)"
    cd "$BUILD/kube"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/" k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kube-proxy
  )
}

# containerd, its runc shim and ctr (to load our images). Pure Go: the snapshotters that need cgo
# or kernel features this test does not use are left out by containerd's own build tags.
containerd_stamp() { echo "containerd=$CONTAINERD_VERSION recipe=1 $(go_version)"; }
build_containerd() {
  local mod="github.com/containerd/containerd/v2" v="v$CONTAINERD_VERSION"
  CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $mod/version.Version=$v -X $mod/version.Package=$mod" \
    "$mod/cmd/containerd@$v" "$mod/cmd/containerd-shim-runc-v2@$v" "$mod/cmd/ctr@$v"
}

# kube-router, run only as the node's NetworkPolicy engine (its firewall controller: iptables and
# ipset rules per pod; its routing and service proxy stay off, the CNI bridge and kube-proxy do
# those). It enforces ingress and egress policies alike, as AKS's engines do.
kube_router_stamp() { echo "kube-router=$KUBE_ROUTER_VERSION recipe=1 $(go_version)"; }
build_kube_router() {
  local mod="github.com/cloudnativelabs/kube-router/v2" v="v$KUBE_ROUTER_VERSION"
  CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath \
    -ldflags "-s -w -X $mod/pkg/version.Version=$v" "$mod/cmd/kube-router@$v"
}

# CoreDNS with the plugins a cluster DNS uses: kubernetes, and no forward (names outside the
# cluster are not resolved on purpose: this node reaches no other network). Upstream documents this way of
# building: a main package that imports coremain and the chosen plugins.
coredns_stamp() { echo "coredns=$COREDNS_VERSION recipe=2 $(go_version)"; }
build_coredns() {
  local dir="$BUILD/coredns"
  rm -rf "$dir" && mkdir -p "$dir"
  (
    cd "$dir"
    cat >main.go <<'EOF'
// CoreDNS with a cluster DNS's plugins only (dask-workspace e2e, test/e2e/tools.sh).
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
EOF
    printf 'module dask-workspace.local/e2e-tools/coredns\n\ngo 1.26\n' >go.mod
    go get "github.com/coredns/coredns@v$COREDNS_VERSION"
    go mod tidy
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/coredns" .
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

# --- the Kubernetes provider plugin -------------------------------------------------------------
# The module's own go.mod points its SDK at ../sdk (a `replace` that only applies inside its
# repository) and its main package embeds a generated schema-embed.json. So: copy the small main
# package into a throwaway module, generate the embedded files with the package's own generate.go
# (VERSION sets the schema's version), and build with the version the plugin reports.
provider_stamp() { echo "provider=$PROVIDER_MODULE_VERSION as $PROVIDER_BUILT_VERSION recipe=1 $(go_version)"; }
build_provider() {
  local dir="$BUILD/provider" mod="github.com/pulumi/pulumi-kubernetes/provider/v4" src
  rm -rf "$dir" && mkdir -p "$dir" "$PROVIDER_BIN"
  (
    cd "$dir"
    src="$(go mod download -json "$mod@$PROVIDER_MODULE_VERSION" | node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).Dir));')"
    cp "$src/cmd/pulumi-resource-kubernetes/"{main.go,generate.go,schema.json,terraform-mapping.json} .
    chmod u+w ./*
    printf 'module dask-workspace.local/e2e-tools/provider\n\ngo 1.26\n' >go.mod
    go get "$mod@$PROVIDER_MODULE_VERSION"
    go mod tidy
    VERSION="$PROVIDER_BUILT_VERSION" go run generate.go
    go build -trimpath \
      -ldflags "-s -w -X $mod/pkg/version.Version=$PROVIDER_BUILT_VERSION" \
      -o "$PROVIDER_BIN/pulumi-resource-kubernetes" .
  )
}

# --- our test language host -----------------------------------------------------------------------
# Keyed by its source: any edit to test/e2e/langhost rebuilds it.
langhost_stamp() {
  echo "langhost=$(cat "$LANGHOST_SRC"/go.mod "$LANGHOST_SRC"/go.sum "$LANGHOST_SRC"/*.go | sha256sum | cut -c1-16) $(go_version)"
}
build_langhost() {
  mkdir -p "$LANGHOST_BIN"
  (cd "$LANGHOST_SRC" && go build -trimpath -ldflags "-s -w" -o "$LANGHOST_BIN/pulumi-language-nodejs" .)
}

# --- official plugins, when installed ------------------------------------------------------------
# official_on_path NAME: an executable NAME on PATH that is not one of our own fallbacks, or in the
# cache's bin/ (placed there by hand, as before this script could build them).
official_on_path() {
  if [[ -x "$BIN/$1" ]]; then
    echo "$BIN/$1"
    return
  fi
  local dir
  local IFS=:
  for dir in $PATH; do
    [[ "$dir" == "$LANGHOST_BIN" || "$dir" == "$PROVIDER_BIN" ]] && continue
    if [[ -x "$dir/$1" ]]; then
      echo "$dir/$1"
      return
    fi
  done
}

# official_provider: where an official provider at @pulumi/kubernetes's version is, or nothing.
official_provider() {
  local p
  p="$(official_on_path pulumi-resource-kubernetes)"
  if [[ -n "$p" ]]; then
    echo "$p"
    return
  fi
  [[ -x "$BIN/pulumi" ]] || return 0
  PULUMI_HOME="$PULUMI_HOME_DIR" "$BIN/pulumi" plugin ls --json 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const want = process.argv[1];
      const p = JSON.parse(s || "[]").find((p) => p.name === "kubernetes" && p.kind === "resource" && p.version === want);
      if (p) console.log(`${p.path ?? "plugin cache"} (pulumi plugin install, v${want})`);
    });' "$K8S_PROVIDER_VERSION"
}

print_env() {
  echo "export PATH=\"$BIN:\$PATH\""
  echo "export PULUMI_HOME=\"$PULUMI_HOME_DIR\""
  local lang provider
  lang="$(official_on_path pulumi-language-nodejs)"
  if [[ -n "$lang" ]]; then
    echo "export E2E_LANGHOST=\"official: $lang ($("$lang" -version 2>/dev/null || echo '?'))\""
  else
    echo "export PATH=\"$LANGHOST_BIN:\$PATH\""
    echo "export E2E_LANGHOST=\"ours (test/e2e/langhost, test-only): $LANGHOST_BIN/pulumi-language-nodejs ($("$LANGHOST_BIN/pulumi-language-nodejs" -version 2>/dev/null || echo 'not built'))\""
  fi
  provider="$(official_provider)"
  if [[ -n "$provider" ]]; then
    echo "export E2E_PROVIDER=\"official: $provider\""
  else
    echo "export PATH=\"$PROVIDER_BIN:\$PATH\""
    echo "export E2E_PROVIDER=\"built here: $PROVIDER_BIN/pulumi-resource-kubernetes v$PROVIDER_BUILT_VERSION from provider/v4@$PROVIDER_MODULE_VERSION (the SDK is @pulumi/kubernetes $K8S_PROVIDER_VERSION: expect a version-mismatch warning)\""
  fi
}

dir_mib() { du -sm "$1" 2>/dev/null | cut -f1 || echo 0; }

# run_build NAME WANT FN FILES: one build with its log, its time, and its stamp on success. A build
# succeeds when FN does AND every one of FILES exists afterwards (they are removed first): a build
# function runs where `set -e` does not apply, so a failed command before its last one would
# otherwise go unnoticed.
run_build() {
  local name="$1" want="$2" fn="$3" files="$4" t0 secs f missing=""
  t0=$(date +%s)
  for f in $files; do rm -f "$f"; done
  if "$fn" >"$LOGS/$name.log" 2>&1; then
    for f in $files; do
      [[ -e "$f" ]] || missing+=" $f"
    done
  else
    missing=" (the build exited non-zero)"
  fi
  if [[ -z "$missing" ]]; then
    secs=$(($(date +%s) - t0))
    echo "$(date -u +%FT%TZ) $name $secs s ($want)" >>"$LOGS/build-times.log"
    write_stamp "$name" "$want"
    log "built $name in ${secs}s"
  else
    log "building $name failed after $(($(date +%s) - t0))s; not built:$missing; the end of $LOGS/$name.log:"
    tail -n 25 "$LOGS/$name.log" >&2
    return 1
  fi
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
  local -a steps=(
    "pulumi|$(pulumi_stamp)|build_pulumi|$BIN/pulumi"
    "kube|$(kube_stamp)|build_kube|$BIN/kube-apiserver $BIN/kube-controller-manager $BIN/kube-scheduler $BIN/etcd"
    "kwok|$(kwok_stamp)|build_kwok|$BIN/kwok $SHARE/kwok-stages.yaml"
  )
  # The two plugins are built only when no official one is installed.
  if [[ -z "$(official_provider)" ]]; then
    steps+=("provider|$(provider_stamp)|build_provider|$PROVIDER_BIN/pulumi-resource-kubernetes")
  fi
  if [[ -z "$(official_on_path pulumi-language-nodejs)" ]]; then
    steps+=("langhost|$(langhost_stamp)|build_langhost|$LANGHOST_BIN/pulumi-language-nodejs")
  fi
  if ((NODE_TOOLS)); then
    steps+=(
      "nodekube|$(nodekube_stamp)|build_nodekube|$BIN/kubelet $BIN/kube-proxy"
      "containerd|$(containerd_stamp)|build_containerd|$BIN/containerd $BIN/containerd-shim-runc-v2 $BIN/ctr"
      "coredns|$(coredns_stamp)|build_coredns|$BIN/coredns"
      "kube-router|$(kube_router_stamp)|build_kube_router|$BIN/kube-router"
    )
  fi
  local step name want fn files f todo=() chained="" cname cwant cfn cfiles
  for step in "${steps[@]}"; do
    IFS='|' read -r name want fn files <<<"$step"
    local ok=1
    [[ -f "$STAMPS/$name" && "$(cat "$STAMPS/$name")" == "$want" ]] || ok=0
    for f in $files; do [[ -e "$f" ]] || ok=0; done
    ((ok)) && continue
    log "not built: $name ($want)"
    todo+=("$step")
  done
  if [[ "$MODE" == "--check" ]]; then
    ((${#todo[@]} == 0)) || return 1
    return 0
  fi
  if ((${#todo[@]} > 0)); then
    local t0=$(date +%s) failed=0 pids=() names=() peak=0 size
    log "building ${#todo[@]} tool(s) $([[ "${E2E_BUILD_SERIAL:-0}" == 1 ]] && echo 'one after another' || echo 'at once'); logs in $LOGS/"
    # kubelet and kube-proxy follow the control plane in the same job when both are due: built
    # after it, they reuse its compiled packages (in parallel, both would compile them).
    for step in "${todo[@]}"; do
      [[ "$step" == nodekube\|* ]] && chained="$step"
    done
    if [[ -n "$chained" ]] && ! printf '%s\n' "${todo[@]}" | grep -q '^kube|'; then chained=""; fi
    for step in "${todo[@]}"; do
      IFS='|' read -r name want fn files <<<"$step"
      [[ -n "$chained" && "$name" == nodekube ]] && continue
      if [[ -n "$chained" && "$name" == kube ]]; then
        IFS='|' read -r cname cwant cfn cfiles <<<"$chained"
        if [[ "${E2E_BUILD_SERIAL:-0}" == 1 ]]; then
          { run_build kube "$want" "$fn" "$files" && run_build "$cname" "$cwant" "$cfn" "$cfiles"; } || failed=1
        else
          { run_build kube "$want" "$fn" "$files" && run_build "$cname" "$cwant" "$cfn" "$cfiles"; } &
          pids+=("$!")
          names+=("kube+$cname")
        fi
        continue
      fi
      if [[ "${E2E_BUILD_SERIAL:-0}" == 1 ]]; then
        run_build "$name" "$want" "$fn" "$files" || failed=1
      else
        run_build "$name" "$want" "$fn" "$files" &
        pids+=("$!")
        names+=("$name")
      fi
    done
    # While parallel builds run, sample the build cache's size for the log.
    while ((${#pids[@]} > 0)); do
      local i alive=()
      for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then alive+=("$i"); else wait "${pids[$i]}" || failed=1; unset "pids[$i]"; fi
      done
      size=$(dir_mib "$GOCACHE")
      ((size > peak)) && peak=$size
      ((${#alive[@]} == 0)) && break
      sleep 10
    done
    size=$(dir_mib "$GOCACHE")
    ((size > peak)) && peak=$size
    echo "$(date -u +%FT%TZ) round ${#todo[@]} tool(s) $(($(date +%s) - t0)) s; Go build cache peak ${peak} MiB, module cache $(dir_mib "$(go env GOMODCACHE)") MiB" >>"$LOGS/build-times.log"
    log "build round took $(($(date +%s) - t0))s; Go build cache peak ${peak} MiB"
    # What failed is read from the stamps: a chained job (kube, then kubelet) can fail in either.
    failed=0
    for step in "${todo[@]}"; do
      IFS='|' read -r name want fn files <<<"$step"
      [[ -f "$STAMPS/$name" && "$(cat "$STAMPS/$name")" == "$want" ]] && continue
      case "$name" in
        nodekube | containerd | coredns | kube-router)
          if ((NODE_OPTIONAL)); then
            log "the node's tool $name was not built; the real-node test will be skipped"
            continue
          fi
          ;;
      esac
      failed=1
    done
    if ((failed)); then
      log "a build failed (see above); the e2e cannot run"
      return 1
    fi
    if [[ "${E2E_KEEP_GOCACHE:-0}" != 1 ]]; then
      go clean -cache
      log "emptied the Go build cache $GOCACHE (E2E_KEEP_GOCACHE=1 keeps it)"
    fi
  fi
  eval "$(print_env)"
  log "ready: pulumi v$PULUMI_VERSION, kube v$KUBE_VERSION, kwok v$KWOK_VERSION in $BIN"
  ((NODE_TOOLS)) && log "  node: kubelet and kube-proxy v$KUBE_VERSION, containerd v$CONTAINERD_VERSION, coredns v$COREDNS_VERSION, kube-router v$KUBE_ROUTER_VERSION"
  log "  language host: $E2E_LANGHOST"
  log "  kubernetes provider: $E2E_PROVIDER"
  return 0
}

main
