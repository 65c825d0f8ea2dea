/**
 * A poison group -- a parameter set whose simulations allocate until their worker is killed -- is
 * isolated: the runner retries it once with new task keys, records it as failed, finishes every
 * other group and exits 3. The pod itself survives (the nanny restarts the poisoned processes
 * before the kernel has to step in). Retried without end, the same group makes the runner give up
 * with exit 4 and guidance instead of looping.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, expect, it } from "vitest";
import { aggregates, leftovers, removeKeptLogs, runInPods, STUDIES, tempDir } from "./helpers.js";

const tmp = tempDir("poison-test-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const POISON = path.join(STUDIES, "poison", "poison.yaml");

it("isolates the poison group: the other groups persist, the run exits 3", async () => {
  const { run, summary, results } = await runInPods(POISON, tmp, "isolate");
  expect(run.code, run.stderr.slice(-3000)).toBe(3);
  const s = summary as Record<string, number>;
  expect(s.groups_total).toBe(6);
  expect(s.groups_failed).toBe(1);
  expect(s.groups_persisted).toBe(5);
  expect(s.groups_retried).toBeGreaterThanOrEqual(1);
  // The poisoned processes were killed (by their nanny: memory restarts) ...
  expect(s.memory_restarts + s.worker_deaths).toBeGreaterThanOrEqual(4);
  // ... and the pod's headroom absorbed the overshoot: no kernel OOM kill.
  expect(s.pod_oom_kills).toBe(0);
  // Every healthy group is in the results once; the poison group (k = 3, group 3) is not.
  const agg = aggregates(results);
  expect(agg.groups).toEqual([0, 1, 2, 4, 5]);
  expect(agg.rows).toBe(5);
  expect(leftovers(run.pid)).toEqual({ pids: [] });
  removeKeptLogs(run.pid);
}, 240_000);

it("never loops forever: when workers keep dying and nothing persists, exits 4 with guidance", async () => {
  // The same poison group, retried without end (group-retries 1000): after the healthy groups,
  // every attempt ends in killed workers and nothing persists. The runner gives up after the
  // stall timeout (shortened from 30 min) and says what to change.
  const { run, summary, results } = await runInPods(POISON, tmp, "stall", {
    env: {
      DASK_WORKSPACE__RUNNER__GROUP_RETRIES: "1000",
      DASK_WORKSPACE__RUNNER__STALL_TIMEOUT: "15s",
    },
  });
  expect(run.code, run.stderr.slice(-3000)).toBe(4);
  const log = run.stdout + run.stderr;
  expect(log).toMatch(/no group finished for \d+s while \d+ workers died or were restarted/);
  for (const hint of ["--window", "workers.nprocs", "workers.podMemory"]) {
    expect(log).toContain(hint);
  }
  expect(summary.status).toBe("cluster-dying");
  expect(summary.pod_oom_kills).toBe(0);
  // What finished before the stall was kept (how many healthy groups ran first depends on when
  // the window, halved by the deaths, filled up with the poison group's retries).
  const persisted = summary.groups_persisted as number;
  expect(persisted).toBeGreaterThanOrEqual(1);
  expect(persisted).toBeLessThanOrEqual(5);
  const agg = aggregates(results);
  expect(agg.rows).toBe(persisted);
  expect(agg.groups).not.toContain(3); // the poison group (k = 3)
  expect(leftovers(run.pid)).toEqual({ pids: [] });
  removeKeptLogs(run.pid);
}, 240_000);
