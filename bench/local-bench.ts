/**
 * The runner benchmark on the local workspace (`npm run bench` runs it through bench/run.sh).
 *
 * One local workspace from bench/stack.yaml (2 pods × 2 processes × 4 threads = 16 slots, pods in
 * memory cgroups) runs, one after the other:
 * 1. window vs batch vs all-at-once on lognormal task durations (σ = 0.5 and 1), P = 200 groups of
 *    R = 4 replicates + 1 aggregation, at equal memory budgets (window W = batch size B);
 * 2. the same three modes at σ = 1 with one worker process SIGKILLed 40% into the run;
 * 3. window mode at P = 200 and P = 2000 (peak memory of pods, scheduler and runner);
 * 4. the runner against a bare `as_completed` loop on trivial tasks (throughput).
 * Every figure comes from the runner's summary (measured on the scheduler) or from the cgroups.
 * Writes JSON (`--out`); bench/report.ts turns it into bench/REPORT.md.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { parseWorkspaceConfig, readStackConfigFile } from "../infra/config.js";
import { LocalWorkspace, localRunnerArgv } from "../infra/local/launcher.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const STUDIES = path.join(ROOT, "bench", "studies");

export interface RunRecord {
  label: string;
  mode: "window" | "batch" | "all-at-once";
  sigma: number;
  groups: number;
  replicates: number;
  meanSeconds: number;
  /** Groups allowed in flight (window W, batch size B; P for all-at-once). */
  budget: number;
  killed: boolean;
  exitCode: number;
  utilization: number | null;
  wallSeconds: number;
  peakInflightGroups: number;
  peakSchedulerTasks: number | null;
  tasksSubmitted: number;
  tasksRecomputed: number | null;
  workerDeaths: number;
  /** Highest peak of one worker pod's cgroup (all its processes), bytes. */
  peakPodBytes: number | null;
  /** Sum of the worker pods' cgroup peaks, bytes. */
  peakPodsBytes: number | null;
  peakSchedulerBytes: number | null;
  peakRunnerBytes: number | null;
}

export interface BenchResults {
  startedAt: string;
  machine: { cpus: number; memoryGiB: number; kernel: string };
  slots: number;
  runs: RunRecord[];
  throughput: {
    tasks: number;
    runnerTasksPerSecond: number;
    bareTasksPerSecond: number;
    runnerWallSeconds: number;
    bareWallSeconds: number;
  };
  totalSeconds: number;
}

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

/** Writes a lognormal study file and returns its path. */
function study(
  dir: string,
  opts: {
    name: string;
    groups: number;
    replicates: number;
    sigma: number;
    mean: number;
    kib: number;
  },
): string {
  const file = path.join(dir, `${opts.name}.yaml`);
  fs.writeFileSync(
    file,
    [
      `name: ${opts.name}`,
      "model: lognormal:simulate",
      "targets: {mean: 'lognormal:mean_value'}",
      "parameters:",
      "  grid:",
      `    k: {start: 0, stop: ${opts.groups - 1}, num: ${opts.groups}}`,
      `    sigma: ${opts.sigma}`,
      `    mean_seconds: ${opts.mean}`,
      `    result_kib: ${opts.kib}`,
      `replicates: ${opts.replicates}`,
      "seed: 2026",
      "",
    ].join("\n"),
  );
  return file;
}

async function runOne(
  ws: LocalWorkspace,
  tmp: string,
  spec: {
    label: string;
    mode: RunRecord["mode"];
    sigma: number;
    groups: number;
    replicates: number;
    mean: number;
    kib: number;
    budget: number;
    /** SIGKILL one worker process after this many seconds. */
    killAfter?: number;
  },
): Promise<RunRecord> {
  const name = spec.label.replace(/[^A-Za-z0-9-]/g, "-");
  const studyFile = study(tmp, {
    name,
    groups: spec.groups,
    replicates: spec.replicates,
    sigma: spec.sigma,
    mean: spec.mean,
    kib: spec.kib,
  });
  const summaryPath = path.join(tmp, `${name}.summary.json`);
  const modeArgs =
    spec.mode === "batch"
      ? ["--mode", "batch", "--batch-size", String(spec.budget)]
      : ["--mode", "window", "--window", String(spec.budget)];
  const argv = [
    ...localRunnerArgv(ws.config, {
      studyFile,
      results: path.join(tmp, `${name}.results`),
      summaryPath,
      baseDir: ROOT,
    }),
    ...modeArgs,
    "--progress-interval",
    "60s",
  ];
  // Settle: idle workers release memory, then every peak counter starts from now.
  await new Promise((r) => setTimeout(r, 1_000));
  ws.resetPeakMemory();
  const runnerName = `runner-${name}`;
  const { process: runner } = ws.runClient(runnerName, argv, {
    memoryLimitBytes: ws.config.runner.memory.bytes,
  });
  let killTimer: NodeJS.Timeout | undefined;
  if (spec.killAfter !== undefined) {
    killTimer = setTimeout(() => {
      const [victim] = ws.workerProcessPids("local-worker-0");
      if (victim !== undefined) {
        process.kill(victim, "SIGKILL");
        log(`${spec.label}: killed worker process ${victim}`);
      }
    }, spec.killAfter * 1000);
  }
  const status = await runner.exited;
  clearTimeout(killTimer);
  const s = JSON.parse(fs.readFileSync(summaryPath, "utf8")) as Record<string, number | null>;
  const pods = [...ws.pods.keys()].map((p) => ws.peakMemoryOf(p) ?? 0);
  const record: RunRecord = {
    label: spec.label,
    mode: spec.mode,
    sigma: spec.sigma,
    groups: spec.groups,
    replicates: spec.replicates,
    meanSeconds: spec.mean,
    budget: spec.budget,
    killed: spec.killAfter !== undefined,
    exitCode: status.code ?? 128,
    utilization: s.utilization ?? null,
    wallSeconds: s.wall_seconds ?? 0,
    peakInflightGroups: s.peak_inflight_groups ?? 0,
    peakSchedulerTasks: s.peak_scheduler_tasks ?? null,
    tasksSubmitted: s.tasks_submitted ?? 0,
    tasksRecomputed: s.tasks_recomputed ?? null,
    workerDeaths: s.worker_deaths ?? 0,
    peakPodBytes: ws.enforcement.enforced ? Math.max(...pods) : null,
    peakPodsBytes: ws.enforcement.enforced ? pods.reduce((a, b) => a + b, 0) : null,
    peakSchedulerBytes: ws.peakMemoryOf("scheduler"),
    peakRunnerBytes: ws.peakMemoryOf(runnerName),
  };
  log(
    `${spec.label}: exit ${record.exitCode}, utilization ${record.utilization}, wall ${record.wallSeconds}s, ` +
      `peak in flight ${record.peakInflightGroups}, peak scheduler tasks ${record.peakSchedulerTasks}, ` +
      `recomputed ${record.tasksRecomputed}`,
  );
  return record;
}

async function bareLoop(ws: LocalWorkspace, groups: number, replicates: number) {
  const lines: string[] = [];
  const { process: p } = ws.runClient(
    "bare-loop",
    [
      path.join(ROOT, ".venv", "bin", "python"),
      path.join(ROOT, "bench", "bare_loop.py"),
      "--scheduler",
      ws.schedulerAddress,
      "--groups",
      String(groups),
      "--replicates",
      String(replicates),
    ],
    { onLine: (l, stream) => stream === "stdout" && lines.push(l) },
  );
  const status = await p.exited;
  if (status.code !== 0) throw new Error(`bare loop failed (${status.code})`);
  return JSON.parse(lines.at(-1) ?? "{}") as { tasks: number; wall_seconds: number };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string", default: path.join(ROOT, "bench", "results.json") },
      quick: { type: "boolean", default: false },
      budget: { type: "string", default: "32" },
      mean: { type: "string", default: "1.0" },
      groups: { type: "string", default: "150" },
      sections: { type: "string", default: "modes,kill,memory,throughput" },
    },
  });
  const t0 = Date.now();
  const stackFile = path.join(ROOT, "bench", "stack.yaml");
  const parsed = parseWorkspaceConfig(readStackConfigFile(stackFile), {
    baseDir: ROOT,
    stack: "bench",
  });
  if (!parsed.ok)
    throw new Error(`bench/stack.yaml is invalid: ${JSON.stringify(parsed.problems)}`);
  const cfg = parsed.config;
  const slots = cfg.workers.replicas * cfg.workers.nprocs * cfg.workers.threadsPerProcess;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dask-workspace-bench-"));
  const ws = await LocalWorkspace.start(cfg, { root: ROOT, pythonPath: [STUDIES], log });
  const stop = () => void ws.stop().then(() => process.exit(130));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const runs: RunRecord[] = [];
  try {
    const P = values.quick ? 60 : Number(values.groups);
    const R = 4;
    const mean = Number(values.mean);
    // W = B: the same number of groups may hold results at once in window and batch mode.
    const budget = Number(values.budget);
    const sections = new Set(values.sections!.split(","));
    const expectedWall = (P * R * mean) / slots;
    for (const sigma of sections.has("modes") ? [0.5, 1] : []) {
      for (const mode of ["window", "batch", "all-at-once"] as const) {
        runs.push(
          await runOne(ws, tmp, {
            label: `${mode} σ=${sigma}`,
            mode,
            sigma,
            groups: P,
            replicates: R,
            mean,
            kib: 256,
            budget: mode === "all-at-once" ? P : budget,
          }),
        );
      }
    }
    for (const mode of sections.has("kill") ? (["window", "batch", "all-at-once"] as const) : []) {
      runs.push(
        await runOne(ws, tmp, {
          label: `${mode} σ=1 + worker kill`,
          mode,
          sigma: 1,
          groups: P,
          replicates: R,
          mean,
          kib: 256,
          budget: mode === "all-at-once" ? P : budget,
          killAfter: 0.4 * expectedWall + 2,
        }),
      );
    }
    const memorySizes = values.quick ? [100, 1000] : [200, 2000];
    for (const groups of sections.has("memory") ? memorySizes : []) {
      runs.push(
        await runOne(ws, tmp, {
          label: `window P=${groups}`,
          mode: "window",
          sigma: 0.5,
          groups,
          replicates: R,
          mean: 0.01,
          kib: 256,
          budget: 64,
        }),
      );
    }
    // Throughput: trivial tasks (no sleep, 1 KiB results), runner (window auto) vs bare loop.
    const tp = values.quick ? 300 : 1000;
    const runnerTp = await runOne(ws, tmp, {
      label: `throughput runner P=${tp}`,
      mode: "window",
      sigma: 0,
      groups: tp,
      replicates: R,
      mean: 0,
      kib: 1,
      budget: 64,
    });
    runs.push(runnerTp);
    const bare = await bareLoop(ws, tp, R);
    const runnerTasks = runnerTp.tasksSubmitted;
    const results: BenchResults = {
      startedAt: new Date(t0).toISOString(),
      machine: {
        cpus: os.cpus().length,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        kernel: os.release(),
      },
      slots,
      runs,
      throughput: {
        tasks: runnerTasks,
        runnerTasksPerSecond: runnerTasks / runnerTp.wallSeconds,
        bareTasksPerSecond: bare.tasks / bare.wall_seconds,
        runnerWallSeconds: runnerTp.wallSeconds,
        bareWallSeconds: bare.wall_seconds,
      },
      totalSeconds: (Date.now() - t0) / 1000,
    };
    fs.writeFileSync(values.out!, `${JSON.stringify(results, null, 1)}\n`);
    log(`wrote ${values.out} in ${results.totalSeconds.toFixed(0)} s`);
  } finally {
    await ws.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
