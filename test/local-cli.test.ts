/**
 * `npm run local` end to end: the default stack and example study, Ctrl-C, and the unenforced
 * mode. Every run must leave no process and no cgroup behind.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pidAlive } from "../infra/local/cgroup.js";
import { launchWorkspace } from "../infra/local/run.js";
import {
  leftovers,
  removeKeptLogs,
  loadStackFile,
  ROOT,
  runCli,
  STACKS,
  STUDIES,
  tempDir,
} from "./reliability/helpers.js";

const tmp = tempDir("local-cli-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("npm run local", () => {
  it("runs the example study on the local stack by default and leaves nothing running", async () => {
    const summaryPath = path.join(tmp, "sir.json");
    let during: ReturnType<typeof leftovers> | undefined;
    const run = await runCli(["--summary", summaryPath, "--results", path.join(tmp, "sir")], {
      onLine: (line, pid) => {
        if (during === undefined && line.includes("running: python -m dask_workspace run")) {
          during = leftovers(pid);
        }
      },
    });
    expect(run.code, run.stderr.slice(-3000)).toBe(0);
    expect(run.stderr).toMatch(/stack local \(Pulumi\.local\.yaml\)/);
    expect(run.stderr).toMatch(/sir-grid\.yaml/);
    expect(run.stderr).toMatch(/2 pod\(s\) × 2 process\(es\), podMemory 2Gi enforced by cgroup v1/);
    // While it ran: the scheduler, 2 pods of (nanny host + 2 workers) and the run cgroup existed.
    expect(during?.pids.length).toBeGreaterThanOrEqual(7);
    expect(during?.cgroupDir).toBeDefined();
    const s = JSON.parse(fs.readFileSync(summaryPath, "utf8")) as Record<string, unknown>;
    expect(s).toMatchObject({ groups_total: 40, groups_persisted: 40, groups_failed: 0 });
    expect(s.pod_oom_kills).toBe(0);
    expect(Object.keys(s.pod_peak_memory_bytes as object)).toEqual([
      "local-worker-0",
      "local-worker-1",
    ]);
    expect(run.stdout).toMatch(/summary:\n\s+groups_total\s+40/);
    // Afterwards: nothing.
    expect(leftovers(run.pid)).toEqual({ pids: [] });
    expect(fs.existsSync(during!.cgroupDir!)).toBe(false);
  }, 240_000);

  it("tears everything down on Ctrl-C (SIGINT) and exits 130", async () => {
    let interrupted = false;
    const run = await runCli(
      [
        "--config-file",
        path.join(STACKS, "leak-1gi.yaml"),
        "--study",
        path.join(STUDIES, "leak", "slow.yaml"),
        "--results",
        path.join(tmp, "slow"),
      ],
      {
        onLine: (line, pid) => {
          if (!interrupted && line.includes("running: python -m dask_workspace run")) {
            interrupted = true;
            // Give the runner a moment to connect, as a user would take to press Ctrl-C.
            setTimeout(() => process.kill(pid, "SIGINT"), 3_000);
          }
        },
      },
    );
    expect(interrupted).toBe(true);
    expect(run.code, run.stderr.slice(-2000)).toBe(130);
    expect(run.stderr).toMatch(/SIGINT: stopping the runner/);
    expect(leftovers(run.pid)).toEqual({ pids: [] });
    removeKeptLogs(run.pid);
  }, 180_000);

  it("refuses an unknown stack and a missing study with exit 2 before starting anything", async () => {
    const stack = await runCli(["--stack", "nope"]);
    expect(stack.code).toBe(2);
    expect(stack.stderr).toMatch(/unknown stack "nope".*Stacks here: .*local/s);
    const study = await runCli(["--study", path.join(tmp, "missing.yaml")]);
    expect(study.code).toBe(2);
    expect(study.stderr).toMatch(/study file .*missing\.yaml does not exist/);
    for (const r of [stack, study]) expect(leftovers(r.pid)).toEqual({ pids: [] });
  });
});

describe("without cgroups", () => {
  it("runs unenforced, says so, and reports pod_oom_kills as null (never a silent 0)", async () => {
    const study = path.join(tmp, "tiny", "tiny.yaml");
    fs.mkdirSync(path.dirname(study), { recursive: true });
    fs.copyFileSync(path.join(STUDIES, "leak", "leaky.py"), path.join(tmp, "tiny", "leaky.py"));
    fs.writeFileSync(
      study,
      [
        "name: tiny",
        "model: leaky:simulate",
        "targets: {mean: 'leaky:mean_value'}",
        "parameters: {grid: {k: [0, 1, 2], leak_mib: 0, seconds: 0.05}}",
        "replicates: 2",
        "seed: 1",
        "",
      ].join("\n"),
    );
    const log: string[] = [];
    const result = await launchWorkspace(loadStackFile(path.join(STACKS, "leak-1gi.yaml")), {
      root: ROOT,
      studyFile: study,
      results: path.join(tmp, "tiny-results"),
      log: (l) => log.push(l),
      out: () => undefined,
      enforceMemory: false,
    });
    expect(result.exitCode, log.join("\n")).toBe(0);
    expect(log.join("\n")).toMatch(/pod memory limits are NOT enforced/);
    expect(result.podOomKills).toBeNull();
    expect(result.summary).toMatchObject({ groups_persisted: 3, pod_oom_kills: null });
    expect(result.cgroupDirs).toEqual([]);
    expect(result.pids.filter(pidAlive)).toEqual([]);
    expect(leftovers(process.pid).pids).toEqual([]);
  }, 120_000);
});
