/**
 * How long does the whole `target: azure` program take to evaluate under Pulumi's mock runtime?
 * Goal: under 2 s (issue 5). This is what `npm run render -- --stack dev` and every mock test of
 * the program pay, and a proxy for the program's own share of `pulumi preview`.
 *
 *   npx tsx bench/azure-eval.ts [--stack dev] [--runs 5]
 *
 * Measures, in one process:
 * - cold: from nothing loaded to every resource registered (imports of @pulumi/pulumi,
 *   @pulumi/azure-native, @pulumi/kubernetes, zod, config validation, program, settle);
 * - warm: the program evaluated again with every module already loaded (median of `--runs`),
 *   i.e. the program's own work: config parsing, ~30 resources, their Output plumbing.
 * Prints one JSON line at the end.
 */
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PROGRAM = pathToFileURL(join(ROOT, "infra", "index.ts")).href;

const { values } = parseArgs({
  options: { stack: { type: "string", default: "dev" }, runs: { type: "string", default: "5" } },
});
const stack = values.stack as string;
const runs = Number(values.runs);

// CPU seconds too: this machine is shared, and wall time under contention overstates the cost.
const cpuSeconds = (since: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};
const t0 = performance.now();
const c0 = process.cpuUsage();
const pulumi = await import("@pulumi/pulumi");
const { readStackConfigFile } = await import("../infra/config.js");
const { installRecordingMocks, settle, toRuntimeConfig } = await import("../infra/render/mocks.js");
const { azureMockCall, azureMockResource } = await import("../infra/azure/mocks.js");

const raw = readStackConfigFile(join(ROOT, `Pulumi.${stack}.yaml`));
if (raw["target"] !== "azure") {
  console.error(`stack ${stack} is not target azure`);
  process.exit(2);
}
const recording = await installRecordingMocks(stack, {
  resource: azureMockResource,
  call: azureMockCall,
});
pulumi.runtime.setAllConfig(toRuntimeConfig(raw));

async function evaluate(tag: string): Promise<number> {
  const before = recording.resources.length;
  // A distinct URL per run makes Node evaluate the program module again; its imports stay cached.
  await import(`${PROGRAM}?run=${tag}`);
  await settle();
  return recording.resources.length - before;
}

const coldCount = await evaluate("cold");
const cold = performance.now() - t0;
const coldCpu = cpuSeconds(c0);

const warm: number[] = [];
const warmCpu: number[] = [];
for (let i = 0; i < runs; i++) {
  const start = performance.now();
  const c = process.cpuUsage();
  const n = await evaluate(String(i));
  warm.push(performance.now() - start);
  warmCpu.push(cpuSeconds(c));
  if (n !== coldCount) throw new Error(`run ${i} registered ${n} resources, cold run ${coldCount}`);
}
warm.sort((a, b) => a - b);
warmCpu.sort((a, b) => a - b);
const median = warm[Math.floor(warm.length / 2)] as number;
const medianCpu = warmCpu[Math.floor(warmCpu.length / 2)] as number;
const azure = recording.resources
  .slice(0, coldCount)
  .filter((r) => r.type.startsWith("azure-native:"));

console.log(`stack ${stack}: ${coldCount} resources (${azure.length} Azure) per evaluation`);
console.log(
  `cold evaluation (all imports + program): ${(cold / 1000).toFixed(2)} s wall, ${coldCpu.toFixed(2)} s CPU`,
);
console.log(
  `warm evaluation (program only), median of ${runs}: ${(median / 1000).toFixed(3)} s ` +
    `(min ${(warm[0]! / 1000).toFixed(3)}, max ${(warm[warm.length - 1]! / 1000).toFixed(3)}), ` +
    `${medianCpu.toFixed(3)} s CPU`,
);
console.log(
  JSON.stringify({
    bench: "azure-eval",
    stack,
    resources: coldCount,
    azureResources: azure.length,
    coldSeconds: Number((cold / 1000).toFixed(3)),
    coldCpuSeconds: Number(coldCpu.toFixed(3)),
    warmMedianSeconds: Number((median / 1000).toFixed(3)),
    warmMedianCpuSeconds: Number(medianCpu.toFixed(3)),
    loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
    goalSeconds: 2,
    // Wall time depends on what else runs on the machine; CPU time approximates an idle run.
    withinGoalWall: cold < 2000,
    withinGoalCpu: coldCpu < 2,
  }),
);
