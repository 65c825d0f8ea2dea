/**
 * Memory kills in cgroup pods (1 pod × 2 worker processes × 1 thread, podMemory 1Gi). The study
 * (examples/studies/leak/spike.yaml) makes the first run of each replicate of its first four
 * groups grow a working set larger than a worker process may use, so the nanny restarts the
 * process (`worker-restart-memory`); the rerun on a fresh process succeeds.
 *
 * The runner counts the restarts, halves its window (AIMD) and says what to change, grows the
 * window back over the clean groups that follow, and persists every group once. The spike is
 * capped and the pod has its validated headroom, so the kernel OOM-kills nothing.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, expect, it } from "vitest";
import { aggregates, leftovers, removeKeptLogs, runInPods, STUDIES, tempDir } from "./helpers.js";

const tmp = tempDir("memory-kills-test-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

it("counts nanny memory restarts, halves the window and grows it back, loses nothing", async () => {
  const study = path.join(STUDIES, "leak", "spike.yaml");
  const { run, summary, results } = await runInPods(study, tmp, "spike");
  expect(run.code, run.stderr.slice(-3000)).toBe(0);
  const s = summary as Record<string, number>;
  expect(s).toMatchObject({ groups_total: 16, groups_persisted: 16, groups_failed: 0 });
  // 8 replicates spike once each; spikes on the two processes can share a restart.
  expect(s.memory_restarts).toBeGreaterThanOrEqual(4);
  // A nanny's memory restart also removes the worker: that removal is not a second event.
  expect(s.worker_deaths).toBe(0);
  expect(s.window_decreases).toBeGreaterThanOrEqual(1);
  expect(s.window_increases).toBeGreaterThanOrEqual(1);
  expect(s.pod_oom_kills).toBe(0);
  // The runner said what happened and what to change.
  const log = run.stdout + run.stderr;
  expect(log).toMatch(/memory restart\(s\): window \d+ -> \d+ groups/);
  expect(log).toMatch(/workers\.nprocs|workers\.memoryPerProcess/);
  // Every group once, nothing duplicated by the reruns.
  const agg = aggregates(results);
  expect(agg.groups).toEqual([...Array(16).keys()]);
  expect(agg.rows).toBe(16);
  expect(leftovers(run.pid)).toEqual({ pids: [] });
  removeKeptLogs(run.pid);
}, 240_000);
