/**
 * `npm run local -- [--stack <name>] [--config-file <path>] [--study <file>] [--summary <path>]
 *  [--results <dir>] [--keep] [-- <runner flags>]`
 *
 * Validates the stack config with the same code as `pulumi up` and checks the study in a
 * subprocess (`python -m dask_workspace check --no-run`, see `preflight.ts`): nothing starts
 * when either fails, or when the results location already holds every group. Then starts the
 * workspace as local processes (pods in memory cgroups), runs the study through the runner with
 * live progress, prints the summary and tears everything down, also on Ctrl-C and SIGTERM
 * (`--keep`: after a Ctrl-C). See `args.ts` for every flag and the exit codes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import type { WorkspaceConfig } from "../types.js";
import { autoscaleHooks, autoscaleRawConfig, autoscaleStartConfig } from "./autoscale.js";
import { ArgsError, defaultResults, type LocalArgs, parseLocalArgs, retryCommand } from "./args.js";
import type { LocalWorkspace } from "./launcher.js";
import { type CheckRun, decideFromRun, runCheck } from "./preflight.js";
import { formatSummary, type LaunchResult, launchWorkspace, writeFileAtomic } from "./run.js";

const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Bad input: printed as is (no stack trace), exit code 2. */
class InputError extends Error {}

const say = (line: string) => process.stderr.write(`local: ${line}\n`);

/**
 * Where the user ran the command: `npm run` starts scripts in the project root and keeps the
 * caller's directory in INIT_CWD, so `npm --prefix <clone> run local -- --study study.yaml` from a
 * study folder finds the study (and writes results/ there).
 */
const USER_CWD = process.env.INIT_CWD ?? process.cwd();

function knownStacks(): string[] {
  return fs
    .readdirSync(PROJECT_ROOT)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

/**
 * Reads and validates the stack config exactly as the Pulumi program does. The config module is
 * imported here, not at the top: it loads Pulumi and zod (about 1.6 s), during which the study
 * check already runs.
 */
async function loadStack(args: LocalArgs): Promise<WorkspaceConfig> {
  const { ConfigError, formatProblems, parseWorkspaceConfig, readStackConfigFile } =
    await import("../config.js");
  if (!fs.existsSync(args.configFile)) {
    if (args.explicitConfigFile)
      throw new InputError(`config file ${args.configFile} does not exist`);
    throw new InputError(
      `unknown stack "${args.stack}": there is no Pulumi.${args.stack}.yaml in ${PROJECT_ROOT}. ` +
        `Stacks here: ${knownStacks().join(", ") || "(none)"}. ` +
        `To use a stack file kept elsewhere, pass --config-file <path>.`,
    );
  }
  let raw: Record<string, unknown>;
  try {
    raw = readStackConfigFile(args.configFile);
  } catch (err) {
    if (err instanceof ConfigError) throw new InputError(formatProblems(err.problems));
    throw err;
  }
  if (args.autoscale) {
    const r = autoscaleRawConfig(raw);
    if (!r.ok) throw new InputError(r.message);
    raw = r.raw;
  }
  const parsed = parseWorkspaceConfig(raw, { baseDir: PROJECT_ROOT, stack: args.stack });
  // --autoscale plays KEDA's part itself: the cluster's KEDA prerequisites do not apply.
  for (const w of parsed.warnings)
    if (!(args.autoscale && w.includes("KEDA"))) say(`warning: ${w}`);
  if (!parsed.ok) {
    throw new InputError(
      `invalid stack config in ${args.configFile}, ${parsed.problems.length} problem(s); nothing was started:\n` +
        formatProblems(parsed.problems),
    );
  }
  return parsed.config;
}

/** The study's `name:` (for the default results directory), if the file says. */
function studyName(file: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputError(
      `study file ${file} ${code === "ENOENT" ? "does not exist" : `cannot be read (${code})`}; pass --study <file>`,
    );
  }
  try {
    const doc = parseYaml(text) as unknown; // JSON is YAML too
    const name = (doc as { name?: unknown } | null)?.name;
    return typeof name === "string" ? name : undefined;
  } catch {
    return undefined; // the runner reports what is wrong with the study, exit 2
  }
}

/** What `--keep` prints once the study is done: where the workspace is and how to use it. */
function keepMessage(ws: LocalWorkspace, results: string): string[] {
  const python = path.join(PROJECT_ROOT, ".venv", "bin", "python");
  return [
    "the workspace stays up (--keep); press Ctrl-C to tear it down",
    `  dashboard  ${ws.dashboardUrl}/status`,
    `  scheduler  ${ws.schedulerAddress}`,
    // DASK_CONFIG carries the run's Dask config, with TLS its certificates too.
    `  connect    DASK_CONFIG=${ws.env.DASK_CONFIG} ${python} -i -c 'from distributed import Client; client = Client("${ws.schedulerAddress}"); print(client)'`,
    `  results    ${python} -c 'from dask_workspace.results import read_results; print(read_results("${results}").aggregates)'`,
  ];
}

async function main(argv: string[]): Promise<number> {
  let args: LocalArgs;
  let results: string;
  let checking: Promise<CheckRun>;
  try {
    args = parseLocalArgs(argv, { root: PROJECT_ROOT, cwd: USER_CWD });
    const name = studyName(args.studyFile);
    results =
      args.results ?? defaultResults({ cwd: USER_CWD, studyFile: args.studyFile, studyName: name });
    // The study is checked before anything starts (a typo costs a second, not a workspace
    // start), while the stack config is read.
    checking = runCheck({
      root: PROJECT_ROOT,
      studyFile: args.studyFile,
      results,
      runnerArgs: args.runnerArgs,
    });
  } catch (err) {
    if (err instanceof ArgsError) {
      (err.exitCode === 0 ? process.stdout : process.stderr).write(`${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof InputError) {
      process.stderr.write(`local: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let stackError: unknown;
  const loading = loadStack(args).catch((err: unknown) => {
    stackError = err;
    return undefined;
  });
  const stackProblem = () => {
    if (stackError instanceof InputError) process.stderr.write(`local: ${stackError.message}\n`);
    else if (stackError !== undefined) throw stackError;
  };

  say(`stack ${args.stack} (${path.relative(USER_CWD, args.configFile) || args.configFile})`);
  say(`study ${args.studyFile}; results ${results} (running again with the same results resumes)`);

  const check = await checking;
  const decision = decideFromRun(check, {
    runnerArgs: args.runnerArgs,
    results,
    retryCommand: retryCommand(argv),
  });
  if (decision.action === "exit" && decision.exitCode === 2) {
    // Reported at once; the stack's own problems too when they are known by now.
    say(`study checked in ${check.seconds.toFixed(1)} s: ${decision.message}`);
    stackProblem();
    return 2;
  }
  const config = await loading;
  if (config === undefined) {
    stackProblem();
    return 2;
  }
  if (decision.action === "exit") {
    say(`study checked in ${check.seconds.toFixed(1)} s: ${decision.message}`);
    return decision.exitCode;
  }
  say(
    `study checked in ${check.seconds.toFixed(1)} s` +
      (check.report?.bundle_hash !== undefined
        ? ` (code ${check.report.bundle_hash.slice(0, 12)})`
        : ""),
  );
  if (decision.note !== undefined) say(decision.note);

  const controller = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled !== undefined) {
      say(`${sig} again: teardown is already under way (the runner is saving finished groups)`);
      return;
    }
    signalled = sig;
    say(`${sig}: stopping the runner (finished groups are kept) and tearing down the workspace`);
    controller.abort(sig);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const printSummary = (r: LaunchResult) => {
    if (Object.keys(r.summary).length === 0) return;
    process.stdout.write(`summary:\n${formatSummary(r.summary).join("\n")}\n`);
    if (args.summaryPath !== undefined) {
      writeFileAtomic(args.summaryPath, `${JSON.stringify(r.summary, null, 2)}\n`);
      say(`summary written to ${args.summaryPath}`);
    }
  };
  let printed = false;
  const keepUp = async (ws: LocalWorkspace, r: LaunchResult) => {
    printSummary(r);
    printed = true;
    for (const line of keepMessage(ws, results)) say(line);
    await new Promise<void>((resolve) => {
      if (controller.signal.aborted) resolve();
      controller.signal.addEventListener("abort", () => resolve(), { once: true });
    });
  };
  const autoscale = args.autoscale
    ? autoscaleHooks(say, args.keep ? keepUp : undefined)
    : undefined;
  let result;
  try {
    result = await launchWorkspace(autoscale ? autoscaleStartConfig(config) : config, {
      root: PROJECT_ROOT,
      studyFile: args.studyFile,
      results,
      summaryPath: args.summaryPath,
      runnerArgs: args.runnerArgs,
      log: say,
      out: (line) => process.stdout.write(`${line}\n`),
      signal: controller.signal,
      ...(args.keep ? { afterRun: keepUp } : {}),
      ...(autoscale ?? {}),
    });
  } catch (err) {
    if (signalled !== undefined) return signalled === "SIGINT" ? 130 : 143;
    throw err;
  }
  if (!printed) printSummary(result);
  const failed = result.summary["groups_failed"];
  if (result.exitCode === 3 && typeof failed === "number" && failed > 0) {
    say(`after fixing the model, retry the ${failed} failed group(s) with: ${retryCommand(argv)}`);
  }
  say(`workspace torn down; exit ${result.exitCode}`);
  return result.exitCode;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // A bug, not bad input: show it whole.
    process.stderr.write(
      `local: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
