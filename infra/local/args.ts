/**
 * Flags of `npm run local` (contract: docs/architecture.md "Contracts"), parsed purely.
 */
import * as path from "node:path";
import { parseArgs } from "node:util";

/** The stack used when `--stack` is absent. */
export const DEFAULT_STACK = "local";
/** The study used when `--study` is absent (relative to the project root). */
export const DEFAULT_STUDY = "examples/studies/sir-grid.yaml";

export const USAGE = `usage: npm run local -- [--stack <name>] [--config-file <path>] [--study <file>]
                        [--summary <path>] [--results <dir>] [--keep] [--autoscale]
                        [-- <runner flags>]

Checks the study first (python -m dask_workspace check: schema, bundle, imports, what the results
location holds; nothing starts when it fails), then starts the stack's Dask workspace as local
processes (a scheduler, and each worker pod as a process tree in its own memory cgroup limited to
workers.podMemory), runs the study through the runner, prints the summary and tears everything
down (also on Ctrl-C).

  --stack <name>         stack whose config to use (Pulumi.<name>.yaml; default ${DEFAULT_STACK})
  --config-file <path>   read this stack file instead of Pulumi.<name>.yaml
  --study <file>         study to run (default ${DEFAULT_STUDY}); the study file and its
                         folder (its modules and packages) are the study bundle
  --summary <path>       write the runner's summary JSON plus pod_oom_kills here
  --results <dir>        results directory or az://container/prefix
                         (default results/<study name>; re-running with the same one resumes)
  --keep                 keep the workspace and its dashboard up after the study, until Ctrl-C
  --autoscale            emulate autoscaling mode dask: start at autoscaling.minReplicas pods
                         (default 0), add and retire pods as the scheduler asks (same metric,
                         bounds and windows as the cluster's ScaledObject), and after the study
                         shrink back to minReplicas before tearing down (docs/autoscaling.md)
  -- <runner flags>      passed on to python -m dask_workspace run, e.g. -- --retry-failed

The scheduler uses the stack's scheduler.port and dashboardPort on 127.0.0.1, or free ports
when those are busy (it says so). Exit code: the runner's (0 all persisted, 3 some groups failed,
2 bad input, 4 the cluster cannot run the study); 2 for an invalid stack config or flags; 1 when
the workspace itself fails to start.`;

/** Parsed flags, paths resolved against the working directory. */
export interface LocalArgs {
  stack: string;
  /** The stack file to read. */
  configFile: string;
  /** True when --config-file was given (then a missing file is the user's typo, not the stack's). */
  explicitConfigFile: boolean;
  studyFile: string;
  summaryPath?: string;
  /** Results location; undefined = the default derived from the study's name. */
  results?: string;
  /** Extra flags for the runner (after a literal `--`). */
  runnerArgs: string[];
  /** Keep the workspace up after the study until Ctrl-C. */
  keep: boolean;
  /** Emulate autoscaling mode dask over the local pods (infra/local/autoscale.ts). */
  autoscale: boolean;
}

/** A bad command line: the message (with usage) and the exit code to use (0 for --help). */
export class ArgsError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * Parses the command line. Pure apart from resolving relative paths against `cwd`.
 * @param root the project root (where Pulumi.<stack>.yaml and the default study live)
 */
export function parseLocalArgs(argv: string[], opts: { root: string; cwd: string }): LocalArgs {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const runnerArgs = dash < 0 ? [] : argv.slice(dash + 1);
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      options: {
        stack: { type: "string" },
        "config-file": { type: "string" },
        study: { type: "string" },
        summary: { type: "string" },
        results: { type: "string" },
        keep: { type: "boolean" },
        autoscale: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ArgsError(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  if (values.help === true) throw new ArgsError(USAGE, 0);
  for (const k of ["stack", "config-file", "study", "summary", "results"] as const) {
    if (values[k] === "") throw new ArgsError(`--${k} needs a value\n\n${USAGE}`, 2);
  }
  const stack = values.stack ?? DEFAULT_STACK;
  if (!/^[A-Za-z0-9._-]+$/.test(stack)) {
    throw new ArgsError(
      `--stack ${JSON.stringify(stack)} is not a stack name (letters, digits, . _ -)`,
      2,
    );
  }
  const configFile =
    values["config-file"] !== undefined
      ? path.resolve(opts.cwd, values["config-file"])
      : path.join(opts.root, `Pulumi.${stack}.yaml`);
  return {
    stack,
    configFile,
    explicitConfigFile: values["config-file"] !== undefined,
    studyFile:
      values.study !== undefined
        ? path.resolve(opts.cwd, values.study)
        : path.join(opts.root, DEFAULT_STUDY),
    ...(values.summary !== undefined
      ? { summaryPath: path.resolve(opts.cwd, values.summary) }
      : {}),
    ...(values.results !== undefined ? { results: resolveResults(values.results, opts.cwd) } : {}),
    runnerArgs,
    keep: values.keep === true,
    autoscale: values.autoscale === true,
  };
}

/** The command that re-runs the same study and retries its failed groups. */
export function retryCommand(argv: readonly string[]): string {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? [...argv] : argv.slice(0, dash);
  const runner = dash < 0 ? [] : argv.slice(dash + 1).filter((a) => a !== "--retry-failed");
  const words = [...own.filter((a) => a !== "--keep"), "--", ...runner, "--retry-failed"];
  const quote = (w: string) =>
    /^[A-Za-z0-9_./:=@%+,-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`;
  return `npm run local -- ${words.map(quote).join(" ")}`;
}

/** Local paths are made absolute (the runner's working directory may differ); URIs stay. */
export function resolveResults(results: string, cwd: string): string {
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(results) ? results : path.resolve(cwd, results);
}

/**
 * The default results directory for a study: `<cwd>/results/<name>`, `name` being the study's
 * `name:` when it is a safe single path component, else the file's base name.
 */
export function defaultResults(opts: {
  cwd: string;
  studyFile: string;
  studyName?: string;
}): string {
  const safe = (s: string | undefined) =>
    s !== undefined && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(s) ? s : undefined;
  const name =
    safe(opts.studyName) ??
    safe(path.basename(opts.studyFile).replace(/\.(ya?ml|json)$/i, "")) ??
    "study";
  return path.join(opts.cwd, "results", name);
}
