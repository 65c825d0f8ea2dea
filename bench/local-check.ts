/**
 * How fast `npm run local` reports a typo in a study: the pre-start check
 * (`python -m dask_workspace check --no-run`), measured end to end from a study folder outside the
 * repository, as a user runs it. Goal: under 3 s from the command to the message.
 *
 *   bash scripts/with-env.sh tsx bench/local-check.ts [runs]      (default 5 runs)
 *
 * Prints each run's wall time and the check's own time, then the median. Nothing is started by
 * these runs (the check refuses the study first), so they take seconds.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "..");
const runs = Number(process.argv[2] ?? 5);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "local-check-bench-"));
fs.mkdirSync(path.join(dir, "growth"));
fs.writeFileSync(path.join(dir, "growth", "__init__.py"), "");
fs.writeFileSync(
  path.join(dir, "growth", "model.py"),
  "def simulate(params, seed):\n    return {'x': 1.0}\n\ndef mean(replicates, params):\n    return 1.0\n",
);
// The typo: "growht" for "growth".
fs.writeFileSync(
  path.join(dir, "study.yaml"),
  "name: typo\nmodel: growht.model:simulate\ntargets:\n  m: growth.model:mean\n" +
    "parameters:\n  sets: [{a: 1}]\nreplicates: 2\nseed: 1\n",
);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const walls: number[] = [];
const checks: number[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(
      "npm",
      ["--prefix", ROOT, "run", "local", "--silent", "--", "--study", "study.yaml"],
      {
        cwd: dir,
        encoding: "utf8",
      },
    );
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const check = Number(/study checked in ([\d.]+) s/.exec(r.stderr)?.[1] ?? NaN);
    const named = r.stderr.includes("growht");
    walls.push(wall);
    checks.push(check);
    console.log(
      `run ${i + 1}: exit ${r.status}, wall ${wall.toFixed(2)} s, check ${check.toFixed(1)} s, typo named: ${named}`,
    );
  }
  const load = os.loadavg()[0]!.toFixed(1);
  console.log(
    `median: wall ${median(walls).toFixed(2)} s, check ${median(checks).toFixed(1)} s ` +
      `(goal: wall < 3 s; ${os.cpus().length} CPUs, load average ${load})`,
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
