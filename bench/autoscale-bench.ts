/**
 * Autoscaling benchmark: a bursty study (idle, a burst of P groups admitted at once, idle) on the
 * local emulation, under autoscaling mode dask (the scheduler's desired workers, the busy-pod
 * floor, scale to zero) and under a CPU-style policy (a CPU HPA's rule on the CPU time of the
 * same pods' cgroups, at least 1 pod). Both use the same decision function, bounds, windows and
 * decision interval; only the signal differs.
 *
 *   npm run bench:autoscale [-- --groups 16 --replicates 4 --seconds 1 --idle 10 --tick 3 --sleep]
 *
 * `--sleep`: replicates sleep (an I/O-bound model) instead of spinning the CPU.
 *
 * Writes bench/results/autoscale-bench-{cpu,sleep}.json and prints a Markdown block for bench/REPORT.md.
 * Measures: time from burst start (the runner starts) to full capacity (maxReplicas pods), study
 * wall time, pod-seconds over the whole scenario (idle + burst + the same idle after), tasks
 * recomputed (the runner's count), pods left at the end.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { parseWorkspaceConfig, readStackConfigFile } from "../infra/config.js";
import {
  autoscaleRawConfig,
  autoscaleStartConfig,
  LocalAutoscaler,
  settleSeconds,
} from "../infra/local/autoscale.js";
import { LocalWorkspace, localRunnerArgv } from "../infra/local/launcher.js";
import type { WorkspaceConfig } from "../infra/types.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

interface Run {
  mode: "dask" | "cpu";
  start_pods: number;
  seconds_to_full_capacity: number | null;
  study_wall_seconds: number;
  pod_seconds: number;
  tasks_recomputed: number | null;
  groups_persisted: number | null;
  pods_at_end: number;
  peak_pods: number;
  timeline: Array<{ t: number; pods: number; desired: number; busy: number }>;
}

function studyFile(
  dir: string,
  o: { groups: number; replicates: number; seconds: number; busy: boolean },
): string {
  const file = path.join(dir, o.busy ? "burst-cpu.yaml" : "burst-sleep.yaml");
  fs.writeFileSync(
    file,
    stringify({
      name: "burst",
      model: "dask_workspace.examples.synthetic:simulate",
      targets: { mean_x: "dask_workspace.examples.synthetic:mean_x" },
      parameters: {
        grid: {
          x: { start: 0, stop: o.groups - 1, num: o.groups },
          median_seconds: o.seconds,
          sigma: 0.2,
          busy: o.busy,
        },
      },
      replicates: o.replicates,
      seed: 11,
    }),
  );
  return file;
}

async function runOnce(
  mode: "dask" | "cpu",
  cfg: WorkspaceConfig,
  o: { groups: number; study: string; idle: number; tick: number; work: string },
): Promise<Run> {
  // A CPU HPA cannot scale to zero: it starts (and ends) at one pod.
  const start =
    mode === "dask"
      ? autoscaleStartConfig(cfg)
      : { ...cfg, workers: { ...cfg.workers, replicas: Math.max(1, cfg.autoscaling.minReplicas) } };
  const ws = await LocalWorkspace.start(start, { root: ROOT, log: () => undefined });
  const scaler = new LocalAutoscaler(ws, { log: () => undefined, tickSeconds: o.tick, mode });
  const t0 = performance.now() / 1000;
  try {
    scaler.startLoop();
    await sleep(o.idle); // idle before the burst
    const burstAt = performance.now() / 1000 - t0;
    const summaryPath = path.join(o.work, `${mode}-summary.json`);
    const argv = [
      ...localRunnerArgv(ws.config, {
        studyFile: o.study,
        results: path.join(o.work, `${mode}-results`),
        summaryPath,
        baseDir: ROOT,
      }),
      "--window",
      String(o.groups),
      "--chunking",
      "off",
    ];
    const { process: runner } = ws.runClient("runner", argv, {});
    await runner.exited;
    const endAt = performance.now() / 1000 - t0;
    // The same idle after the study for both policies: as long as dask mode needs to reach min.
    await sleep(settleSeconds(scaler.policy) - 60 + 2 * o.tick);
    await scaler.stop();
    const summary = JSON.parse(fs.readFileSync(summaryPath, "utf8")) as Record<string, number>;
    const full = scaler.samples.find((s) => s.t >= burstAt && s.pods >= scaler.policy.maxReplicas);
    return {
      mode,
      start_pods: start.workers.replicas,
      seconds_to_full_capacity: full === undefined ? null : round(full.t - burstAt),
      study_wall_seconds: round(endAt - burstAt),
      pod_seconds: round(scaler.podSeconds),
      tasks_recomputed: summary.tasks_recomputed ?? null,
      groups_persisted: summary.groups_persisted ?? null,
      pods_at_end: scaler.pods.length,
      peak_pods: Math.max(...scaler.samples.map((s) => s.pods)),
      timeline: scaler.samples.map((s) => ({
        t: round(s.t),
        pods: s.pods,
        desired: s.desiredProcesses,
        busy: s.busyPods,
      })),
    };
  } finally {
    await scaler.stop();
    await ws.stop();
  }
}

const round = (x: number) => Math.round(x * 10) / 10;

function report(runs: Run[], o: Record<string, unknown>): string {
  const [d, c] = [runs.find((r) => r.mode === "dask")!, runs.find((r) => r.mode === "cpu")!];
  const speedup =
    d.seconds_to_full_capacity !== null && c.seconds_to_full_capacity !== null
      ? c.seconds_to_full_capacity / d.seconds_to_full_capacity
      : d.seconds_to_full_capacity !== null
        ? Number.POSITIVE_INFINITY
        : null;
  const row = (r: Run) =>
    `| ${r.mode} | ${r.start_pods} | ${r.seconds_to_full_capacity ?? "never"} | ${r.study_wall_seconds} | ${r.pod_seconds} | ${r.tasks_recomputed} | ${r.pods_at_end} | ${r.peak_pods} |`;
  const ok = (b: boolean) => (b ? "met" : "**missed**");
  return [
    `### ${o.busy ? "CPU-bound" : "sleeping (I/O-bound)"} replicates`,
    "",
    `Command: \`npm run bench:autoscale -- --groups ${o.groups} --replicates ${o.replicates} --seconds ${o.seconds} --idle ${o.idle} --tick ${o.tick}${o.busy ? "" : " --sleep"}\`; load average at start ${o.load}; ${o.cores} cores.`,
    `Stack bench/stacks/autoscale.yaml (1-process pods, 500m CPU each, 0..4 pods; time scaled 5x down: a decision every ${o.tick} s, a 12 s scale-down window). Scenario: ${o.idle} s idle, a burst of ${o.groups} groups × ${o.replicates} ${o.busy ? "CPU-bound" : "sleeping"} replicates of ~${o.seconds} ${o.busy ? "CPU-s" : "s"} (all admitted at once), then the same idle time after the study for both.`,
    "",
    "| policy | pods at start | s to full capacity | study wall s | pod-seconds | tasks recomputed | pods at end | peak pods |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    row(d),
    row(c),
    "",
    `Goals: full capacity ≥ 3× sooner: ${speedup === null ? "n/a" : speedup === Number.POSITIVE_INFINITY ? "the CPU policy never got there" : `${speedup.toFixed(1)}×`} (${ok(speedup !== null && speedup >= 3)}); fewer pod-seconds: ${d.pod_seconds} vs ${c.pod_seconds} (${ok(d.pod_seconds < c.pod_seconds)}); 0 tasks recomputed from scale-down: ${d.tasks_recomputed} (${ok(d.tasks_recomputed === 0)}); 0 pods after the idle period: ${d.pods_at_end} (${ok(d.pods_at_end === 0)}).`,
    "",
  ].join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      groups: { type: "string", default: "16" },
      replicates: { type: "string", default: "4" },
      seconds: { type: "string", default: "1" },
      idle: { type: "string", default: "10" },
      tick: { type: "string", default: "3" },
      sleep: { type: "boolean", default: false },
      out: { type: "string", default: "" },
    },
  });
  const o = {
    groups: Number(values.groups),
    replicates: Number(values.replicates),
    seconds: Number(values.seconds),
    idle: Number(values.idle),
    tick: Number(values.tick),
    busy: values.sleep !== true,
  };
  const raw = autoscaleRawConfig(
    readStackConfigFile(path.join(ROOT, "bench", "stacks", "autoscale.yaml")),
  );
  if (!raw.ok) throw new Error(raw.message);
  const parsed = parseWorkspaceConfig(raw.raw, { baseDir: ROOT, stack: "autoscale-bench" });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "autoscale-bench-"));
  const study = studyFile(work, o);
  const load = os.loadavg()[0]!.toFixed(2);
  const runs: Run[] = [];
  try {
    for (const mode of ["dask", "cpu"] as const) {
      process.stderr.write(`autoscale bench: ${mode}...\n`);
      runs.push(await runOnce(mode, parsed.config, { ...o, study, work }));
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const meta = { ...o, load, cores: os.cpus().length };
  const out =
    values.out !== undefined && values.out !== ""
      ? values.out
      : path.join(ROOT, "bench", "results", `autoscale-bench-${o.busy ? "cpu" : "sleep"}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ meta, runs }, null, 2)}\n`);
  process.stdout.write(report(runs, meta));
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
