#!/usr/bin/env bash
# `npm run bench`: the runner benchmark on the local workspace, then bench/REPORT.md and
# bench/report.png. About 10 minutes on 2 cores. Options (environment):
#   BENCH_ARGS="--quick"       a shorter run (smaller studies) to try things out
#   PAUSED_FOREVER=1           also re-measure the paused-forever variants (about 8 more minutes);
#                              otherwise the report quotes the committed bench/paused-forever.json
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
npx tsx bench/local-bench.ts --out bench/results.json ${BENCH_ARGS:-}
if [[ "${PAUSED_FOREVER:-0}" == "1" ]]; then
  .venv/bin/python bench/paused_forever.py --hang-seconds 45 --out bench/paused-forever.json
fi
if [[ -f bench/program-eval.ts ]]; then
  npx tsx bench/program-eval.ts > bench/program-eval.txt
fi
.venv/bin/python bench/plot.py bench/results.json bench/report.png
npx tsx bench/report.ts
echo "bench: wrote bench/REPORT.md and bench/report.png"
