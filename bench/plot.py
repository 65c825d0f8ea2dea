"""Draws bench/report.png from the benchmark's JSON (bench/local-bench.ts).

Panels: utilization per mode at sigma 0.5 and 1; peak scheduler tasks per mode (log scale);
peak memory (pods, scheduler, runner) at the small and the large study size.

Run: ``.venv/bin/python bench/plot.py bench/results.json bench/report.png``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MODES = ["window", "batch", "all-at-once"]
SIGMA = "\u03c3"  # the run labels use the Greek letter
MIB = 2**20


def main(argv: list[str]) -> int:
    results = json.loads(Path(argv[1]).read_text())
    runs = {r["label"]: r for r in results["runs"]}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))

    ax = axes[0]
    width = 0.38
    for i, sigma in enumerate([0.5, 1]):
        vals = [runs[f"{m} {SIGMA}={sigma:g}"]["utilization"] or 0 for m in MODES]
        xs = [j + (i - 0.5) * width for j in range(len(MODES))]
        bars = ax.bar(xs, vals, width, label=f"{SIGMA} = {sigma:g}")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.axhline(0.90, color="grey", ls="--", lw=1)
    ax.set_xticks(range(len(MODES)), MODES)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("utilization (task s / thread s)")
    ax.set_title(f"Lognormal tasks, {results['slots']} slots, equal budgets")
    ax.legend(loc="lower right")

    ax = axes[1]
    vals = [runs[f"{m} {SIGMA}=1"]["peakSchedulerTasks"] or 0 for m in MODES]
    bars = ax.bar(MODES, vals, color=["C0", "C1", "C2"])
    ax.bar_label(bars, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("peak tasks held by the scheduler")
    ax.set_title(f"Scheduler load ({SIGMA} = 1)")

    ax = axes[2]
    mem = sorted(
        (r for r in results["runs"] if r["label"].startswith("window P=")),
        key=lambda r: r["groups"],
    )
    parts = [
        ("worker pods", "peakPodsBytes"),
        ("scheduler", "peakSchedulerBytes"),
        ("runner", "peakRunnerBytes"),
    ]
    bottom = [0.0] * len(mem)
    labels = [f"P = {r['groups']}" for r in mem]
    for name, key in parts:
        vals = [(r[key] or 0) / MIB for r in mem]
        ax.bar(labels, vals, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{total:.0f} MiB", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("peak memory (MiB, cgroup peaks)")
    ax.set_title("Window mode: memory vs study size")
    ax.legend(loc="lower right")

    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
