/**
 * One local run: start the workspace, run the study through the runner while streaming its
 * progress, collect the summary (plus the pods' kernel OOM kills), tear everything down.
 *
 * {@link launchWorkspace} takes an already-validated {@link WorkspaceConfig}. The CLI
 * (`main.ts`) only ever passes configs from parseWorkspaceConfig; tests also call it with
 * hand-built configs that validation would refuse (memory limits summing to the pod limit), to
 * show what the headroom rule prevents. That path is not reachable from the command line.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { WorkspaceConfig } from "../types.js";
import { exitCodeOf, LocalWorkspace, localRunnerArgv, type ManagedProcess } from "./launcher.js";

/** Exit code when the workspace itself could not start (the runner never ran). */
export const EXIT_LAUNCH_FAILED = 1;

export interface LaunchOptions {
  /** Project root (.venv, relative study paths of stack jobs). */
  root: string;
  /** Absolute path of the study file (the runner ships its folder to the workers). */
  studyFile: string;
  /** Results directory or URI. */
  results: string;
  /** Write the summary JSON (runner summary + pod_oom_kills) here. */
  summaryPath?: string;
  /** Extra runner flags (override the stack's mode/window/batch size). */
  runnerArgs?: string[];
  /** Launcher messages. */
  log: (line: string) => void;
  /** The runner's own output lines (progress, its log), streamed as they come. */
  out: (line: string) => void;
  /** False: run without cgroups (pod_oom_kills is then null). Default true. */
  enforceMemory?: boolean;
  /**
   * Aborting stops the runner (it persists what finished) and tears down. Abort with the reason
   * "SIGINT" to pass a Ctrl-C on to the runner as SIGINT (else it gets SIGTERM).
   */
  signal?: AbortSignal;
  /**
   * Runs beside the runner once it has started (fault injection in tests and benchmarks); the
   * run waits for both.
   */
  during?: (ws: LocalWorkspace, runner: ManagedProcess) => Promise<void>;
  /** Grace between SIGTERM and SIGKILL for the runner at teardown (default 30 s). */
  runnerGraceMs?: number;
  /** Keep the scheduler/pod logs when the run fails (default true; the path is printed). */
  keepLogsOnFailure?: boolean;
  /**
   * Runs after the study, with its result, before teardown (`--keep` prints the summary and waits
   * for Ctrl-C here). Aborting `signal` still tears down.
   */
  afterRun?: (ws: LocalWorkspace, result: LaunchResult) => Promise<void>;
}

export interface LaunchResult {
  /** The runner's exit code, or {@link EXIT_LAUNCH_FAILED} when the workspace did not start. */
  exitCode: number;
  /** What `--summary` gets: the runner's summary plus the launcher's fields. */
  summary: Record<string, unknown>;
  /** Kernel OOM kills in worker pods; null when limits were not enforced. */
  podOomKills: number | null;
  /** Every cgroup directory the run created (all removed by the time this returns). */
  cgroupDirs: string[];
  /** Every process group leader the run started (all gone by the time this returns). */
  pids: number[];
}

/** The launcher's fields added to the runner's summary (`pod_oom_kills` per the contract). */
export function localSummary(
  runner: Record<string, unknown> | undefined,
  launcher: {
    podOomKills: number | null;
    podPeakMemory: Record<string, number> | null;
    podMemoryBytes: number;
    runnerOomKills: number | null;
    exitCode: number;
  },
): Record<string, unknown> {
  return {
    ...(runner ?? { runner_summary: null }),
    // null (not 0) when limits were not enforced: nothing could have counted a kill.
    pod_oom_kills: launcher.podOomKills,
    pod_memory_bytes: launcher.podMemoryBytes,
    pod_peak_memory_bytes: launcher.podPeakMemory,
    runner_oom_kills: launcher.runnerOomKills,
    launcher_exit_code: launcher.exitCode,
  };
}

/** Summary lines for the terminal: the contract fields, then the launcher's. */
export function formatSummary(s: Record<string, unknown>): string[] {
  const keys = [
    "groups_total",
    "groups_persisted",
    "groups_failed",
    "groups_resumed",
    "peak_inflight_groups",
    "tasks_submitted",
    "tasks_recomputed",
    "worker_deaths",
    "memory_restarts",
    "wall_seconds",
    "utilization",
    "pod_oom_kills",
    "results",
  ];
  const fmt = (v: unknown) =>
    typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : JSON.stringify(v ?? null);
  return keys.filter((k) => k in s).map((k) => `  ${k.padEnd(22)} ${fmt(s[k])}`);
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Writes a file atomically (temp file + rename), so a reader never sees half a summary. */
export function writeFileAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/**
 * Starts the workspace for `config`, runs the study, tears down, and returns the outcome.
 * Never leaves a process or cgroup behind, whatever happens (errors, abort).
 */
export async function launchWorkspace(
  config: WorkspaceConfig,
  opts: LaunchOptions,
): Promise<LaunchResult> {
  const { log } = opts;
  if (opts.signal?.aborted) throw new Error("aborted before start");
  let ws: LocalWorkspace | undefined;
  let aborted = false;
  // Logs are kept for a failed run (the path is printed) and removed after a clean one.
  let keepLogs = opts.keepLogsOnFailure !== false;
  const starting = LocalWorkspace.start(config, {
    root: opts.root,
    log,
    enforceMemory: opts.enforceMemory,
  });
  // An abort while starting: let start finish (it cleans up after itself on failure), then stop.
  const onAbort = () => {
    aborted = true;
    void starting.then((w) => w.stop()).catch(() => undefined);
  };
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    try {
      ws = await starting;
    } catch (err) {
      log(`the local workspace failed to start: ${(err as Error).message}`);
      return {
        exitCode: EXIT_LAUNCH_FAILED,
        summary: {},
        podOomKills: null,
        cgroupDirs: [],
        pids: [],
      };
    }
    const w = ws;
    log(
      `workspace up: scheduler ${w.schedulerAddress} (dashboard ${w.dashboardUrl}), ` +
        `${config.workers.replicas} pod(s) × ${config.workers.nprocs} process(es), ` +
        `podMemory ${config.workers.podMemory.quantity}` +
        (w.enforcement.enforced
          ? ` enforced by cgroup ${w.enforcement.version}`
          : " NOT enforced") +
        `, memoryPerProcess ${config.workers.memoryPerProcess.quantity}`,
    );
    if (aborted) throw new Error("interrupted");
    const runnerSummaryPath = path.join(w.tmpDir, "runner-summary.json");
    const argv = [
      ...localRunnerArgv(w.config, {
        studyFile: opts.studyFile,
        results: opts.results,
        summaryPath: runnerSummaryPath,
        baseDir: opts.root,
      }),
      ...(opts.runnerArgs ?? []),
    ];
    log(`running: ${argv.join(" ")}`);
    const { process: runner } = w.runClient("runner", argv, {
      onLine: (line) => opts.out(line),
      memoryLimitBytes: config.runner.memory.bytes,
    });
    // Tell the user about kernel OOM kills as they happen, not only in the summary.
    let seenOom = 0;
    const oomWatch = setInterval(() => {
      const n = w.podOomKills();
      if (n !== null && n > seenOom) {
        log(
          `kernel OOM kill in a worker pod (podMemory ${config.workers.podMemory.quantity}); ` +
            `${n} so far: a pod's processes outgrew its limit`,
        );
        seenOom = n;
      }
    }, 1_000);
    // The abort reason may name the signal the user sent (main.ts aborts with "SIGINT" on Ctrl-C).
    const stopOnAbort = () =>
      void w.stop({
        graceMs: opts.runnerGraceMs ?? 30_000,
        clientSignal: opts.signal?.reason === "SIGINT" ? "SIGINT" : "SIGTERM",
      });
    opts.signal?.addEventListener("abort", stopOnAbort, { once: true });
    let status;
    try {
      const side = opts.during ? opts.during(w, runner) : Promise.resolve();
      [status] = await Promise.all([runner.exited, side]);
    } finally {
      clearInterval(oomWatch);
      opts.signal?.removeEventListener("abort", stopOnAbort);
    }
    const exitCode = exitCodeOf(status);
    // Counters are read before teardown removes the cgroups.
    const podOomKills = w.podOomKills();
    const podPeakMemory = w.podPeakMemory();
    const runnerOomKills = w.oomKillsOf("runner");
    if (runnerOomKills !== null && runnerOomKills > 0) {
      log(
        `the runner was OOM-killed at its limit runner.memory ${config.runner.memory.quantity}; raise runner.memory`,
      );
    }
    const summary = localSummary(readJson(runnerSummaryPath), {
      podOomKills,
      podPeakMemory,
      podMemoryBytes: config.workers.podMemory.bytes,
      runnerOomKills,
      exitCode,
    });
    keepLogs = exitCode !== 0 && opts.keepLogsOnFailure !== false;
    if (keepLogs) log(`scheduler and pod logs: ${w.logDir} (kept because the run failed)`);
    const result: LaunchResult = {
      exitCode,
      summary,
      podOomKills,
      cgroupDirs: w.cgroupDirs(),
      pids: w.processes.map((p) => p.pid),
    };
    if (opts.afterRun !== undefined && !opts.signal?.aborted) await opts.afterRun(w, result);
    return result;
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    if (ws !== undefined) await ws.stop({ graceMs: 5_000, keepLogs });
  }
}
