/**
 * Writes bench/REPORT.md from the benchmark's JSON (bench/local-bench.ts), the paused-forever
 * measurement (bench/paused_forever.py) and the program-evaluation timing (bench/program-eval.ts),
 * whichever exist. Every number in the report comes from those files; the goals are checked here.
 *
 * Usage: npx tsx bench/report.ts [--results bench/results.json] [--paused bench/paused-forever.json]
 *        [--program-eval bench/program-eval.txt] [--out bench/REPORT.md]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import type { BenchResults, RunRecord } from "./local-bench.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const MiB = 2 ** 20;

const f2 = (x: number | null | undefined) => (x === null || x === undefined ? "n/a" : x.toFixed(2));
const mib = (x: number | null | undefined) =>
  x === null || x === undefined ? "n/a" : `${Math.round(x / MiB)}`;

/** One goal: what was asked, what was measured, met or not. */
export interface Goal {
  goal: string;
  measured: string;
  met: boolean;
}

function find(runs: RunRecord[], label: string): RunRecord {
  const r = runs.find((x) => x.label === label);
  if (r === undefined) throw new Error(`no run "${label}" in the results`);
  return r;
}

/** Total peak memory of a run: worker pods + scheduler + runner cgroups. */
function totalPeak(r: RunRecord): number {
  return (r.peakPodsBytes ?? 0) + (r.peakSchedulerBytes ?? 0) + (r.peakRunnerBytes ?? 0);
}

/** The issue's goals, evaluated on one benchmark run (ratios within the same run). */
export function goals(res: BenchResults): Goal[] {
  const runs = res.runs;
  const w05 = find(runs, "window σ=0.5");
  const w1 = find(runs, "window σ=1");
  const b1 = find(runs, "batch σ=1");
  const small = runs.find((r) => /^window P=\d+$/.test(r.label) && r.groups <= 200)!;
  const large = runs.find((r) => /^window P=\d+$/.test(r.label) && r.groups > 200)!;
  const memRatio = totalPeak(large) / totalPeak(small);
  const tp = res.throughput.runnerTasksPerSecond / res.throughput.bareTasksPerSecond;
  return [
    {
      goal: "window utilization ≥ 0.95 at σ = 0.5",
      measured: f2(w05.utilization),
      met: (w05.utilization ?? 0) >= 0.95,
    },
    {
      goal: "window utilization ≥ 0.90 at σ = 1",
      measured: f2(w1.utilization),
      met: (w1.utilization ?? 0) >= 0.9,
    },
    {
      goal: "window ≥ 1.3 × batch utilization at σ = 1",
      measured: `${f2((w1.utilization ?? 0) / (b1.utilization ?? 1))} ×`,
      met: (w1.utilization ?? 0) >= 1.3 * (b1.utilization ?? Infinity),
    },
    {
      goal: `peak memory at P = ${large.groups} within 10% of P = ${small.groups}`,
      measured: `${mib(totalPeak(large))} vs ${mib(totalPeak(small))} MiB (${f2(memRatio)} ×)`,
      met: memRatio <= 1.1,
    },
    {
      goal: "runner throughput ≥ 0.8 × a bare as_completed loop",
      measured: `${f2(tp)} × (${res.throughput.runnerTasksPerSecond.toFixed(0)} vs ${res.throughput.bareTasksPerSecond.toFixed(0)} tasks/s)`,
      met: tp >= 0.8,
    },
  ];
}

interface PausedOutcome {
  variant: string;
  tasks: number;
  completed: number;
  executions: number;
  hung: boolean;
  wall_seconds: number;
  paused_worker_seconds: number;
  memory_restarts: number;
  watchdog_restarts: number;
  pod_oom_kills: number;
  pod_peak_mib: number;
}

function pausedSection(file: string): string[] {
  if (!fs.existsSync(file)) return [];
  const doc = JSON.parse(fs.readFileSync(file, "utf8")) as {
    params: Record<string, unknown>;
    outcomes: PausedOutcome[];
    runs?: { params: Record<string, unknown>; outcomes: PausedOutcome[] }[];
  };
  const runs = doc.runs ?? [{ params: doc.params, outcomes: doc.outcomes }];
  const out = [
    "## Paused forever: measurement and decision",
    "",
    "`bench/paused_forever.py`: one worker pod in a real memory cgroup (1Gi, `dask worker",
    "--nworkers 2 --memory-limit 400MiB`, Dask's default thresholds) runs tasks that each leak",
    "unmanaged memory (`examples/studies/leak/leaky.py`); results are released as they arrive, as",
    "the runner's window does. Variants: `defaults` (the users' setup); `lifetime` (`--lifetime",
    "30s --lifetime-stagger 5s --lifetime-restart`); `no-pause` (pause threshold off, the nanny",
    "restarts at terminate); `watchdog` (recycle a worker paused and idle for 5 s, gracefully:",
    "retire, then the nanny restarts it); `watchdog-unmanaged` (recycle at once -- two polls,",
    "0.5 s apart -- a paused, idle worker whose *unmanaged* memory alone is above the pause",
    "threshold, so spilling can never unpause it; otherwise after 30 s). `executions` > `tasks`",
    "means tasks were killed mid-run and ran again.",
    "",
  ];
  for (const run of runs) {
    const p = run.params;
    out.push(
      `${p.tasks} tasks of ${p.seconds} s leaking ${p.leak_mib} MiB each; a run that makes no progress for ${p.hang_seconds} s counts as hung:`,
      "",
      "| variant | completed | hung | wall s | paused worker-s | executions | nanny restarts | watchdog restarts | pod OOM kills | pod peak MiB |",
      "|---|---|---|---|---|---|---|---|---|---|",
      ...run.outcomes.map(
        (o) =>
          `| ${o.variant} | ${o.completed}/${o.tasks} | ${o.hung ? "**yes**" : "no"} | ${o.wall_seconds} | ${o.paused_worker_seconds} | ${o.executions} | ${o.memory_restarts} | ${o.watchdog_restarts} | ${o.pod_oom_kills} | ${o.pod_peak_mib} |`,
      ),
      "",
    );
  }
  return out;
}

export function report(opts: {
  results: BenchResults;
  pausedFile: string;
  programEval?: string;
  plot: string;
}): string {
  const res = opts.results;
  const runs = res.runs;
  const modeRows = runs
    .filter((r) => !r.killed && !r.label.includes("P=") && !r.label.startsWith("throughput"))
    .map(
      (r) =>
        `| ${r.mode} | ${r.sigma} | ${r.budget} | ${f2(r.utilization)} | ${r.wallSeconds.toFixed(1)} | ${r.peakInflightGroups} | ${r.peakSchedulerTasks ?? "n/a"} | ${mib(r.peakPodBytes)} |`,
    );
  const killRows = runs
    .filter((r) => r.killed)
    .map(
      (r) =>
        `| ${r.mode} | ${r.workerDeaths} | ${r.tasksRecomputed ?? "n/a"} | ${r.exitCode === 0 ? "all" : `exit ${r.exitCode}`} | ${f2(r.utilization)} | ${r.wallSeconds.toFixed(1)} |`,
    );
  const memRuns = runs.filter((r) => /^window P=\d+$/.test(r.label));
  const memRows = memRuns.map(
    (r) =>
      `| ${r.groups} | ${r.tasksSubmitted} | ${r.peakInflightGroups} | ${r.peakSchedulerTasks ?? "n/a"} | ${mib(r.peakPodBytes)} | ${mib(r.peakPodsBytes)} | ${mib(r.peakSchedulerBytes)} | ${mib(r.peakRunnerBytes)} | ${mib(totalPeak(r))} |`,
  );
  const g = goals(res);
  const first = runs.find((r) => r.label === "window σ=0.5")!;
  const t = res.throughput;
  const lines = [
    "# Benchmark report",
    "",
    `Generated by \`npm run bench\` (bench/run.sh) on ${res.startedAt}: ${res.machine.cpus} CPUs, ${res.machine.memoryGiB} GiB, Linux ${res.machine.kernel}, while other`,
    "work shared the machine. One local workspace (`bench/stack.yaml`: 2 pods × 2 processes × 4",
    `threads = ${res.slots} slots, each pod in a 2Gi memory cgroup) runs every measurement in one go,`,
    `in ${(res.totalSeconds / 60).toFixed(1)} minutes. Raw numbers: \`bench/results.json\`.`,
    "",
    `![utilization, scheduler load and memory](${path.basename(opts.plot)})`,
    "",
    "## Goals (ratios within this one run)",
    "",
    "| goal | measured | met |",
    "|---|---|---|",
    ...g.map((x) => `| ${x.goal} | ${x.measured} | ${x.met ? "yes" : "**no**"} |`),
    "",
    "## Window vs batch vs all-at-once",
    "",
    `P = ${first.groups} groups of R = ${first.replicates} replicates + 1 aggregation; replicate durations`,
    `are lognormal with mean ${first.meanSeconds} s (\`bench/studies/lognormal.py\`, tasks sleep); each replicate`,
    "returns 256 KiB. Equal memory budgets: window W = batch size B groups may hold results at once;",
    "all-at-once submits every group (W = P). Utilization = Σ task seconds / (wall × threads), measured",
    "on the scheduler by the runner; peak pod memory = the highest cgroup peak of one worker pod.",
    "",
    "| mode | σ | groups in flight allowed | utilization | wall s | peak groups in flight | peak scheduler tasks | peak pod MiB |",
    "|---|---|---|---|---|---|---|---|",
    ...modeRows,
    "",
    "## One worker process SIGKILLed mid-run (σ = 1)",
    "",
    "The same study; 40% into the run one worker process of pod local-worker-0 is killed with",
    "SIGKILL (the nanny starts a new one). Recomputed = tasks that ran again because their results",
    "were lost with the process.",
    "",
    "| mode | worker deaths | tasks recomputed | groups persisted | utilization | wall s |",
    "|---|---|---|---|---|---|",
    ...killRows,
    "",
    "## Peak memory does not grow with the study",
    "",
    "Window mode (W = 64), short tasks (mean 0.01 s, 256 KiB results), P = 200 vs P = 2000. Peaks of",
    "the cgroups (reset before each run): one pod, both pods, scheduler, runner; total = their sum.",
    "",
    "| P | tasks | peak groups in flight | peak scheduler tasks | pod MiB | pods MiB | scheduler MiB | runner MiB | total MiB |",
    "|---|---|---|---|---|---|---|---|---|",
    ...memRows,
    "",
    "## Runner throughput on trivial tasks",
    "",
    `${t.tasks} tasks (${t.tasks / 5} groups × (4 replicates + 1 aggregation), no sleep, 1 KiB results). The runner`,
    "(window 64, writing Parquet results) against `bench/bare_loop.py`: the same tasks submitted at once",
    "with `client.map` and consumed with `as_completed`, writing nothing.",
    "",
    "| | tasks/s | wall s |",
    "|---|---|---|",
    `| runner | ${t.runnerTasksPerSecond.toFixed(0)} | ${t.runnerWallSeconds.toFixed(1)} |`,
    `| bare as_completed | ${t.bareTasksPerSecond.toFixed(0)} | ${t.bareWallSeconds.toFixed(1)} |`,
    "",
    ...pausedSection(opts.pausedFile),
  ];
  if (opts.programEval !== undefined && opts.programEval.trim() !== "") {
    lines.push(
      "## Pulumi program evaluation (bench/program-eval.ts)",
      "",
      "```",
      opts.programEval.trim(),
      "```",
      "",
    );
  }
  return `${lines.join("\n")}\n`;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      results: { type: "string", default: path.join(ROOT, "bench", "results.json") },
      paused: { type: "string", default: path.join(ROOT, "bench", "paused-forever.json") },
      "program-eval": { type: "string", default: path.join(ROOT, "bench", "program-eval.txt") },
      plot: { type: "string", default: path.join(ROOT, "bench", "report.png") },
      out: { type: "string", default: path.join(ROOT, "bench", "REPORT.md") },
    },
  });
  const results = JSON.parse(fs.readFileSync(values.results!, "utf8")) as BenchResults;
  const pe = values["program-eval"]!;
  const text = report({
    results,
    pausedFile: values.paused!,
    programEval: fs.existsSync(pe) ? fs.readFileSync(pe, "utf8") : undefined,
    plot: values.plot!,
  });
  fs.writeFileSync(values.out!, text);
  for (const x of goals(results)) {
    process.stderr.write(`goal: ${x.goal}: ${x.measured} -> ${x.met ? "met" : "NOT met"}\n`);
  }
}

main();
