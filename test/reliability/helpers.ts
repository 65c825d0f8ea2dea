/**
 * Shared helpers for the `npm run local` end-to-end tests: run the real CLI as a child process,
 * find what a run left behind (processes, cgroups), read results tables.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseWorkspaceConfig, readStackConfigFile } from "../../infra/config.js";
import { locateOwnMemoryCgroup, runCgroupName } from "../../infra/local/cgroup.js";
import type { WorkspaceConfig } from "../../infra/types.js";

export const ROOT = path.resolve(import.meta.dirname, "..", "..");
export const STACKS = path.join(ROOT, "test", "reliability", "stacks");
export const STUDIES = path.join(ROOT, "examples", "studies");
const MAIN = path.join(ROOT, "infra", "local", "main.ts");

/** A finished CLI run. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The launcher's pid (run cgroups and temp dirs are named after it). */
  pid: number;
  seconds: number;
}

/**
 * Runs `npm run local`'s entry point (`node --import tsx infra/local/main.ts ...args`) so that the
 * child's pid is the launcher's own. `onLine` sees every output line as it comes and may act on
 * the running child (send it a signal).
 */
export function runCli(
  args: string[],
  opts: {
    onLine?: (line: string, pid: number) => void;
    timeoutMs?: number;
    env?: Record<string, string>;
  } = {},
): Promise<CliRun> {
  const t0 = Date.now();
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      PATH: `${path.join(ROOT, "node_modules", ".bin")}:${process.env.PATH}`,
      ...opts.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = child.pid!;
  let stdout = "";
  let stderr = "";
  const lines = (kind: "out" | "err") => {
    let rest = "";
    return (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      if (kind === "out") stdout += text;
      else stderr += text;
      const parts = (rest + text).split("\n");
      rest = parts.pop() ?? "";
      for (const l of parts) opts.onLine?.(l, pid);
    };
  };
  child.stdout.on("data", lines("out"));
  child.stderr.on("data", lines("err"));
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 240_000);
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, pid, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

/** What a launcher with this pid left behind: live processes of its run, its cgroup dir. */
export function leftovers(launcherPid: number): { pids: number[]; cgroupDir?: string } {
  const tmpPrefix = path.join(os.tmpdir(), `${runCgroupName(launcherPid)}-`);
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
      // Every process of a run has DASK_CONFIG inside the run's temp dir.
      const env = fs.readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (env.some((e) => e.startsWith(`DASK_CONFIG=${tmpPrefix}`))) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  const own = locateOwnMemoryCgroup();
  const dir = own.ok ? path.join(own.location.dir, runCgroupName(launcherPid)) : undefined;
  return { pids, ...(dir !== undefined && fs.existsSync(dir) ? { cgroupDir: dir } : {}) };
}

/** Temp dirs a launcher with this pid created and did not remove. */
export function tempDirsOf(launcherPid: number): string[] {
  const prefix = `${runCgroupName(launcherPid)}-`;
  return fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(prefix));
}

/** Removes the logs a failed run kept (the run printed their path; tests do not need them). */
export function removeKeptLogs(launcherPid: number): void {
  for (const d of tempDirsOf(launcherPid)) {
    fs.rmSync(path.join(os.tmpdir(), d), { recursive: true, force: true });
  }
}

/** Parses and validates a stack file exactly as the CLI does. */
export function loadStackFile(file: string): WorkspaceConfig {
  const r = parseWorkspaceConfig(readStackConfigFile(file), { baseDir: ROOT, stack: "test" });
  if (!r.ok) throw new Error(`invalid test stack ${file}: ${JSON.stringify(r.problems)}`);
  return r.config;
}

/** Group ids in the results' aggregates table: how many rows, how many distinct groups. */
export function aggregates(results: string): { rows: number; groups: number[] } {
  const script = [
    "import json, sys, pyarrow.dataset as ds",
    "t = ds.dataset(sys.argv[1] + '/aggregates', format='parquet').to_table(columns=['group_id'])",
    "g = t.column('group_id').to_pylist()",
    "print(json.dumps({'rows': len(g), 'groups': sorted(set(g))}))",
  ].join("\n");
  const r = spawnSync(path.join(ROOT, ".venv", "bin", "python"), ["-c", script, results], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`cannot read ${results}/aggregates: ${r.stderr}`);
  return JSON.parse(r.stdout) as { rows: number; groups: number[] };
}

/** A fresh temporary directory (removed by the caller). */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A study run in the reliability stack's cgroup pods, with its summary and results folder. */
export interface PodRun {
  run: CliRun;
  /** The `--summary` file, parsed (empty when the run wrote none). */
  summary: Record<string, number | string | null | Record<string, number>>;
  results: string;
}

/**
 * `npm run local --config-file test/reliability/stacks/leak-1gi.yaml --study <study>` (1 pod × 2
 * processes, 1Gi), with `--results` and `--summary` in `dir/<name>*`.
 */
export async function runInPods(
  study: string,
  dir: string,
  name: string,
  opts: Parameters<typeof runCli>[1] = {},
): Promise<PodRun> {
  const results = path.join(dir, `${name}-results`);
  const summaryPath = path.join(dir, `${name}-summary.json`);
  const args = ["--config-file", path.join(STACKS, "leak-1gi.yaml"), "--study", study];
  const run = await runCli([...args, "--results", results, "--summary", summaryPath], opts);
  const summary = fs.existsSync(summaryPath)
    ? (JSON.parse(fs.readFileSync(summaryPath, "utf8")) as PodRun["summary"])
    : {};
  return { run, summary, results };
}
