/**
 * Faults at the local-launcher level, on cgroup pods (1 pod × 2 processes, 1Gi):
 * - a worker process SIGKILLed in the middle of a study loses nothing;
 * - stopping the whole command (SIGTERM, as Kubernetes or a shell would) keeps the finished groups,
 *   leaves nothing running, and a second run with the same results resumes without repeating them.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, expect, it } from "vitest";
import { pidAlive } from "../../infra/local/cgroup.js";
import { launchWorkspace } from "../../infra/local/run.js";
import {
  aggregates,
  leftovers,
  removeKeptLogs,
  loadStackFile,
  ROOT,
  runCli,
  sleep,
  STACKS,
  STUDIES,
  tempDir,
} from "./helpers.js";

const STACK = path.join(STACKS, "leak-1gi.yaml");
const SLOW = path.join(STUDIES, "leak", "slow.yaml"); // 16 groups × 4 replicates of 0.4 s
const tmp = tempDir("faults-test-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

it("a worker process SIGKILLed mid-run loses nothing", async () => {
  const results = path.join(tmp, "kill");
  const killed: number[] = [];
  const out: string[] = [];
  const result = await launchWorkspace(loadStackFile(STACK), {
    root: ROOT,
    studyFile: SLOW,
    results,
    log: (l) => out.push(l),
    out: (l) => out.push(l),
    during: async (ws, runner) => {
      // Let a few groups finish and others be in flight, then kill one worker process outright.
      await sleep(6_000);
      expect(runner.running).toBe(true);
      const [victim] = ws.workerProcessPids("local-worker-0");
      process.kill(victim, "SIGKILL");
      killed.push(victim);
    },
  });
  expect(killed).toHaveLength(1);
  expect(result.exitCode, out.slice(-30).join("\n")).toBe(0);
  const s = result.summary as Record<string, number>;
  expect(s.worker_deaths).toBeGreaterThanOrEqual(1);
  expect(s.groups_persisted).toBe(16);
  expect(s.groups_failed).toBe(0);
  expect(s.pod_oom_kills).toBe(0);
  const agg = aggregates(results);
  expect(agg.groups).toEqual([...Array(16).keys()]);
  expect(agg.rows).toBe(16);
  expect(result.cgroupDirs.filter((d) => fs.existsSync(d))).toEqual([]);
  expect(result.pids.filter(pidAlive)).toEqual([]);
  expect(leftovers(process.pid).pids).toEqual([]);
}, 180_000);

it("SIGTERM to the command keeps finished groups; a rerun resumes them without repeats", async () => {
  const results = path.join(tmp, "resume");
  const summary1 = path.join(tmp, "first.json");
  const summary2 = path.join(tmp, "second.json");
  const args = ["--config-file", STACK, "--study", SLOW, "--results", results];
  let signalled = false;
  let sawProcesses = 0;
  const first = await runCli([...args, "--summary", summary1], {
    env: { DASK_WORKSPACE__RUNNER__PROGRESS_INTERVAL: "1s" },
    onLine: (line, pid) => {
      const m = /\[slow\] (\d+)\/16 groups/.exec(line);
      if (!signalled && m && Number(m[1]) >= 4) {
        signalled = true;
        // Non-vacuous check of the leftovers probe: the run's processes are visible now.
        sawProcesses = leftovers(pid).pids.length;
        process.kill(pid, "SIGTERM");
      }
    },
  });
  expect(signalled).toBe(true);
  expect(sawProcesses).toBeGreaterThanOrEqual(4); // scheduler, pod (host + 2 workers), runner
  expect(first.code, first.stderr.slice(-2000)).toBe(143);
  expect(first.stderr).toMatch(/SIGTERM: stopping the runner/);
  expect(leftovers(first.pid)).toEqual({ pids: [] });
  removeKeptLogs(first.pid);
  const s1 = JSON.parse(fs.readFileSync(summary1, "utf8")) as Record<string, number>;
  expect(s1.groups_persisted).toBeGreaterThanOrEqual(4);
  expect(s1.groups_persisted).toBeLessThan(16);
  const kept = aggregates(results);
  expect(kept.rows).toBe(s1.groups_persisted);

  const second = await runCli([...args, "--summary", summary2]);
  expect(second.code, second.stderr.slice(-2000)).toBe(0);
  const s2 = JSON.parse(fs.readFileSync(summary2, "utf8")) as Record<string, number>;
  expect(s2.groups_resumed).toBe(s1.groups_persisted);
  expect(s2.groups_run).toBe(16 - s1.groups_persisted);
  expect(s2.groups_persisted).toBe(16);
  const all = aggregates(results);
  expect(all.groups).toEqual([...Array(16).keys()]);
  expect(all.rows).toBe(16); // the first run's groups were not recomputed or duplicated
  expect(leftovers(second.pid)).toEqual({ pids: [] });
}, 240_000);
