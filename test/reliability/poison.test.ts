/**
 * A poison group -- a parameter set whose simulations allocate until their worker is killed -- is
 * isolated: the runner retries it once with new task keys, records it as failed, finishes every
 * other group and exits 3. The pod itself survives (the nanny restarts the poisoned processes
 * before the kernel has to step in).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, expect, it } from "vitest";
import {
  aggregates,
  leftovers,
  removeKeptLogs,
  runCli,
  STACKS,
  STUDIES,
  tempDir,
} from "./helpers.js";

const tmp = tempDir("poison-test-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

it("isolates the poison group: the other groups persist, the run exits 3", async () => {
  const results = path.join(tmp, "results");
  const summaryPath = path.join(tmp, "summary.json");
  const run = await runCli([
    "--config-file",
    path.join(STACKS, "leak-1gi.yaml"),
    "--study",
    path.join(STUDIES, "poison", "poison.yaml"),
    "--results",
    results,
    "--summary",
    summaryPath,
  ]);
  expect(run.code, run.stderr.slice(-3000)).toBe(3);
  const s = JSON.parse(fs.readFileSync(summaryPath, "utf8")) as Record<string, number>;
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
