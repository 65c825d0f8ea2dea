/**
 * infra/dask.ts against the real, pinned Dask (.venv, distributed 2026.8.0): every flag we emit
 * exists and parses, the YAML we mount is what Dask reads, and the scheduler really ends up with
 * the configured worker saturation.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execa } from "execa";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { parseWorkspaceConfig } from "../infra/config.js";
import {
  DASK_CONFIG_DIR,
  SCHEDULER_HTTP_ROUTES,
  daskConfig,
  daskConfigYaml,
  retireCommand,
  schedulerAddress,
  schedulerCommand,
  schedulerEnv,
  workerCommand,
  workerEnv,
} from "../infra/dask.js";
import type { WorkspaceConfig } from "../infra/types.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const PYTHON = path.join(ROOT, ".venv", "bin", "python");
const DASK = path.join(ROOT, ".venv", "bin", "dask");

function config(raw: Record<string, unknown>): WorkspaceConfig {
  const r = parseWorkspaceConfig(raw, { baseDir: ROOT, stack: "test" });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

const withLifetime = config({
  workers: {
    nprocs: 3,
    threadsPerProcess: 2,
    podMemory: "6Gi",
    cpu: "6",
    lifetime: { duration: "2h", stagger: "10m" },
    saturation: 1.25,
    allowedFailures: 5,
    mallocTrimThreshold: 131072,
    memoryThresholds: { target: 0.5, spill: 0.6, pause: 0.75, terminate: 0.9 },
  },
  scheduler: { port: 9786, dashboardPort: 9787 },
});
const plain = config({ workers: { nprocs: 2, podMemory: "2Gi", saturation: "inf" } });

describe("commands", () => {
  it("renders the worker command with an exact byte limit and the pod name", () => {
    expect(
      workerCommand(plain, { schedulerAddress: "tcp://sched:8786", name: "$(POD_NAME)" }),
    ).toEqual([
      "dask",
      "worker",
      "tcp://sched:8786",
      "--nworkers",
      "2",
      "--nthreads",
      "1",
      "--memory-limit",
      String(863 * 1024 * 1024),
      "--name",
      "$(POD_NAME)",
    ]);
  });

  it("adds lifetime flags (in seconds) only when lifetime is configured", () => {
    const args = workerCommand(withLifetime, { schedulerAddress: "tcp://s:9786", name: "pod-a" });
    expect(args.slice(3, 9)).toEqual([
      "--nworkers",
      "3",
      "--nthreads",
      "2",
      "--memory-limit",
      String(withLifetime.workers.memoryPerProcess.bytes),
    ]);
    expect(args.slice(11)).toEqual([
      "--lifetime",
      "7200s",
      "--lifetime-stagger",
      "600s",
      "--lifetime-restart",
    ]);
    const noRestart = config({ workers: { lifetime: { duration: 3600, restart: false } } });
    expect(workerCommand(noRestart, { schedulerAddress: "a", name: "n" }).slice(-4)).toEqual([
      "--lifetime",
      "3600s",
      "--lifetime-stagger",
      "360s",
    ]);
  });

  it("renders the scheduler command, address, retire command and environments", () => {
    expect(schedulerCommand(withLifetime)).toEqual([
      "dask",
      "scheduler",
      "--port",
      "9786",
      "--dashboard-address",
      ":9787",
    ]);
    expect(schedulerAddress(withLifetime, "dask-scheduler.ns")).toBe(
      "tcp://dask-scheduler.ns:9786",
    );
    expect(
      retireCommand({ schedulerAddress: "tcp://s:8786", namePrefix: "pod-a", timeoutSeconds: 60 }),
    ).toEqual([
      "python",
      "-m",
      "dask_workspace",
      "retire",
      "--scheduler",
      "tcp://s:8786",
      "--name-prefix",
      "pod-a",
      "--timeout",
      "60",
    ]);
    expect(workerEnv(withLifetime)).toEqual({ MALLOC_TRIM_THRESHOLD_: "131072" });
    expect(schedulerEnv(withLifetime)).toEqual({
      DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION: "1.25",
    });
    expect(schedulerEnv(plain)).toEqual({ DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION: "inf" });
  });

  it("puts saturation, failures, HTTP API route, thresholds and malloc trim in the Dask config", () => {
    expect(daskConfig(withLifetime)).toEqual({
      distributed: {
        scheduler: {
          "worker-saturation": 1.25,
          "allowed-failures": 5,
          http: { routes: [...SCHEDULER_HTTP_ROUTES] },
        },
        worker: { memory: { target: 0.5, spill: 0.6, pause: 0.75, terminate: 0.9 } },
        nanny: { "pre-spawn-environ": { MALLOC_TRIM_THRESHOLD_: 131072 } },
      },
    });
    expect(SCHEDULER_HTTP_ROUTES).toContain("distributed.http.scheduler.api");
    expect(parseYaml(daskConfigYaml(withLifetime))).toEqual(daskConfig(withLifetime));
    expect(DASK_CONFIG_DIR).toBe("/etc/dask");
  });
});

/**
 * Runs in the pinned Python: parses our argv with distributed's own click commands (unknown
 * options and bad values raise), reads the mounted YAML through DASK_CONFIG, and starts a real
 * Scheduler to read the saturation it applied.
 */
const PROBE = String.raw`
import asyncio, json, sys, pathlib
import click, dask, distributed, yaml
from distributed.cli import dask_scheduler, dask_worker
req = json.loads(sys.argv[1])
out = {}
for key, cmd, args in (("worker", dask_worker.main, req["worker"]), ("scheduler", dask_scheduler.main, req["scheduler"])):
    try:
        ctx = cmd.make_context("dask " + key, list(args))
        out[key] = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v)) for k, v in ctx.params.items()}
    except click.ClickException as e:
        out[key] = {"error": e.format_message()}
defaults = yaml.safe_load((pathlib.Path(distributed.__file__).parent / "distributed.yaml").read_text())
out["help_scheduler"] = dask_scheduler.main.get_help(click.Context(dask_scheduler.main, info_name="dask scheduler"))
out["default_routes"] = defaults["distributed"]["scheduler"]["http"]["routes"]
g = dask.config.get
out["config"] = {
    "saturation": g("distributed.scheduler.worker-saturation"),
    "allowed_failures": g("distributed.scheduler.allowed-failures"),
    "routes": g("distributed.scheduler.http.routes"),
    "memory": {k: g("distributed.worker.memory." + k) for k in ("target", "spill", "pause", "terminate")},
    "pre_spawn": dict(g("distributed.nanny.pre-spawn-environ")),
}
async def scheduler_saturation():
    from distributed import Scheduler
    async with Scheduler(port=0, dashboard_address=":0", host="127.0.0.1") as s:
        return s.WORKER_SATURATION
sat = asyncio.run(scheduler_saturation())
out["scheduler_saturation"] = "inf" if sat == float("inf") else sat
print(json.dumps(out))
`;

async function probe(cfg: WorkspaceConfig, env: Record<string, string> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dask-config-"));
  try {
    fs.writeFileSync(path.join(dir, "dask-workspace.yaml"), daskConfigYaml(cfg));
    const req = {
      worker: workerCommand(cfg, { schedulerAddress: "tcp://127.0.0.1:8786", name: "pod-a" }).slice(
        2,
      ),
      scheduler: schedulerCommand(cfg).slice(2),
    };
    const r = await execa(PYTHON, ["-c", PROBE, JSON.stringify(req)], {
      env: { DASK_CONFIG: dir, ...env },
      extendEnv: true,
    });
    return JSON.parse(r.stdout) as {
      worker: Record<string, unknown>;
      scheduler: Record<string, unknown>;
      default_routes: string[];
      help_scheduler: string;
      config: {
        saturation: unknown;
        allowed_failures: unknown;
        routes: string[];
        memory: Record<string, number>;
        pre_spawn: Record<string, unknown>;
      };
      scheduler_saturation: unknown;
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("against the pinned Dask", () => {
  let helpWorker = "";
  let helpScheduler = "";
  let lifetimeProbe: Awaited<ReturnType<typeof probe>>;
  let infProbe: Awaited<ReturnType<typeof probe>>;

  beforeAll(async () => {
    [helpWorker, lifetimeProbe, infProbe] = await Promise.all([
      execa(DASK, ["worker", "--help"]).then((r) => r.stdout),
      probe(withLifetime),
      // Belt and braces: the scheduler env var and the YAML carry the same value.
      probe(plain, schedulerEnv(plain)),
    ]);
    // The scheduler's help comes from the same click command `dask scheduler` dispatches to.
    helpScheduler = lifetimeProbe.help_scheduler;
  });

  it("every flag we emit is in `dask worker --help` / `dask scheduler --help`", () => {
    const flags = (args: string[]) => args.filter((a) => a.startsWith("--"));
    const worker = flags(workerCommand(withLifetime, { schedulerAddress: "x", name: "n" }));
    expect(worker).toEqual([
      "--nworkers",
      "--nthreads",
      "--memory-limit",
      "--name",
      "--lifetime",
      "--lifetime-stagger",
      "--lifetime-restart",
    ]);
    for (const f of worker) expect(helpWorker).toMatch(new RegExp(`(^|[\\s/])${f}[\\s,]`, "m"));
    for (const f of flags(schedulerCommand(withLifetime))) {
      expect(helpScheduler).toMatch(new RegExp(`(^|[\\s/])${f}[\\s,]`, "m"));
    }
  });

  it("distributed's own CLI parses our argv to the intended values", () => {
    expect(lifetimeProbe.worker).toMatchObject({
      scheduler: "tcp://127.0.0.1:8786",
      n_workers: "3",
      nthreads: 2,
      memory_limit: String(withLifetime.workers.memoryPerProcess.bytes),
      name: "pod-a",
      lifetime: "7200s",
      lifetime_stagger: "600s",
      lifetime_restart: true,
    });
    expect(lifetimeProbe.scheduler).toMatchObject({ port: "9786", dashboard_address: ":9787" });
  });

  it("Dask reads the mounted YAML: thresholds, failures, malloc trim, routes ⊇ defaults + api", () => {
    const c = lifetimeProbe.config;
    expect(c.saturation).toBe(1.25);
    expect(c.allowed_failures).toBe(5);
    expect(c.memory).toEqual({ target: 0.5, spill: 0.6, pause: 0.75, terminate: 0.9 });
    // Our value replaces Dask's 65536 while its other pre-spawn variables (OMP_NUM_THREADS, ...) stay.
    expect(c.pre_spawn).toMatchObject({ MALLOC_TRIM_THRESHOLD_: 131072, OMP_NUM_THREADS: 1 });
    expect(c.routes).toEqual([...SCHEDULER_HTTP_ROUTES]);
    expect(lifetimeProbe.default_routes.length).toBeGreaterThan(0);
    for (const r of lifetimeProbe.default_routes) expect(c.routes).toContain(r);
    expect(c.routes).toContain("distributed.http.scheduler.api");
  });

  it("a real Scheduler started with that config applies the configured saturation", () => {
    expect(lifetimeProbe.scheduler_saturation).toBe(1.25);
    expect(infProbe.config.saturation).toBe("inf");
    expect(infProbe.scheduler_saturation).toBe("inf");
  });
});
