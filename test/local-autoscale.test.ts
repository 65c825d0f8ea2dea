/**
 * `npm run local -- --autoscale` with real Dask: the emulation of autoscaling mode dask over
 * cgroup pods starts at minReplicas (0), grows with a burst, retires pods before removing them,
 * loses nothing, and is back at zero pods after the study. Plus the pure helpers.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseWorkspaceConfig } from "../infra/config.js";
import {
  autoscaleHooks,
  autoscaleRawConfig,
  autoscaleStartConfig,
  podsToRemove,
  prometheusGauge,
  settleSeconds,
} from "../infra/local/autoscale.js";
import { launchWorkspace } from "../infra/local/run.js";
import { scalingPolicy } from "../infra/workspace/keda.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const STUDY = path.join(ROOT, "test", "fixtures", "autoscale", "burst.yaml");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "autoscale-test-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** 1-process pods of 1 thread, 0..4 pods, short windows (what --autoscale makes of a stack). */
const RAW = {
  target: "kubernetes",
  workers: { replicas: 2, nprocs: 1, threadsPerProcess: 1, podMemory: "1536Mi", cpu: "1" },
  autoscaling: {
    maxReplicas: 4,
    scaleDown: { stabilizationWindowSeconds: 6, podsPerPeriod: 2, periodSeconds: 4 },
  },
};

describe("the emulation's pure helpers", () => {
  it("reads an unlabelled gauge from Prometheus text", () => {
    const text =
      "# HELP x\n# TYPE dask_scheduler_desired_workers gauge\ndask_scheduler_desired_workers 3.0\n";
    expect(prometheusGauge(text, "dask_scheduler_desired_workers")).toBe(3);
    expect(prometheusGauge(text, "dask_workspace_busy_pods")).toBeUndefined();
  });

  it("removes idle pods first, then those holding least, then the newest", () => {
    const pods = {
      a: { busy: true, nbytes: 10 },
      b: { busy: false, nbytes: 0 },
      c: { busy: true, nbytes: 5 },
      d: { busy: false, nbytes: 0 },
    };
    expect(podsToRemove(["a", "b", "c", "d"], pods, 1)).toEqual(["d"]);
    expect(podsToRemove(["a", "b", "c", "d"], pods, 3)).toEqual(["d", "b", "c"]);
  });

  it("turns a stack into mode dask starting at minReplicas 0, and refuses mode cpu", () => {
    const r = autoscaleRawConfig(RAW);
    if (!r.ok) throw new Error(r.message);
    const parsed = parseWorkspaceConfig(r.raw, { baseDir: ROOT, stack: "local" });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
    expect(parsed.config.autoscaling.mode).toBe("dask");
    expect(autoscaleStartConfig(parsed.config).workers.replicas).toBe(0);
    expect(settleSeconds(scalingPolicy(parsed.config))).toBe(6 + 2 * 4 + 60);
    const cpu = autoscaleRawConfig({ autoscaling: { mode: "cpu" } });
    expect(cpu.ok).toBe(false);
  });
});

it("grows from zero with a burst, retires before removing, loses nothing, ends at zero", async () => {
  const r = autoscaleRawConfig(RAW);
  if (!r.ok) throw new Error(r.message);
  const parsed = parseWorkspaceConfig(r.raw, { baseDir: ROOT, stack: "local" });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const config = parsed.config;
  const out: string[] = [];
  const hooks = autoscaleHooks((l) => out.push(l), undefined, { tickSeconds: 1 });
  const result = await launchWorkspace(autoscaleStartConfig(config), {
    root: ROOT,
    studyFile: STUDY,
    results: path.join(tmp, "burst"),
    runnerArgs: ["--window", "12", "--chunking", "off"],
    log: (l) => out.push(l),
    out: (l) => out.push(l),
    during: hooks.during,
    afterRun: hooks.afterRun,
  });
  const log = out.slice(-40).join("\n");
  expect(result.exitCode, log).toBe(0);
  const s = result.summary as Record<string, unknown>;
  expect(s.groups_persisted).toBe(12);
  expect(s.groups_failed).toBe(0);
  expect(s.tasks_recomputed, log).toBe(0);
  expect(s.worker_deaths, log).toBe(0);
  const a = s.autoscale as Record<string, number>;
  expect(a.min_replicas).toBe(0);
  // It started with no pod (the runner's wake task asked for the first one) and grew past one.
  expect(out.some((l) => l.includes(", 0 pod(s) × 1 process(es)"))).toBe(true);
  expect(a.peak_pods, log).toBeGreaterThanOrEqual(3);
  expect(a.peak_pods).toBeLessThanOrEqual(4);
  // Back at zero, every removed pod retired first (retire-<pod> clients ran).
  expect(a.pods_at_end, log).toBe(0);
  expect(a.pods_removed).toBe(a.pods_added);
  expect(out.filter((l) => l.includes("retired and removed")).length).toBeGreaterThan(0);
  const scaler = hooks.autoscaler()!;
  expect(scaler.samples[0]!.pods).toBeGreaterThanOrEqual(0);
  expect(Math.max(...scaler.samples.map((x) => x.desiredProcesses))).toBeGreaterThanOrEqual(3);
  expect(result.cgroupDirs.filter((d) => fs.existsSync(d))).toEqual([]);
}, 300_000);
