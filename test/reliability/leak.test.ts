/**
 * A leaking model in cgroup pods (1 pod × 2 worker processes × 1 thread, podMemory 1Gi: the
 * kernel enforces the pod limit exactly as the kubelet would). The study
 * (examples/studies/leak/leak.yaml) leaks 20 MiB per simulation and shares a 320 MiB table in
 * /dev/shm between the pod's processes: memory the pod holds that no Dask limit sees.
 *
 * 1. With the validated config the study completes: every group persisted exactly once, 0 kernel
 *    OOM kills (leaking workers are recycled; the headroom holds the rest of the pod).
 * 2. The same study with the headroom rule bypassed -- memory limits summing to the pod limit, a
 *    config only this test can build because validation refuses it -- is OOM-killed by the kernel.
 *    Keep this test: it is what shows that the headroom rule matters.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pidAlive } from "../../infra/local/cgroup.js";
import { SHM_DIR } from "../../infra/local/launcher.js";
import { launchWorkspace } from "../../infra/local/run.js";
import type { WorkspaceConfig } from "../../infra/types.js";
import {
  aggregates,
  leftovers,
  loadStackFile,
  ROOT,
  runInPods,
  sleep,
  STACKS,
  STUDIES,
  tempDir,
} from "./helpers.js";

const MI = 1024 * 1024;
const STACK = path.join(STACKS, "leak-1gi.yaml");
const STUDY = path.join(STUDIES, "leak", "leak.yaml");
const tmp = tempDir("leak-test-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The run's shared tables in /dev/shm (the launcher removes them at teardown). */
const shmTables = () => fs.readdirSync(SHM_DIR).filter((n) => n.startsWith("leaky-table-"));

describe("a leaking study in 1 pod × 2 processes (1Gi)", () => {
  it("completes with every group persisted once and 0 kernel OOM kills", async () => {
    const before = shmTables();
    let sawRunner = false;
    const {
      run,
      summary: s,
      results,
    } = await runInPods(STUDY, tmp, "leak", {
      // The workspace's defaults, nothing shortened: a worker paused for good by the leak is
      // recycled by the runner at once (its unmanaged memory alone is above the pause
      // threshold; bench/PAUSED-FOREVER.md has the measurements).
      onLine: (l) => (sawRunner ||= l.includes("dask_workspace.runner")),
    });
    expect(run.stderr + run.stdout).toMatch(/podMemory 1Gi enforced by cgroup/);
    expect(run.code, run.stderr.slice(-3000)).toBe(0);
    expect(sawRunner).toBe(true);
    expect(s).toMatchObject({ groups_total: 12, groups_persisted: 12, groups_failed: 0 });
    expect(s.pod_oom_kills).toBe(0);
    // The leak really filled the workers: they were recycled (by the runner when they paused for
    // good, or by their nanny), and the pod held the table plus the leaked memory.
    const n = (k: string) => (s[k] as number | undefined) ?? 0;
    expect(n("paused_restarts") + n("memory_restarts") + n("worker_deaths")).toBeGreaterThan(0);
    // "Paused forever" did not happen: workers paused by the leak were recycled by the runner.
    expect(n("paused_restarts")).toBeGreaterThan(0);
    // Recycles are recycles: not also counted as worker deaths, even when a recycled worker's
    // results had nowhere to go (every other worker paused too).
    expect(n("worker_deaths")).toBe(0);
    const peak = (s.pod_peak_memory_bytes as Record<string, number>)["local-worker-0"];
    expect(peak).toBeGreaterThan(700 * MI);
    expect(peak).toBeLessThan(1024 * MI);
    const agg = aggregates(results);
    expect(agg.groups).toEqual([...Array(12).keys()]);
    expect(agg.rows).toBe(12); // one target per group, nothing lost or duplicated
    expect(leftovers(run.pid)).toEqual({ pids: [] });
    expect(shmTables()).toEqual(before); // the run's shared table went with the run
  }, 240_000);

  it("with memory limits summing to the pod limit (validation bypassed), the kernel OOM-kills", async () => {
    const validated = loadStackFile(STACK);
    expect(validated.workers.memoryPerProcess.bytes).toBe(351 * MI);
    const zeroHeadroom: WorkspaceConfig = {
      ...validated,
      workers: {
        ...validated.workers,
        memoryPerProcess: { bytes: 512 * MI, quantity: "512Mi" },
        headroom: { bytes: 0, quantity: "0" },
      },
    };
    const before = shmTables();
    const controller = new AbortController();
    let oomAfter: number | undefined;
    const t0 = Date.now();
    const result = await launchWorkspace(zeroHeadroom, {
      root: ROOT,
      studyFile: STUDY,
      results: path.join(tmp, "zero-headroom"),
      log: () => undefined,
      out: () => undefined,
      signal: controller.signal,
      keepLogsOnFailure: false,
      during: async (ws, runner) => {
        // Stop at the first kernel OOM kill (measured: after about 8 s).
        while (runner.running && Date.now() - t0 < 120_000) {
          if ((ws.podOomKills() ?? 0) > 0) {
            oomAfter = (Date.now() - t0) / 1000;
            break;
          }
          await sleep(200);
        }
        controller.abort();
      },
    });
    expect(result.podOomKills, "no kernel OOM kill within 120 s").toBeGreaterThanOrEqual(1);
    expect(oomAfter).toBeDefined();
    expect(result.summary.pod_oom_kills).toBe(result.podOomKills);
    expect(result.summary.pod_peak_memory_bytes).toEqual({ "local-worker-0": 1024 * MI });
    // Nothing of the run is left: processes, cgroups, the shared table.
    expect(result.cgroupDirs.length).toBeGreaterThan(0);
    expect(result.cgroupDirs.filter((d) => fs.existsSync(d))).toEqual([]);
    expect(result.pids.filter(pidAlive)).toEqual([]);
    expect(leftovers(process.pid).pids).toEqual([]);
    expect(shmTables()).toEqual(before);
  }, 240_000);
});
