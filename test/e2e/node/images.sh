#!/usr/bin/env bash
# The images the real node runs, as archives containerd's `ctr images import` reads:
#   - dask and runner: built from images/*.Dockerfile by test/images/build.sh (buildah), exported
#     from buildah's store as docker-archive files named by their image ID;
#   - pause, the pod sandbox: test/e2e/node/pause.c built static and put alone in an image
#     (no registry is reachable, so registry.k8s.io/pause cannot be pulled).
# Every archive is cached under $DASK_WORKSPACE_CACHE/node/images keyed by what it is made of.
# Prints `export` lines: NODE_IMAGE_{DASK,RUNNER,PAUSE} (references) and NODE_ARCHIVES (paths).
# Exit 3 when images cannot be built on this machine (test/images/build.sh says why).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CACHE="${DASK_WORKSPACE_CACHE:-$HOME/.cache/dask-workspace}"
OUT="$CACHE/node/images"
mkdir -p "$OUT"
log() { echo "node-images: $*" >&2; }

set +e
exports="$(bash "$ROOT/test/images/build.sh")"
code=$?
set -e
((code == 0)) || exit "$code"
eval "$exports"
B=(buildah --root "$IMAGES_STORE" --runroot "$IMAGES_RUNROOT" --storage-driver overlay)

archives=()
# export_image REF NAME: the docker-archive of REF, cached by image ID.
export_image() {
  local ref="$1" name="$2" id tar
  id="$("${B[@]}" inspect --type image --format '{{.FromImageID}}' "$ref")"
  tar="$OUT/$name-${id:0:16}.tar"
  if [[ ! -s "$tar" ]]; then
    find "$OUT" -maxdepth 1 -name "$name-*.tar" -delete
    log "exporting $ref to $tar"
    "${B[@]}" push --quiet "$ref" "docker-archive:$tar.part:$ref" >&2
    mv "$tar.part" "$tar"
  fi
  archives+=("$tar")
}
export_image "$IMAGES_DASK" dask
export_image "$IMAGES_RUNNER" runner

# The pause image, keyed by its source and the compiler.
PAUSE_SRC="$ROOT/test/e2e/node/pause.c"
key="$( (cat "$PAUSE_SRC"; gcc --version | head -n 1) | sha256sum | cut -c1-16)"
PAUSE_REF="localhost/dask-workspace/pause:$key"
pause_tar="$OUT/pause-$key.tar"
if [[ ! -s "$pause_tar" ]]; then
  find "$OUT" -maxdepth 1 -name 'pause-*.tar' -delete
  tmp="$(mktemp -d)"
  gcc -static -Os -o "$tmp/pause" "$PAUSE_SRC"
  ctr="$("${B[@]}" from scratch)"
  "${B[@]}" copy "$ctr" "$tmp/pause" /pause >/dev/null
  "${B[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  "${B[@]}" commit --quiet --rm "$ctr" "$PAUSE_REF" >/dev/null
  "${B[@]}" push --quiet "$PAUSE_REF" "docker-archive:$pause_tar.part:$PAUSE_REF" >&2
  mv "$pause_tar.part" "$pause_tar"
  rm -rf "$tmp"
  log "built $PAUSE_REF"
fi
archives+=("$pause_tar")

echo "export NODE_IMAGE_DASK=\"$IMAGES_DASK\""
echo "export NODE_IMAGE_RUNNER=\"$IMAGES_RUNNER\""
echo "export NODE_IMAGE_PAUSE=\"$PAUSE_REF\""
echo "export NODE_ARCHIVES=\"${archives[*]}\""
