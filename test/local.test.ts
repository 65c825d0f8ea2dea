/**
 * `npm run local`: the pure decisions (flags, commands, summary) and the launcher machinery
 * (scheduler file, ports, process groups), without a Dask cluster. The end-to-end runs are in
 * test/local-cli.test.ts and test/reliability/.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseWorkspaceConfig } from "../infra/config.js";
import { schedulerCommand, workerCommand } from "../infra/dask.js";
import {
  ArgsError,
  DEFAULT_STACK,
  DEFAULT_STUDY,
  defaultResults,
  parseLocalArgs,
  resolveResults,
} from "../infra/local/args.js";
import {
  exitCodeOf,
  isAddressInUse,
  isNotableDaskLine,
  localEnv,
  localRunnerArgv,
  localSchedulerArgv,
  localWorkerArgv,
  ManagedProcess,
  podName,
  portsMoved,
  processGroupPids,
  readSchedulerFile,
  withPorts,
} from "../infra/local/launcher.js";
import { formatSummary, localSummary, writeFileAtomic } from "../infra/local/run.js";
import type { WorkspaceConfig } from "../infra/types.js";

const ROOT = path.resolve(import.meta.dirname, "..");

function localStack(overrides: Record<string, unknown> = {}): WorkspaceConfig {
  const raw = {
    target: "kubernetes",
    workers: { replicas: 2, nprocs: 2, threadsPerProcess: 1, podMemory: "2Gi" },
    jobs: {
      "sir-grid": {
        study: "examples/studies/sir-grid.yaml",
        mode: "batch",
        batchSize: 7,
        chunking: "off",
        chunkSeconds: 0.5,
      },
    },
    ...overrides,
  };
  const r = parseWorkspaceConfig(raw, { baseDir: ROOT, stack: "local" });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

describe("npm run local flags", () => {
  const opts = { root: "/proj", cwd: "/here" };

  it("defaults to the local stack and the example study", () => {
    const a = parseLocalArgs([], opts);
    expect(a).toEqual({
      stack: DEFAULT_STACK,
      configFile: "/proj/Pulumi.local.yaml",
      explicitConfigFile: false,
      studyFile: path.join("/proj", DEFAULT_STUDY),
      runnerArgs: [],
      keep: false,
      autoscale: false,
    });
  });

  it("resolves paths against the working directory and passes flags after -- to the runner", () => {
    const a = parseLocalArgs(
      [
        "--stack",
        "dev",
        "--config-file",
        "cfg/s.yaml",
        "--study",
        "st.yaml",
        "--summary",
        "out/s.json",
        "--results",
        "az://c/p",
        "--",
        "--mode",
        "batch",
      ],
      opts,
    );
    expect(a).toEqual({
      stack: "dev",
      configFile: "/here/cfg/s.yaml",
      explicitConfigFile: true,
      studyFile: "/here/st.yaml",
      summaryPath: "/here/out/s.json",
      results: "az://c/p",
      runnerArgs: ["--mode", "batch"],
      keep: false,
      autoscale: false,
    });
  });

  it("rejects unknown flags, empty values and odd stack names with exit 2 and the usage", () => {
    for (const argv of [["--stak", "x"], ["--study", ""], ["--stack", "../x"], ["positional"]]) {
      let err: unknown;
      try {
        parseLocalArgs(argv, opts);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ArgsError);
      expect((err as ArgsError).exitCode).toBe(2);
    }
    expect(() => parseLocalArgs(["--stak", "x"], opts)).toThrow(/usage: npm run local/);
  });

  it("answers --help with exit 0", () => {
    try {
      parseLocalArgs(["--help"], opts);
      expect.unreachable();
    } catch (e) {
      expect((e as ArgsError).exitCode).toBe(0);
      expect((e as ArgsError).message).toMatch(/--summary <path>/);
    }
  });

  it("derives the default results directory from the study's name, safely", () => {
    expect(defaultResults({ cwd: "/w", studyFile: "/s/x.yaml", studyName: "sir-grid" })).toBe(
      "/w/results/sir-grid",
    );
    expect(defaultResults({ cwd: "/w", studyFile: "/s/leak.yml", studyName: "../../etc" })).toBe(
      "/w/results/leak",
    );
    expect(defaultResults({ cwd: "/w", studyFile: "/s/.yaml" })).toBe("/w/results/study");
    expect(resolveResults("r/x", "/w")).toBe("/w/r/x");
    expect(resolveResults("az://results/x", "/w")).toBe("az://results/x");
  });
});

describe("local commands come from the same pure functions as Kubernetes", () => {
  const cfg = withPorts(localStack(), { port: 40001, dashboardPort: 40002 });

  it("runs the scheduler with the shared command, bound to loopback", () => {
    const argv = localSchedulerArgv(cfg);
    const shared = schedulerCommand(cfg);
    expect(argv.slice(0, shared.length)).toEqual(
      shared.map((a) => (a === ":40002" ? "127.0.0.1:40002" : a)),
    );
    expect(argv).toContain("40001");
    expect(argv.slice(shared.length)).toEqual(["--host", "127.0.0.1"]);
  });

  it("runs each pod with the shared worker command named after the pod", () => {
    const argv = localWorkerArgv(cfg, { name: podName(1) });
    const shared = workerCommand(cfg, {
      schedulerAddress: "tcp://127.0.0.1:40001",
      name: "local-worker-1",
    });
    expect(argv.slice(0, shared.length)).toEqual(shared);
    expect(argv.slice(shared.length)).toEqual([
      "--host",
      "127.0.0.1",
      "--dashboard-address",
      "127.0.0.1:0",
    ]);
    // The exact byte count of the validated per-process limit, never a unit string.
    expect(argv[argv.indexOf("--memory-limit") + 1]).toBe(
      String(cfg.workers.memoryPerProcess.bytes),
    );
  });

  it("runs the runner with the stack job's settings when the study is a job's", () => {
    const argv = localRunnerArgv(cfg, {
      studyFile: path.join(ROOT, "examples/studies/sir-grid.yaml"),
      results: "/r",
      summaryPath: "/s.json",
      baseDir: ROOT,
    });
    expect(argv.slice(0, 4)).toEqual(["python", "-m", "dask_workspace", "run"]);
    const flag = (f: string) => argv[argv.indexOf(f) + 1];
    expect([flag("--scheduler"), flag("--results"), flag("--summary")]).toEqual([
      "tcp://127.0.0.1:40001",
      "/r",
      "/s.json",
    ]);
    expect([flag("--mode"), flag("--batch-size")]).toEqual(["batch", "7"]);
    // The job's chunking reaches the runner the same way as on the cluster.
    expect([flag("--chunking"), flag("--chunk-seconds")]).toEqual(["off", "0.5"]);
    const other = localRunnerArgv(cfg, {
      studyFile: "/elsewhere/x.yaml",
      results: "/r",
      summaryPath: "/s.json",
      baseDir: ROOT,
    });
    expect(other[other.indexOf("--mode") + 1]).toBe(cfg.runner.mode);
    expect(other[other.indexOf("--chunking") + 1]).toBe("auto");
    expect(other).not.toContain("--chunk-seconds"); // the runner's own default applies
  });

  it("gives every process the venv first on PATH and the Dask config, never the study folder", () => {
    const env = localEnv({
      base: { PATH: "/usr/bin", PYTHONPATH: "/old", HOME: "/h" },
      venvBin: "/p/.venv/bin",
      daskConfigDir: "/t/dask",
      tmpDir: "/t",
    });
    // The study's code reaches the workers as a bundle (the runner's plugin), as on a cluster.
    expect(env).toMatchObject({
      PATH: "/p/.venv/bin:/usr/bin",
      PYTHONPATH: "/old",
      DASK_CONFIG: "/t/dask",
      DASK_TEMPORARY_DIRECTORY: "/t",
      HOME: "/h",
    });
  });
});

describe("summary", () => {
  it("adds pod_oom_kills, null when limits were not enforced (never a silent 0)", () => {
    const runner = { groups_total: 3, groups_persisted: 3, utilization: 0.5 };
    const base = { podPeakMemory: null, podMemoryBytes: 1, runnerOomKills: null, exitCode: 0 };
    expect(localSummary(runner, { ...base, podOomKills: 2 })).toMatchObject({
      groups_total: 3,
      pod_oom_kills: 2,
    });
    const unenforced = localSummary(runner, { ...base, podOomKills: null });
    expect(unenforced).toHaveProperty("pod_oom_kills", null);
    expect(localSummary(undefined, { ...base, podOomKills: 0 })).toMatchObject({
      runner_summary: null,
      pod_oom_kills: 0,
    });
    expect(formatSummary(unenforced).join("\n")).toMatch(/pod_oom_kills\s+null/);
  });

  it("writes the summary file atomically, creating its folder", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "local-sum-"));
    const file = path.join(dir, "a", "s.json");
    writeFileAtomic(file, "{}\n");
    expect(fs.readFileSync(file, "utf8")).toBe("{}\n");
    expect(fs.readdirSync(path.dirname(file))).toEqual(["s.json"]);
    fs.rmSync(dir, { recursive: true });
  });

  it("maps exit statuses like a shell", () => {
    expect(exitCodeOf({ code: 3, signal: null })).toBe(3);
    expect(exitCodeOf({ code: null, signal: "SIGKILL" })).toBe(137);
    expect(exitCodeOf({ code: null, signal: "SIGINT" })).toBe(130);
  });

  it("forwards warnings, errors and restarts of Dask logs, not routine INFO", () => {
    expect(
      isNotableDaskLine("2026 - distributed.nanny.memory - WARNING - Worker exceeded 95%"),
    ).toBe(true);
    expect(
      isNotableDaskLine("distributed.nanny - INFO - Worker process 7 was killed by signal 9"),
    ).toBe(true);
    expect(isNotableDaskLine("distributed.worker - INFO - Registered to: tcp://x")).toBe(false);
  });
});

describe("launcher machinery", () => {
  it("reads the scheduler's ports from its scheduler file, and nothing from a partial one", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "local-sf-"));
    const file = path.join(dir, "scheduler.json");
    expect(readSchedulerFile(file)).toBeUndefined();
    fs.writeFileSync(file, '{"type": "Scheduler", "address": "tcp://127.0.0.1:40');
    expect(readSchedulerFile(file)).toBeUndefined();
    fs.writeFileSync(file, JSON.stringify({ address: "tcp://127.0.0.1:40123", services: {} }));
    expect(readSchedulerFile(file)).toBeUndefined();
    fs.writeFileSync(
      file,
      JSON.stringify({ address: "tls://127.0.0.1:40123", services: { dashboard: 40124 } }),
    );
    expect(readSchedulerFile(file)).toEqual({ port: 40123, dashboardPort: 40124 });
  });

  it("tells the user which configured port was busy and where the scheduler went", () => {
    const wanted = { port: 8786, dashboardPort: 8787 };
    expect(portsMoved(wanted, wanted)).toBeUndefined();
    expect(portsMoved(wanted, { port: 41000, dashboardPort: 8787 })).toBe(
      "scheduler port 8786 is busy here; using 41000",
    );
    expect(portsMoved(wanted, { port: 8786, dashboardPort: 41001 })).toBe(
      "dashboard port 8787 is busy here; using 41001",
    );
    expect(isAddressInUse("OSError: [Errno 98] Address already in use")).toBe(true);
    expect(isAddressInUse("RuntimeError: Scheduler failed to start.\nImportError: no module")).toBe(
      false,
    );
  });

  it("stops a whole process group, children included, escalating to SIGKILL", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "local-proc-"));
    // A parent that ignores SIGTERM and a child that would outlive it.
    const script = "trap '' TERM; sleep 300 & echo child $!; wait";
    const lines: string[] = [];
    const p = new ManagedProcess("stubborn", ["sh", "-c", script], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      cwd: dir,
      logFile: path.join(dir, "log"),
      onLine: (l) => lines.push(l),
    });
    for (let i = 0; i < 100 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const child = Number(lines[0]?.split(" ")[1]);
    expect(processGroupPids(p.pid).sort()).toEqual([p.pid, child].sort());
    const t0 = Date.now();
    const status = await p.stop(300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(status.signal).toBe("SIGKILL");
    expect(processGroupPids(p.pid)).toEqual([]);
    expect(fs.readFileSync(path.join(dir, "log"), "utf8")).toContain("child");
    fs.rmSync(dir, { recursive: true });
  });
});
