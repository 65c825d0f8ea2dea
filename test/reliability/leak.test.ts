/**
 * Leaking models in cgroup pods (1 pod × 2 worker processes × 1 thread, podMemory 1Gi: the
 * kernel enforces the pod limit exactly as the kubelet would).
 *
 * 1. The leak study completes with the workspace's validated config: every group persisted, each
 *    exactly once, and 0 kernel OOM kills (workers are recycled as they fill up).
 * 2. The headroom rule is what keeps the pod alive: the same model, with working-set bursts that
 *    overshoot each process's nanny threshold within one monitor tick, is OOM-killed by the kernel
 *    when the processes' memory limits sum to the pod limit (a config only this test can build:
 *    validation refuses it), and is not with the validated headroom.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pidAlive } from "../../infra/local/cgroup.js";
import { launchWorkspace } from "../../infra/local/run.js";
import type { WorkspaceConfig } from "../../infra/types.js";
import {
  aggregates,
  leftovers,
  loadStackFile,
  ROOT,
  runCli,
  sleep,
  STACKS,
  STUDIES,
  tempDir,
} from "./helpers.js";

const MI = 1024 * 1024;
const STACK = path.join(STACKS, "leak-1gi.yaml");
const tmp = tempDir("leak-test-");
afterAll(async () => {
  const fs = await import("node:fs");
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("a leaking study in 1 pod × 2 processes (1Gi)", () => {
  it("completes with every group persisted once and 0 kernel OOM kills", async () => {
    const results = path.join(tmp, "leak");
    const summaryPath = path.join(tmp, "leak-summary.json");
    let sawRunner = false;
    const run = await runCli(
      [
        "--config-file",
        STACK,
        "--study",
        path.join(STUDIES, "leak", "leak.yaml"),
        "--results",
        results,
        "--summary",
        summaryPath,
      ],
      {
        onLine: (l) => (sawRunner ||= l.includes("dask_workspace.runner")),
        // Workers that pause for good are recycled by the runner after
        // workspace.runner.paused-restart-after (60 s by default); this leak pauses a worker
        // every ~6 tasks, so the test shortens the wait (bench/REPORT.md, "Paused forever").
        env: { DASK_WORKSPACE__RUNNER__PAUSED_RESTART_AFTER: "2s" },
      },
    );
    expect(run.stderr + run.stdout).toMatch(/podMemory 1Gi enforced by cgroup/);
    expect(run.code, run.stderr.slice(-3000)).toBe(0);
    expect(sawRunner).toBe(true);
    const fs = await import("node:fs");
    const s = JSON.parse(fs.readFileSync(summaryPath, "utf8")) as Record<string, number>;
    expect(s.groups_total).toBe(12);
    expect(s.groups_persisted).toBe(12);
    expect(s.groups_failed).toBe(0);
    expect(s.pod_oom_kills).toBe(0);
    // The leak really filled the workers: they were recycled (nanny restarts or the runner's
    // paused-worker recycling), and the pod's memory grew well past its idle ~170 MiB.
    expect(s.memory_restarts + s.worker_deaths + (s.paused_restarts ?? 0)).toBeGreaterThan(0);
    const peak = (s as unknown as { pod_peak_memory_bytes: Record<string, number> })
      .pod_peak_memory_bytes["local-worker-0"];
    expect(peak).toBeGreaterThan(450 * MI);
    expect(peak).toBeLessThanOrEqual(1024 * MI);
    const agg = aggregates(results);
    expect(agg.groups).toEqual([...Array(12).keys()]);
    expect(agg.rows).toBe(12); // one target per group, nothing duplicated
    expect(leftovers(run.pid)).toEqual({ pids: [] });
  });
});

/** In-process runs: no process of the run is alive and every cgroup it made is gone. */
function expectNothingLeft(result: { pids: number[]; cgroupDirs: string[] }) {
  expect(result.cgroupDirs.length).toBeGreaterThan(0);
  expect(result.cgroupDirs.filter((d) => existsSync(d))).toEqual([]);
  expect(result.pids.filter((p) => pidAlive(p))).toEqual([]);
  expect(leftovers(process.pid).pids).toEqual([]);
}

/** Runs the burst study on `config` until the first pod OOM kill or `seconds`, then stops. */
async function burst(config: WorkspaceConfig, seconds: number) {
  const controller = new AbortController();
  let firstOomAfter: number | undefined;
  const t0 = Date.now();
  const result = await launchWorkspace(config, {
    root: ROOT,
    studyFile: path.join(STUDIES, "leak", "burst.yaml"),
    results: tempDir("burst-results-"),
    log: () => undefined,
    out: () => undefined,
    signal: controller.signal,
    keepLogsOnFailure: false,
    during: async (ws, runner) => {
      while (runner.running && Date.now() - t0 < seconds * 1000) {
        const kills = ws.podOomKills();
        if (kills !== null && kills > 0) {
          firstOomAfter = (Date.now() - t0) / 1000;
          break;
        }
        await sleep(250);
      }
      controller.abort();
    },
  });
  return { result, firstOomAfter };
}

describe("headroom is what keeps the pod alive", () => {
  const validated = loadStackFile(STACK);

  it("the same bursts with the validated headroom: nanny restarts, 0 kernel OOM kills", async () => {
    const { result } = await burst(validated, 40);
    expect(result.podOomKills).toBe(0);
    // The bursts did happen: their processes were restarted by the nanny many times.
    expect(result.summary.memory_restarts as number).toBeGreaterThanOrEqual(8);
    const peak = (result.summary.pod_peak_memory_bytes as Record<string, number>)["local-worker-0"];
    expect(peak).toBeLessThan(1024 * MI);
    expectNothingLeft(result);
  }, 180_000);
});
