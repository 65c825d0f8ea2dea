/**
 * The program run the way `pulumi up`/`preview` runs it: Pulumi's Node.js runner
 * (`@pulumi/pulumi/cmd/run`) started with Pulumi.yaml's runtime options, the arguments and
 * environment the `pulumi-language-nodejs` host passes, talking gRPC to an engine and monitor.
 * The Pulumi CLI and its language host are not installable here, so a minimal fake engine
 * (test/helpers/fake-engine.ts) stands in for them; everything on the program's side is real.
 */
import { execa } from "execa";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { afterEach, describe, expect, it } from "vitest";
import { PROJECT_ROOT, STATIC_RAW } from "./helpers/config.js";
import { type FakeEngine, startFakeEngine } from "./helpers/fake-engine.js";

/** Resolved like the language host does (`require.resolve` from the program directory). */
const RUN_PATH = createRequire(join(PROJECT_ROOT, "package.json")).resolve(
  "@pulumi/pulumi/cmd/run",
);

interface Runtime {
  /** `runtime.options.typescript` (Pulumi's default: true). */
  typescript: boolean;
  /** `runtime.options.nodeargs`. */
  nodeargs: string;
  /** `main`. */
  main: string;
}

async function pulumiYamlRuntime(): Promise<Runtime> {
  const doc = parseYaml(await readFile(join(PROJECT_ROOT, "Pulumi.yaml"), "utf8")) as {
    main?: string;
    runtime: { name: string; options?: { typescript?: boolean; nodeargs?: string } };
  };
  expect(doc.runtime.name).toBe("nodejs");
  return {
    typescript: doc.runtime.options?.typescript ?? true,
    nodeargs: doc.runtime.options?.nodeargs ?? "",
    main: doc.main ?? ".",
  };
}

/** The host's config encoding: `<namespace>:config:<key>`, objects as JSON text. */
function hostConfig(raw: Record<string, unknown>): string {
  return JSON.stringify(
    Object.fromEntries(
      Object.entries(raw).map(([k, v]) => [
        `dask-workspace:config:${k}`,
        typeof v === "string" ? v : JSON.stringify(v),
      ]),
    ),
  );
}

let engine: FakeEngine | undefined;
afterEach(async () => {
  await engine?.stop();
  engine = undefined;
});

async function runProgram(runtime: Runtime, raw: Record<string, unknown>) {
  engine = await startFakeEngine({ project: "dask-workspace", stack: "ci" });
  const args = [
    // The host splits nodeargs like a shell; these have no quoting.
    ...runtime.nodeargs.split(/\s+/).filter((a) => a !== ""),
    RUN_PATH,
    "--monitor",
    engine.address,
    "--engine",
    engine.address,
    "--project",
    "dask-workspace",
    "--root-directory",
    PROJECT_ROOT,
    "--stack",
    "ci",
    "--pwd",
    PROJECT_ROOT,
    "--dry-run",
    "--parallel",
    "4",
    runtime.main,
  ];
  const result = await execa(process.execPath, args, {
    cwd: PROJECT_ROOT,
    reject: false,
    env: {
      PULUMI_CONFIG: hostConfig(raw),
      PULUMI_CONFIG_SECRET_KEYS: "[]",
      ...(runtime.typescript ? { PULUMI_NODEJS_TYPESCRIPT: "true" } : {}),
    },
  });
  return { result, engine };
}

describe("Pulumi.yaml runtime: the TypeScript ESM program under Pulumi's own runner", () => {
  it("loads infra/index.ts, registers the workspace and exports its outputs", async () => {
    const { result, engine } = await runProgram(await pulumiYamlRuntime(), STATIC_RAW);
    // No errors and no warnings (e.g. none about undefined stack outputs), except the
    // images-by-tag warnings: the stack pins no digests.
    const problems = engine.logs
      .filter((l) => l.severity >= 2)
      .map((l) => l.message)
      .filter((m) => !/^images\.(dask|runner): .* is a tag/.test(m));
    expect(problems).toEqual([]);
    expect(result.exitCode).toBe(0);
    const types = engine.registrations.map((r) => r.type);
    expect(types[0]).toBe("pulumi:pulumi:Stack");
    expect(types).toContain("dask-workspace:workspace:DaskWorkspace");
    const objects = engine.registrations.filter(
      (r) => r.custom && r.type.startsWith("kubernetes:"),
    );
    expect(objects).toHaveLength(18); // 15 + the three egress policies (DNS, Dask, runner)
    const stack = engine.registrations[0]!;
    expect(engine.outputs.get(stack.urn)).toEqual({
      namespace: "sims",
      schedulerAddress: "tcp://dask-scheduler.sims.svc:8786",
      dashboardPort: 8787,
    });
  });

  it("reports an invalid config as an error message without a stack trace, creating nothing", async () => {
    const { result, engine } = await runProgram(await pulumiYamlRuntime(), {
      workers: { nprocs: 6, podMemory: "24Gi", memoryPerProcess: "4Gi", cpu: "6" },
    });
    // 32: "the error was already shown to the user" (the language host adds nothing).
    expect(result.exitCode).toBe(32);
    const errors = engine.logs.filter((l) => l.severity >= 3).map((l) => l.message);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("workers.memoryPerProcess: 6 × 4Gi = 24Gi leaves 0");
    expect(errors[0]).not.toMatch(/^\s+at /m);
    expect(engine.registrations.filter((r) => r.custom)).toEqual([]);
  });

  it("needs the tsx loader: Pulumi's default TypeScript mode cannot load this ESM program", async () => {
    // `typescript: true` without a project ts-node falls back to Pulumi's vendored ts-node 7,
    // which hooks require() only; import() of a .ts file in a "type": "module" package fails.
    const { result, engine } = await runProgram(
      { typescript: true, nodeargs: "", main: "infra/index.ts" },
      STATIC_RAW,
    );
    expect(result.exitCode).not.toBe(0);
    const output = [result.stderr, ...engine.logs.map((l) => l.message)].join("\n");
    expect(output).toContain("ERR_UNKNOWN_FILE_EXTENSION");
    expect(engine.registrations.filter((r) => r.custom)).toEqual([]);
  });
});
