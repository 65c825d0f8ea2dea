/**
 * The check `npm run local` runs before it starts anything:
 * `python -m dask_workspace check STUDY --no-run --json --results <location>` in a subprocess with
 * the workspace's environment (the project's .venv first on PATH). It validates the
 * study and its bundle, imports the model and targets the way the workers will, and reports what
 * the results location already holds. A typo then costs a second, not a workspace start; a study
 * whose groups are all persisted does not start the workspace at all.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** What `check --json` prints (the fields the launcher uses; the runner may add more). */
export interface CheckReport {
  ok: boolean;
  study?: string;
  bundle_hash?: string;
  groups_total?: number | null;
  groups_persisted?: number | null;
  groups_failed?: number | null;
  hash_matches?: boolean | null;
  problems?: unknown[];
}

/** What the launcher does after the check. */
export type PreflightDecision =
  { action: "start"; note?: string } | { action: "exit"; exitCode: number; message: string };

/** A problem entry as text: `path: message`, or the string itself. */
export function problemText(p: unknown): string {
  if (typeof p === "string") return p;
  if (p !== null && typeof p === "object") {
    const o = p as { path?: unknown; message?: unknown };
    if (typeof o.message === "string") {
      return typeof o.path === "string" && o.path !== "" ? `${o.path}: ${o.message}` : o.message;
    }
  }
  return JSON.stringify(p);
}

/**
 * Decides from the check's report (pure): problems → exit 2 with them; every group already
 * persisted → exit 0 without starting; every group done but some failed → exit 3 with the retry
 * command, unless the run retries them (`-- --retry-failed`); otherwise start.
 */
export function preflightDecision(
  report: CheckReport,
  opts: { runnerArgs: readonly string[]; results: string; retryCommand: string },
): PreflightDecision {
  const problems = report.problems ?? [];
  if (!report.ok || problems.length > 0) {
    const lines = problems.length > 0 ? problems.map(problemText) : ["the check failed"];
    return {
      action: "exit",
      exitCode: 2,
      message: `the study is not ready; nothing was started:\n${lines.map((l) => `  ${l}`).join("\n")}`,
    };
  }
  const total = report.groups_total ?? undefined;
  const persisted = report.groups_persisted ?? 0;
  const failed = report.groups_failed ?? 0;
  const retrying = opts.runnerArgs.includes("--retry-failed");
  if (total === undefined || total === 0) return { action: "start" };
  if (persisted >= total && failed === 0) {
    return {
      action: "exit",
      exitCode: 0,
      message:
        `all ${total} groups are already persisted in ${opts.results}; nothing to run, nothing was started. ` +
        `Read them with read_results, or run again with another --results to start over`,
    };
  }
  if (persisted + failed >= total && failed > 0 && !retrying) {
    return {
      action: "exit",
      exitCode: 3,
      message:
        `every group of ${opts.results} is done, but ${failed} of ${total} failed; nothing was started. ` +
        `After fixing the model, retry them with:\n  ${opts.retryCommand}`,
    };
  }
  const done = persisted + (retrying ? 0 : failed);
  return done > 0
    ? {
        action: "start",
        note: `${opts.results} already holds ${persisted} of ${total} groups (${failed} failed); the run resumes${retrying && failed > 0 ? " and retries the failed ones" : ""}`,
      }
    : { action: "start" };
}

/** Runner flags that change what the check accepts: a location written by other code. */
const CHECK_FLAGS = ["--retry-failed", "--allow-code-change"] as const;

/**
 * The check's argv (after the Python executable). `--retry-failed` and `--allow-code-change`
 * among the runner flags go to the check too: the run will accept other code, so it is no problem.
 */
export function checkArgv(opts: {
  studyFile: string;
  results: string;
  runnerArgs?: readonly string[];
}): string[] {
  return [
    "-m",
    "dask_workspace",
    "check",
    opts.studyFile,
    "--no-run",
    "--json",
    "--results",
    opts.results,
    ...CHECK_FLAGS.filter((f) => (opts.runnerArgs ?? []).includes(f)),
  ];
}

export interface CheckRun {
  report?: CheckReport;
  exitCode: number;
  stderr: string;
  stdout: string;
  seconds: number;
}

/**
 * Runs the check with the workspace's Python: `<root>/.venv/bin/python` first on PATH, as every
 * workspace process. It needs nothing from the stack config (the workspace's Dask config holds
 * only scheduler and worker settings), so it starts before the config is read.
 */
export async function runCheck(opts: {
  root: string;
  studyFile: string;
  results: string;
  runnerArgs: readonly string[];
}): Promise<CheckRun> {
  const python = path.join(opts.root, ".venv", "bin", "python");
  if (!fs.existsSync(python)) {
    return {
      exitCode: 2,
      stdout: "",
      stderr: `${python} does not exist; create the Python environment first: bash scripts/ensure-venv.sh`,
      seconds: 0,
    };
  }
  const started = process.hrtime.bigint();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  env.PATH = [path.join(opts.root, ".venv", "bin"), env.PATH ?? "/usr/bin:/bin"].join(
    path.delimiter,
  );
  env.PYTHONUNBUFFERED = "1";
  const child = spawn(python, checkArgv(opts), { env, cwd: process.cwd() });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exitCode = await new Promise<number>((resolve) =>
    child.on("close", (code, signal) => resolve(code ?? (signal !== null ? 128 : 1))),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { report: parseReport(stdout), exitCode, stdout, stderr, seconds };
}

/** The last line of stdout that is a JSON object (the check's report), if any. */
export function parseReport(stdout: string): CheckReport | undefined {
  const lines = stdout.trim().split("\n").reverse();
  for (const line of [stdout.trim(), ...lines]) {
    const t = line.trim();
    if (!t.startsWith("{")) continue;
    try {
      const v = JSON.parse(t) as unknown;
      if (v !== null && typeof v === "object" && "ok" in v) return v as CheckReport;
    } catch {
      // not this line
    }
  }
  return undefined;
}

/** The decision for a finished check run, including a check that crashed or printed no report. */
export function decideFromRun(
  run: CheckRun,
  opts: { runnerArgs: readonly string[]; results: string; retryCommand: string },
): PreflightDecision {
  if (run.report !== undefined) {
    const d = preflightDecision(run.report, opts);
    if (d.action === "start" && run.exitCode !== 0) {
      return {
        action: "exit",
        exitCode: 2,
        message: `the study check exited ${run.exitCode}; nothing was started:\n${run.stderr.trim()}`,
      };
    }
    return d;
  }
  const detail = (run.stderr.trim() || run.stdout.trim()).split("\n").slice(-15).join("\n");
  return {
    action: "exit",
    exitCode: 2,
    message: `the study check (python -m dask_workspace check) ${run.exitCode === 2 ? "refused the study" : `exited ${run.exitCode}`} and printed no report; nothing was started:\n${detail}`,
  };
}
