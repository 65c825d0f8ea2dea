/**
 * `npm run render -- (--stack <name> | --config-file <path>) --out <dir>`
 *
 * Evaluates the real Pulumi program (`infra/index.ts`) offline, under Pulumi's mock runtime (no
 * cloud, no Pulumi CLI), and writes what it would create: every Kubernetes object as a plain YAML
 * manifest under `<dir>/kubernetes/`, every Azure resource as JSON `{type, name, inputs}` under
 * `<dir>/azure/`. Every Kubernetes object is validated against the Kubernetes OpenAPI schema
 * first. Nothing is written unless the config is valid and every object passes.
 *
 * Exit codes: 0 rendered; 2 bad input (flags, unknown stack, invalid config); 1 a rendered object
 * violates the schema or the program failed (a bug: please report it).
 */
import { existsSync, readdirSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

// Everything heavier (Pulumi, zod, the schema validators) is imported when first needed, so a
// mistyped flag or stack name is answered at once.

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PROGRAM = join(PROJECT_ROOT, "infra", "index.ts");

const USAGE = `usage: npm run render -- (--stack <name> | --config-file <path>) --out <dir>

  --stack <name>         stack to render (reads Pulumi.<name>.yaml in ${PROJECT_ROOT})
  --config-file <path>   read this stack file instead; the stack name comes from its file name
                         (Pulumi.<stack>.yaml, or <stack>.yaml) unless --stack is given
  --out <dir>            write <dir>/kubernetes/*.yaml and <dir>/azure/*.json`;

/** A failure to report as a plain message (no stack trace) with an exit code. */
class RenderError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface RenderArgs {
  stack: string;
  configFile: string;
  out: string;
}

function knownStacks(): string[] {
  return readdirSync(PROJECT_ROOT)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

export function parseRenderArgs(argv: string[]): RenderArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        stack: { type: "string" },
        "config-file": { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new RenderError(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  if (values.help === true) {
    throw new RenderError(USAGE, 0);
  }
  const missing = [
    ...(values.stack === undefined && values["config-file"] === undefined ? ["--stack"] : []),
    ...(values.out === undefined ? ["--out"] : []),
  ];
  if (missing.length > 0) {
    throw new RenderError(`missing ${missing.join(" and ")}\n\n${USAGE}`, 2);
  }
  const stack = values.stack ?? stackFromFileName(values["config-file"] as string);
  const configFile =
    values["config-file"] === undefined
      ? join(PROJECT_ROOT, `Pulumi.${stack}.yaml`)
      : resolve(process.env.INIT_CWD ?? process.cwd(), values["config-file"]);
  if (!existsSync(configFile)) {
    if (values["config-file"] !== undefined) {
      throw new RenderError(`config file ${configFile} does not exist`, 2);
    }
    const stacks = knownStacks();
    throw new RenderError(
      `unknown stack "${stack}": there is no Pulumi.${stack}.yaml in ${PROJECT_ROOT}. ` +
        `Stacks here: ${stacks.length > 0 ? stacks.join(", ") : "(none)"}. ` +
        `To render a stack file kept elsewhere, pass --config-file <path>.`,
      2,
    );
  }
  return { stack, configFile, out: values.out as string };
}

/**
 * The stack a stack file belongs to, from its name: `Pulumi.<stack>.yaml` → `<stack>`, any other
 * `<name>.yaml` → `<name>` (characters a stack name cannot hold become "-").
 */
export function stackFromFileName(file: string): string {
  const base = basename(file);
  const name = /^Pulumi\.(.+)\.ya?ml$/i.exec(base)?.[1] ?? base.replace(/\.(ya?ml|json)$/i, "");
  const cleaned = name.replace(/[^A-Za-z0-9._-]+/g, "-");
  return cleaned === "" ? "stack" : cleaned;
}

/** Reads and validates the stack config; every problem at once. */
async function readConfig(args: RenderArgs): Promise<Record<string, unknown>> {
  const { ConfigError, formatProblems, parseWorkspaceConfig, readStackConfigFile } =
    await import("./config.js");
  let raw: Record<string, unknown>;
  try {
    raw = readStackConfigFile(args.configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      throw new RenderError(formatProblems(err.problems), 2);
    }
    throw err;
  }
  const parsed = parseWorkspaceConfig(raw, { baseDir: PROJECT_ROOT, stack: args.stack });
  if (!parsed.ok) {
    throw new RenderError(
      `invalid stack config in ${args.configFile}, ${parsed.problems.length} problem(s):\n` +
        formatProblems(parsed.problems),
      2,
    );
  }
  return raw;
}

export async function render(args: RenderArgs): Promise<string> {
  const raw = await readConfig(args);
  const pulumi = await import("@pulumi/pulumi");
  const { installRecordingMocks, settle, toRuntimeConfig } = await import("./render/mocks.js");
  const { planRender } = await import("./render/manifests.js");
  const { formatViolations, validateManifests } = await import("./render/validate.js");
  const { writeRenderOutput } = await import("./render/write.js");
  const { azureMockCall, azureMockResource } = await import("./azure/mocks.js");
  // Azure resources report the computed outputs the program feeds back (ids, identities);
  // Kubernetes objects echo their inputs.
  const recording = await installRecordingMocks(args.stack, {
    resource: azureMockResource,
    call: azureMockCall,
  });
  pulumi.runtime.setAllConfig(toRuntimeConfig(raw));
  try {
    await import(pathToFileURL(PROGRAM).href);
  } catch (err) {
    if (err instanceof pulumi.RunError) {
      throw new RenderError(err.message, 2);
    }
    throw err;
  }
  await settle();

  const plan = planRender(recording.resources);
  const violations = await validateManifests(plan.kubernetes.map((k) => k.manifest));
  if (violations.length > 0) {
    throw new RenderError(
      `${violations.length} schema violation(s) in the rendered Kubernetes objects; nothing written:\n` +
        formatViolations(violations),
      1,
    );
  }
  const files = [...plan.kubernetes.map((k) => k.file), ...plan.azure];
  try {
    await writeRenderOutput(args.out, files);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === "string") {
      // A file where a directory should be, no permission, a full disk: the user's to fix.
      throw new RenderError(
        `cannot write to --out ${resolve(args.out)}: ${(err as Error).message}; nothing was written`,
        2,
      );
    }
    throw err;
  }
  const skipped = plan.skipped.map((r) => `\n  not rendered: ${r.type} "${r.name}"`).join("");
  return (
    `rendered stack ${args.stack}: ${plan.kubernetes.length} Kubernetes objects, ` +
    `${plan.azure.length} Azure resources → ${resolve(args.out)}${skipped}`
  );
}

async function main(): Promise<number> {
  try {
    const args = parseRenderArgs(process.argv.slice(2));
    console.log(await render(args));
    return 0;
  } catch (err) {
    if (err instanceof RenderError) {
      (err.exitCode === 0 ? console.log : console.error)(err.message);
      return err.exitCode;
    }
    console.error(err);
    return 1;
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main();
}
