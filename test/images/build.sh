#!/usr/bin/env bash
# Builds the workspace's two images for real, from images/dask.Dockerfile and
# images/runner.Dockerfile, without a Docker daemon and without any container registry:
#
#   1. a base image from Debian bookworm packages (mmdebstrap: CPython 3.11 from Debian, pip,
#      `python` -> python3), imported into a buildah store of our own; cached under
#      ~/.cache/dask-workspace/images/ keyed by its inputs (suite, mirrors, package list, hooks,
#      mmdebstrap version);
#   2. both Dockerfiles built on it with `buildah bud --build-arg BASE_IMAGE=...`: the
#      `pip install --require-hashes` of runner/requirements.lock runs for real against PyPI.
#      buildah's layer cache makes a rebuild with unchanged inputs take seconds.
#
#   bash test/images/build.sh            build (or reuse) the base and both images; print the
#                                        `export` lines the image tests read (IMAGES_*)
#   bash test/images/build.sh --check    exit 0 when the tools are there (or can be installed),
#                                        3 when this machine cannot build images (the reason is said)
#
# Needs root (buildah's store, mmdebstrap, and runc for the tests). On Debian, buildah, mmdebstrap
# and runc are installed with apt-get when missing. Exit code 3 means "cannot build here" (said on
# stderr), so callers can report a skip instead of a failure; any other non-zero code is a failure.
#
# Environment: DASK_WORKSPACE_CACHE (default ~/.cache/dask-workspace); IMAGES_DEBIAN_MIRROR and
# IMAGES_DEBIAN_SECURITY_MIRROR override the mirrors (default: what this machine's apt uses, else
# deb.debian.org). See docs/images.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${DASK_WORKSPACE_CACHE:-$HOME/.cache/dask-workspace}"
IMAGES_DIR="$CACHE/images"
STORE="$CACHE/containers/storage"
RUNROOT="$CACHE/containers/run"
LOGS="$CACHE/logs"
MODE="${1:-build}"

SUITE="bookworm"
# CPython 3.11 (Debian bookworm's python3 is 3.11.2: the lock's cp311 wheels fit it), pip, the
# `python` command the Dockerfiles call, and the CA bundle pip verifies PyPI with.
BASE_PACKAGES="python3,python3-pip,python-is-python3,ca-certificates"
BASE_REPO="localhost/dask-workspace-base"
TAG="e2e"

log() { echo "images: $*" >&2; }
cannot() {
  log "SKIPPED: $*"
  exit 3
}

buildah_() { buildah --root "$STORE" --runroot "$RUNROOT" --storage-driver overlay "$@"; }

# The mirror this machine's apt uses for SUITE (deb822 or one-line sources), else deb.debian.org.
apt_mirror() {
  local kind="$1" f uri
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    if [[ "$kind" == security ]]; then
      uri="$(grep -hoE '(URIs:|deb) +https?://[^ ]*debian-security[^ ]*' "$f" | head -n1 | awk '{print $2}')"
    else
      uri="$(grep -hoE '(URIs:|deb) +https?://[^ ]*' "$f" | awk '{print $2}' | grep -v -- '-security' | grep '/debian/\?$' | head -n1)"
    fi
    if [[ -n "$uri" ]]; then
      echo "${uri%/}"
      return
    fi
  done
  [[ "$kind" == security ]] && echo "http://deb.debian.org/debian-security" || echo "http://deb.debian.org/debian"
}

ensure_tools() {
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  ((${#missing[@]} == 0)) && return 0
  if [[ "$(id -u)" != 0 ]]; then
    cannot "needs root to install ${missing[*]} and to build images (run as root, or install them)"
  fi
  command -v apt-get >/dev/null 2>&1 || cannot "${missing[*]} missing and no apt-get to install them"
  log "installing ${missing[*]} from Debian (apt-get)"
  local t0=$(date +%s)
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      buildah mmdebstrap runc ca-certificates; } >"$LOGS/images-apt.log" 2>&1; then
    tail -n 15 "$LOGS/images-apt.log" >&2
    cannot "apt-get could not install ${missing[*]} (log: $LOGS/images-apt.log)"
  fi
  log "installed in $(($(date +%s) - t0))s"
}

mkdir -p "$IMAGES_DIR" "$LOGS" "$STORE" "$RUNROOT"
[[ "$(uname -s)" == Linux ]] || cannot "building images needs Linux"
[[ "$(id -u)" == 0 ]] || cannot "building images needs root here (buildah's store, mmdebstrap, runc)"
ensure_tools
if [[ "$MODE" == --check ]]; then
  exit 0
fi

MIRROR="${IMAGES_DEBIAN_MIRROR:-$(apt_mirror main)}"
SECURITY_MIRROR="${IMAGES_DEBIAN_SECURITY_MIRROR:-$(apt_mirror security)}"
SOURCES="deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main"
# pip may install into the system Python, as in the official python images (PEP 668's marker
# would refuse it); documentation, man pages and locales are left out to keep the base small.
HOOK='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
DPKG_EXCLUDES="path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/locale/*"
BASE_RECIPE="recipe=1 suite=$SUITE variant=minbase packages=$BASE_PACKAGES
$SOURCES
hook=$HOOK
$DPKG_EXCLUDES
mmdebstrap=$(mmdebstrap --version 2>/dev/null | head -n1)"
BASE_KEY="$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-16)"
BASE_TAR="$IMAGES_DIR/base-$BASE_KEY.tar"
BASE_REF="$BASE_REPO:$BASE_KEY"

# --- 1. the base image ------------------------------------------------------------------------
if [[ ! -s "$BASE_TAR" ]]; then
  log "building the base image $BASE_KEY with mmdebstrap ($SUITE from $MIRROR); log: $LOGS/images-base.log"
  t0=$(date +%s)
  dpkgopts=()
  while read -r line; do dpkgopts+=(--dpkgopt="$line"); done <<<"$DPKG_EXCLUDES"
  if ! printf '%s\n' "$SOURCES" | nice -n 10 mmdebstrap --variant=minbase --include="$BASE_PACKAGES" \
    --aptopt='Acquire::Retries "3"' "${dpkgopts[@]}" --customize-hook="$HOOK" \
    "$SUITE" "$BASE_TAR.part" - >"$LOGS/images-base.log" 2>&1; then
    rm -f "$BASE_TAR.part"
    tail -n 25 "$LOGS/images-base.log" >&2
    log "mmdebstrap failed (log: $LOGS/images-base.log)"
    exit 1
  fi
  mv "$BASE_TAR.part" "$BASE_TAR"
  printf '%s\n' "$BASE_RECIPE" >"$BASE_TAR.inputs"
  # Older bases (other inputs) are of no more use.
  find "$IMAGES_DIR" -maxdepth 1 -name 'base-*.tar*' ! -name "base-$BASE_KEY.tar*" -delete
  echo "$(date -u +%FT%TZ) image-base $(($(date +%s) - t0)) s ($BASE_KEY, $(du -m "$BASE_TAR" | cut -f1) MiB)" >>"$LOGS/build-times.log"
  log "base image built in $(($(date +%s) - t0))s"
fi
if ! buildah_ inspect --type image "$BASE_REF" >/dev/null 2>&1; then
  log "importing $BASE_TAR as $BASE_REF"
  ctr="$(buildah_ from scratch)"
  buildah_ add --quiet "$ctr" "$BASE_TAR" / >/dev/null
  buildah_ config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 --label "dask-workspace.base-inputs=$BASE_KEY" "$ctr"
  buildah_ commit --quiet --rm "$ctr" "$BASE_REF" >/dev/null
fi

# --- 2. the two images from our Dockerfiles ---------------------------------------------------
# pip in the build verifies PyPI against this machine's CA bundle (mounted for RUN steps only,
# never written into an image), so a machine whose traffic passes a TLS proxy builds too.
volumes=()
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  volumes=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
declare -A REFS=()
for name in dask runner; do
  ref="localhost/dask-workspace/$name:$TAG"
  t0=$(date +%s)
  log "buildah bud images/$name.Dockerfile on $BASE_REF; log: $LOGS/images-$name.log"
  if ! (cd "$ROOT" && nice -n 10 buildah --root "$STORE" --runroot "$RUNROOT" --storage-driver overlay \
    bud --isolation chroot --network host --layers --pull=false \
    --file "images/$name.Dockerfile" --ignorefile "images/$name.Dockerfile.dockerignore" \
    --build-arg "BASE_IMAGE=$BASE_REF" "${volumes[@]}" --tag "$ref" .) >"$LOGS/images-$name.log" 2>&1; then
    tail -n 25 "$LOGS/images-$name.log" >&2
    log "building images/$name.Dockerfile failed (log: $LOGS/images-$name.log)"
    exit 1
  fi
  secs=$(($(date +%s) - t0))
  echo "$(date -u +%FT%TZ) image-$name $secs s (base $BASE_KEY)" >>"$LOGS/build-times.log"
  log "built $ref in ${secs}s"
  REFS[$name]="$ref"
done
# Layers no image refers to any more (an older lock or source tree).
buildah_ rmi --prune >/dev/null 2>&1 || true

echo "export IMAGES_STORE=\"$STORE\""
echo "export IMAGES_RUNROOT=\"$RUNROOT\""
echo "export IMAGES_BASE=\"$BASE_REF\""
echo "export IMAGES_DASK=\"${REFS[dask]}\""
echo "export IMAGES_RUNNER=\"${REFS[runner]}\""
