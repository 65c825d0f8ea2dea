"""Where the sir-grid's wall time goes: starts the local workspace as ``npm run bench`` does and
runs examples/studies/sir-grid.yaml N times under bench/phases/traced_run.py.

    .venv/bin/python bench/phases/sir_phases.py N OUT_DIR [runner flags...]
    .venv/bin/python bench/phases/analyze.py OUT_DIR/trace0.json   # phases, per-thread idle
    .venv/bin/python bench/phases/gaps.py OUT_DIR/trace0.json      # idle gaps between tasks

VARIANTS=base,new with BASE_SRC=<a checkout's runner/src> alternates runs of another version of
the runner (the workers run this tree's)."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import workspace_bench as B

n = int(sys.argv[1])
outdir = pathlib.Path(sys.argv[2])
outdir.mkdir(parents=True, exist_ok=True)
extra = sys.argv[3:]
with tempfile.TemporaryDirectory(prefix="sir-phases-") as tmp:
    work = pathlib.Path(tmp)
    (work / "local").mkdir()
    # STACK: another stack name or config file (e.g. one with a different workers.saturation).
    ws = B.Workspace(work=work / "local", stack=os.environ.get("STACK", "local"))
    try:
        B.run_runner(ws, work, "warm", B.study_doc(groups=8, median=0.01, sigma=0, reps=8))
        sir = yaml.safe_load((ROOT / "examples/studies/sir-grid.yaml").read_text())
        variants = os.environ.get("VARIANTS", "new").split(",")
        for j in range(n * len(variants)):
            i = j
            variant = variants[j % len(variants)]
            study = work / "studies" / f"sir{i}" / "sir.yaml"
            study.parent.mkdir(parents=True)
            study.write_text(yaml.safe_dump(sir, sort_keys=False))
            ws.wait_for_workers()
            env = ws.env | {"TRACE_OUT": str(outdir / f"trace{i}.json")}
            if variant == "base":
                env["PYTHONPATH"] = os.environ["BASE_SRC"]
            cmd = [
                sys.executable,
                str(ROOT / "bench/phases/traced_run.py"),
                "run",
                str(study),
                "--scheduler",
                ws.address,
                "--results",
                str(work / f"res{i}"),
                "--summary",
                str(outdir / f"summary{i}.json"),
                "--progress-interval",
                "60",
                *extra,
            ]
            t0 = time.time()
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            (outdir / f"log{i}.txt").write_text(p.stdout + p.stderr)
            s = json.loads((outdir / f"summary{i}.json").read_text())
            print(
                i,
                variant,
                "rc",
                p.returncode,
                "proc",
                round(time.time() - t0, 2),
                "wall",
                s["wall_seconds"],
                "util",
                s["utilization"],
                "tasks",
                s["tasks_submitted"],
                "thr_s",
                s["thread_seconds"],
                "task_s",
                s["task_seconds"],
                os.getloadavg(),
                flush=True,
            )
    finally:
        ws.stop()
