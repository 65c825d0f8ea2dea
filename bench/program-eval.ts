/**
 * How long the Pulumi program takes to evaluate, under Pulumi's mock runtime (what `npm run
 * render` and the tests do; `pulumi preview` adds the engine and providers on top).
 * Goal: under 2 s for the full workspace.
 *
 *   tsx bench/program-eval.ts [--stack local] [--stack dev] [--runs 5] [--json]
 *
 * Two measurements per stack, each the median of --runs:
 * - cold: a fresh process per run. From just before `import("infra/index.ts")` until every
 *   resource registration has reached the mocks: loading and compiling the program's modules
 *   (@pulumi/kubernetes, zod, the workspace, ...) plus evaluating it; also its CPU time, which a
 *   busy machine does not inflate. `from start` is the same end point counted from the child
 *   process's start (node, tsx and @pulumi/pulumi loading included); `process` is the child's
 *   whole wall time as seen by the parent, for reference.
 * - warm: the program re-evaluated in one process (modules already loaded): the cost of
 *   building the resource graph itself.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PROGRAM = pathToFileURL(join(ROOT, "infra", "index.ts")).href;
const GOAL_SECONDS = 2;

interface OnceResult {
  stack: string;
  resources: number;
  /** Seconds from before the program import until every registration settled. */
  coldSeconds: number;
  /** CPU seconds (user + system) of this process over the same span: robust to a busy machine. */
  coldCpuSeconds: number;
  /** Seconds from the child process's start (node + tsx + @pulumi/pulumi) until settled. */
  sinceStartSeconds: number;
  /** Seconds of each in-process re-evaluation after the first. */
  warmSeconds: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** One child process: evaluate the stack's program once cold, then `warm` times more. */
async function once(stack: string, warm: number): Promise<OnceResult> {
  const pulumi = await import("@pulumi/pulumi");
  const { parseWorkspaceConfig, readStackConfigFile } = await import("../infra/config.js");
  const { installRecordingMocks, settle, toRuntimeConfig } =
    await import("../infra/render/mocks.js");
  const { azureMockCall, azureMockResource } = await import("../infra/azure/mocks.js");
  const raw = readStackConfigFile(join(ROOT, `Pulumi.${stack}.yaml`));
  const parsed = parseWorkspaceConfig(raw, { baseDir: ROOT, stack });
  if (!parsed.ok) {
    throw new Error(`stack ${stack} is invalid: ${parsed.problems.map((p) => p.path).join(", ")}`);
  }
  const evaluate = async (
    query: string,
  ): Promise<{ seconds: number; cpuSeconds: number; resources: number }> => {
    const recording = await installRecordingMocks(stack, {
      resource: azureMockResource,
      call: azureMockCall,
    });
    pulumi.runtime.setAllConfig(toRuntimeConfig(raw));
    const start = performance.now();
    const cpu = process.cpuUsage();
    // A new query string is a new module instance: the program's top level runs again, while
    // everything it imports stays loaded.
    await import(`${PROGRAM}${query}`);
    await settle();
    const used = process.cpuUsage(cpu);
    return {
      seconds: (performance.now() - start) / 1000,
      cpuSeconds: (used.user + used.system) / 1e6,
      resources: recording.resources.length,
    };
  };
  const cold = await evaluate("");
  // performance.now() counts from this process's start.
  const sinceStartSeconds = performance.now() / 1000;
  const warmSeconds: number[] = [];
  for (let i = 1; i <= warm; i++) {
    const r = await evaluate(`?run=${i}`);
    if (r.resources !== cold.resources) {
      throw new Error(
        `re-evaluation ${i} registered ${r.resources} resources, not ${cold.resources}`,
      );
    }
    warmSeconds.push(r.seconds);
  }
  return {
    stack,
    resources: cold.resources,
    coldSeconds: cold.seconds,
    coldCpuSeconds: cold.cpuSeconds,
    sinceStartSeconds,
    warmSeconds,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      stack: { type: "string", multiple: true },
      runs: { type: "string", default: "5" },
      json: { type: "boolean", default: false },
      once: { type: "string" },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) {
    throw new Error(`--runs must be a positive integer, got ${values.runs}`);
  }
  if (values.once !== undefined) {
    // Child mode: report one cold evaluation (and the warm ones) as JSON on stdout.
    process.stdout.write(`${JSON.stringify(await once(values.once, runs))}\n`);
    return;
  }
  const stacks = values.stack ?? ["local", "dev"];
  for (const stack of stacks) {
    if (!existsSync(join(ROOT, `Pulumi.${stack}.yaml`))) {
      throw new Error(`no Pulumi.${stack}.yaml in ${ROOT}`);
    }
  }
  const tsx = join(ROOT, "node_modules", ".bin", "tsx");
  const report = [];
  for (const stack of stacks) {
    const cold: number[] = [];
    const coldCpu: number[] = [];
    const sinceStart: number[] = [];
    const processWall: number[] = [];
    let warm: number[] = [];
    let resources = 0;
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      // Warm re-evaluations only in the first child: they measure the same thing every time.
      const { stdout } = await execa(
        tsx,
        [fileURLToPath(import.meta.url), "--once", stack, "--runs", String(i === 0 ? runs : 1)],
        { cwd: ROOT },
      );
      processWall.push((performance.now() - start) / 1000);
      const r = JSON.parse(stdout.trim().split("\n").pop()!) as OnceResult;
      cold.push(r.coldSeconds);
      coldCpu.push(r.coldCpuSeconds);
      sinceStart.push(r.sinceStartSeconds);
      if (i === 0) warm = r.warmSeconds;
      resources = r.resources;
    }
    report.push({
      stack,
      resources,
      runs,
      coldMedianSeconds: median(cold),
      coldCpuMedianSeconds: median(coldCpu),
      sinceStartMedianSeconds: median(sinceStart),
      warmMedianSeconds: median(warm),
      processMedianSeconds: median(processWall),
      goalSeconds: GOAL_SECONDS,
      goalMet: median(cold) < GOAL_SECONDS,
    });
  }
  if (values.json) {
    console.log(JSON.stringify(report));
    return;
  }
  console.log(`program evaluation under mocks (median of ${runs}; goal < ${GOAL_SECONDS} s cold)`);
  console.log(
    "stack   resources   cold (load+eval)   cold CPU   from start   warm (eval)   process   goal",
  );
  for (const r of report) {
    console.log(
      `${r.stack.padEnd(7)} ${String(r.resources).padStart(9)}   ${r.coldMedianSeconds.toFixed(3).padStart(14)} s` +
        `   ${r.coldCpuMedianSeconds.toFixed(3).padStart(6)} s` +
        `   ${r.sinceStartMedianSeconds.toFixed(3).padStart(8)} s` +
        `   ${r.warmMedianSeconds.toFixed(3).padStart(9)} s   ${r.processMedianSeconds.toFixed(2).padStart(5)} s` +
        `   ${r.goalMet ? "met" : "NOT met"}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
