#!/usr/bin/env bash
# `npm run test:images`: builds both images for real (test/images/build.sh: a Debian base made with
# mmdebstrap, then buildah on our Dockerfiles) and runs test/images/real.e2e.ts on them: the images
# run as real OCI containers (runc) with the pods' user, read-only root, limits and volume mounts.
#
# Exit 0 when built and passed, or when this machine cannot build images (the reason and "SKIPPED"
# are printed: no root, no apt-get); non-zero on a failed build or test. See docs/images.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
t0=$(date +%s)
set +e
exports="$(bash test/images/build.sh)"
code=$?
set -e
if ((code == 3)); then
  echo "images: the image build and tests were SKIPPED on this machine (reason above)"
  exit 0
fi
((code == 0)) || {
  echo "images: FAILED: the image build failed (see above)" >&2
  exit "$code"
}
eval "$exports"
t1=$(date +%s)
echo "images: built in $((t1 - t0))s: $IMAGES_DASK, $IMAGES_RUNNER (base $IMAGES_BASE)"
npx vitest run --config test/images/vitest.config.ts
echo "images: tests took $(($(date +%s) - t1))s; total $(($(date +%s) - t0))s"
