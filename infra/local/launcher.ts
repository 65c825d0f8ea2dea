/**
 * The local workspace: the stack's scheduler and worker pods as real processes on this machine.
 *
 * Every command and the Dask config come from the same pure functions as the Kubernetes objects
 * (`infra/dask.ts`, `infra/workspace/runner.ts`); the only local additions bind everything to
 * 127.0.0.1 and pick free ports. Each worker pod is one process tree (`dask worker` = the nanny
 * host process plus `nprocs` worker processes) in its own memory cgroup limited to `podMemory`,
 * so the kernel enforces the pod limit as a kubelet would. The scheduler and the runner get
 * cgroups limited like their Kubernetes containers (`scheduler.memory`, `runner.memory`).
 *
 * Every process is started in its own process group (and session), so a Ctrl-C in the terminal
 * reaches only the launcher, which then tears down in order: SIGTERM to every group, SIGKILL after
 * a grace period, then every cgroup is emptied (SIGKILL to whatever is left, e.g. a process that
 * left its group) and removed. The cgroups make "nothing outlives the command" checkable.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import {
  daskConfigYaml,
  schedulerAddress,
  schedulerCommand,
  schedulerEnv,
  workerCommand,
  workerEnv,
} from "../dask.js";
import type { JobConfig, WorkspaceConfig } from "../types.js";
import { runnerCommand } from "../workspace/runner.js";
import {
  type Cgroup,
  cgroupPids,
  createCgroup,
  enterCgroupArgv,
  locateOwnMemoryCgroup,
  type MemoryCgroupLocation,
  readOomKills,
  readPeakMemory,
  removeCgroup,
  removeStaleRunCgroups,
  resetPeakMemory,
  runCgroupName,
} from "./cgroup.js";
import { podScratchDir, SpillWatch, spillSpaceWarning } from "./ephemeral.js";
import { canConnectTls, prepareLocalTls } from "./tls.js";

/** Everything binds here: a local workspace is never reachable from the network. */
export const LOCAL_HOST = "127.0.0.1";

/** The name of worker pod `i`, like a StatefulSet's (Dask names its processes `<pod>-0`, ...). */
export function podName(i: number): string {
  return `local-worker-${i}`;
}

/** Ports the local scheduler listens on. */
export interface LocalPorts {
  port: number;
  dashboardPort: number;
}

/** The config with the scheduler's ports replaced (the only field the launcher may change). */
export function withPorts(cfg: WorkspaceConfig, ports: LocalPorts): WorkspaceConfig {
  return { ...cfg, scheduler: { ...cfg.scheduler, ...ports } };
}

/**
 * `schedulerCommand` bound to loopback: `--host 127.0.0.1`, and the dashboard address `:P`
 * (all interfaces, as in a pod) narrowed to `127.0.0.1:P`.
 */
export function localSchedulerArgv(cfg: WorkspaceConfig): string[] {
  const argv = schedulerCommand(cfg).map((a) => (/^:\d+$/.test(a) ? `${LOCAL_HOST}${a}` : a));
  return [...argv, "--host", LOCAL_HOST];
}

/** `workerCommand` for local pod `name`, with its listeners (comm, nanny, dashboard) on loopback. */
export function localWorkerArgv(cfg: WorkspaceConfig, opts: { name: string }): string[] {
  return [
    ...workerCommand(cfg, { schedulerAddress: schedulerAddress(cfg, LOCAL_HOST), name: opts.name }),
    "--host",
    LOCAL_HOST,
    "--dashboard-address",
    `${LOCAL_HOST}:0`,
  ];
}

/**
 * The runner command for a local study: the stack job that runs the same study file when there is
 * one (its mode/window/batch size), else the stack's runner defaults; results go to `results`.
 */
export function localRunnerArgv(
  cfg: WorkspaceConfig,
  opts: { studyFile: string; results: string; summaryPath: string; baseDir: string },
): string[] {
  const same = cfg.jobs.find(
    (j) => path.resolve(opts.baseDir, j.studyPath) === path.resolve(opts.studyFile),
  );
  const chunkSeconds = same?.chunkSeconds ?? cfg.runner.chunkSeconds;
  const job: JobConfig = {
    name: same?.name ?? "local",
    studyPath: opts.studyFile,
    studyText: "",
    results: opts.results,
    mode: same?.mode ?? cfg.runner.mode,
    window: same?.window ?? cfg.runner.window,
    batchSize: same?.batchSize ?? cfg.runner.batchSize,
    chunking: same?.chunking ?? cfg.runner.chunking,
    ...(chunkSeconds !== undefined ? { chunkSeconds } : {}),
    backoffLimit: 0,
    ttlSecondsAfterFinished: 0,
    activeDeadlineSeconds: 0,
  };
  return runnerCommand(job, {
    schedulerAddress: schedulerAddress(cfg, LOCAL_HOST),
    studyFile: opts.studyFile,
    summaryPath: opts.summaryPath,
  });
}

/**
 * The environment every local process gets: the venv first on PATH, the stack's Dask config.
 * Nothing puts the study's folder on PYTHONPATH: the runner ships the study bundle to every
 * worker through a Dask plugin, as on a cluster, so the local workspace tests that same path.
 */
export function localEnv(opts: {
  base: NodeJS.ProcessEnv;
  venvBin: string;
  daskConfigDir: string;
  tmpDir: string;
}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.base)) if (v !== undefined) env[k] = v;
  env.PATH = [opts.venvBin, opts.base.PATH ?? "/usr/bin:/bin"].join(path.delimiter);
  env.DASK_CONFIG = opts.daskConfigDir;
  // Spill files and worker scratch go into the run's temp dir, removed at teardown.
  env.DASK_TEMPORARY_DIRECTORY = opts.tmpDir;
  // Unbuffered Python output, so progress lines stream as they are printed.
  env.PYTHONUNBUFFERED = "1";
  return env;
}

/** Log lines of the scheduler and pods worth showing live (the rest goes to the log files). */
export function isNotableDaskLine(line: string): boolean {
  return /\b(WARNING|ERROR|CRITICAL)\b|Restarting|killed by signal/.test(line);
}

/**
 * The ports in a scheduler file (`dask scheduler --scheduler-file`), written once the scheduler
 * listens; undefined while the file is missing, half-written or without the dashboard.
 */
export function readSchedulerFile(file: string): LocalPorts | undefined {
  let data: { address?: unknown; services?: { dashboard?: unknown } };
  try {
    data = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
  const m = typeof data.address === "string" ? /:(\d+)$/.exec(data.address) : null;
  const dashboard = data.services?.dashboard;
  if (m === null || typeof dashboard !== "number") return undefined;
  return { port: Number(m[1]), dashboardPort: dashboard };
}

/** The line that tells the user the scheduler listens elsewhere than configured (undefined: it does not). */
export function portsMoved(wanted: LocalPorts, got: LocalPorts): string | undefined {
  const parts: string[] = [];
  if (got.port !== wanted.port)
    parts.push(`scheduler port ${wanted.port} is busy here; using ${got.port}`);
  if (got.dashboardPort !== wanted.dashboardPort)
    parts.push(`dashboard port ${wanted.dashboardPort} is busy here; using ${got.dashboardPort}`);
  return parts.length > 0 ? parts.join("; ") : undefined;
}

/** True when a log says a listener could not bind because its address was taken. */
export function isAddressInUse(log: string): boolean {
  return /address already in use|errno 98\b|could not bind|EADDRINUSE/i.test(log);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How a process ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The conventional shell exit code for a process status (128 + signal number for signals). */
export function exitCodeOf(s: ExitStatus): number {
  if (s.code !== null) return s.code;
  const n = s.signal ? os.constants.signals[s.signal] : undefined;
  return 128 + (n ?? 1);
}

/**
 * One process tree in its own process group (and, when given, its own cgroup), with its output
 * split into lines: every line goes to `logFile`, and to `onLine` when given.
 */
export class ManagedProcess {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  private status?: ExitStatus;
  private readonly child: ChildProcess;

  constructor(
    readonly name: string,
    argv: string[],
    opts: {
      env: Record<string, string>;
      cwd: string;
      cgroup?: Cgroup;
      logFile: string;
      onLine?: (line: string, stream: "stdout" | "stderr") => void;
    },
  ) {
    const full = opts.cgroup ? enterCgroupArgv(opts.cgroup, argv) : argv;
    const log = fs.openSync(opts.logFile, "a");
    // detached: setsid(), so the process leads a new process group that we can signal as a whole,
    // and a terminal's Ctrl-C reaches only the launcher (which then tears down in order).
    this.child = spawn(full[0], full.slice(1), {
      cwd: opts.cwd,
      env: opts.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (this.child.pid === undefined) {
      fs.closeSync(log);
      throw new Error(`cannot start ${name}: ${full[0]} not found`);
    }
    this.pid = this.child.pid;
    const pump = (stream: NodeJS.ReadableStream, kind: "stdout" | "stderr") => {
      let rest = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        fs.writeSync(log, chunk);
        const lines = (rest + chunk).split("\n");
        rest = lines.pop() ?? "";
        for (const l of lines) opts.onLine?.(l, kind);
      });
      stream.on("end", () => {
        if (rest !== "") opts.onLine?.(rest, kind);
        rest = "";
      });
    };
    pump(this.child.stdout!, "stdout");
    pump(this.child.stderr!, "stderr");
    this.exited = new Promise((resolve) => {
      this.child.on("close", (code, signal) => {
        this.status = { code, signal };
        fs.closeSync(log);
        resolve(this.status);
      });
    });
  }

  /** True until the process has exited and its output is drained. */
  get running(): boolean {
    return this.status === undefined;
  }

  /** Signals the whole process group; false when it is already gone. */
  signalGroup(sig: NodeJS.Signals): boolean {
    try {
      process.kill(-this.pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  /** `first` (SIGTERM) to the group, SIGKILL after `graceMs`, then waits for the exit. */
  async stop(graceMs: number, first: NodeJS.Signals = "SIGTERM"): Promise<ExitStatus> {
    if (!this.running) return this.exited;
    this.signalGroup(first);
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      sleep(graceMs).then(() => true),
    ]);
    // Even after the leader exits, members of its group may linger (e.g. a worker process whose
    // nanny died): SIGKILL the group either way.
    this.signalGroup("SIGKILL");
    if (timedOut) await this.exited;
    // SIGKILL is asynchronous: wait until no member of the group is left (zombies do not count).
    for (let i = 0; i < 200 && processGroupPids(this.pid).length > 0; i++) {
      this.signalGroup("SIGKILL");
      await sleep(10);
    }
    return this.exited;
  }
}

/** Options for {@link LocalWorkspace.start}. */
export interface LocalWorkspaceOptions {
  /** Project root: `<root>/.venv/bin` goes first on PATH. */
  root: string;
  /** Where messages for the user go (one line each). */
  log: (line: string) => void;
  /** Put pods in memory cgroups (default true). False runs unenforced, as if cgroups failed. */
  enforceMemory?: boolean;
  /** Forward these scheduler/pod log lines live (default {@link isNotableDaskLine}). */
  forward?: (line: string) => boolean;
  /** How long to wait for the scheduler and every worker process (default 120 s). */
  readyTimeoutMs?: number;
  /** Grace between SIGTERM and SIGKILL at teardown (default 5 s). */
  graceMs?: number;
}

/** Where pod memory limits stand: enforced by cgroups, or not (with the reason). */
export type Enforcement =
  { enforced: true; version: "v1" | "v2" } | { enforced: false; reason: string };

/**
 * A running local workspace. Create with {@link LocalWorkspace.start}; always {@link stop} it
 * (idempotent; also safe after a failed start, which stops what it started itself).
 */
export class LocalWorkspace {
  readonly processes: ManagedProcess[] = [];
  readonly pods = new Map<string, { process: ManagedProcess; cgroup?: Cgroup }>();
  private runCgroup?: Cgroup;
  /** The run's TLS files (tls.enabled), for the readiness probe. */
  private tlsDir?: string;
  private readonly cgroups = new Map<string, Cgroup>();
  private stopping?: Promise<void>;
  private readonly spillWatches: SpillWatch[] = [];
  /** Pods evicted for spilling past `workers.spillStorage`, in order. */
  readonly evictions: string[] = [];

  private constructor(
    private cfg: WorkspaceConfig,
    readonly tmpDir: string,
    readonly env: Record<string, string>,
    readonly enforcement: Enforcement,
    private readonly opts: LocalWorkspaceOptions,
  ) {}

  /** The validated config this workspace runs, with the ports its scheduler really listens on. */
  get config(): WorkspaceConfig {
    return this.cfg;
  }

  /** `tcp://127.0.0.1:<port>` (`tls://` with TLS) */
  get schedulerAddress(): string {
    return schedulerAddress(this.config, LOCAL_HOST);
  }

  get dashboardUrl(): string {
    return `http://${LOCAL_HOST}:${this.config.scheduler.dashboardPort}`;
  }

  /** Directory of the scheduler, pod and client logs. */
  get logDir(): string {
    return path.join(this.tmpDir, "logs");
  }

  /** Worker processes the scheduler should see: replicas × nprocs. */
  get expectedWorkers(): number {
    return this.config.workers.replicas * this.config.workers.nprocs;
  }

  /**
   * Starts the scheduler and every worker pod and waits until all worker processes have joined.
   * `config` must already be validated (parseWorkspaceConfig); only its ports may be changed here.
   */
  static async start(
    config: WorkspaceConfig,
    opts: LocalWorkspaceOptions,
  ): Promise<LocalWorkspace> {
    const log = opts.log;
    const cfg = config;
    const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), `${runCgroupName(process.pid)}-`));
    const daskConfigDir = path.join(tmpDir, "dask");
    fs.mkdirSync(daskConfigDir);
    fs.mkdirSync(path.join(tmpDir, "logs"));
    // Dask TLS (tls.enabled): this run's certificates, named in the Dask config.
    const tlsDir = await prepareLocalTls(cfg, tmpDir);
    fs.writeFileSync(path.join(daskConfigDir, "dask.yaml"), daskConfigYaml(cfg, { tlsDir }));
    const env = localEnv({
      base: process.env,
      venvBin: path.join(opts.root, ".venv", "bin"),
      daskConfigDir,
      tmpDir,
    });

    let enforcement: Enforcement;
    let own: MemoryCgroupLocation | undefined;
    if (opts.enforceMemory === false) {
      enforcement = { enforced: false, reason: "memory enforcement was turned off" };
    } else {
      const found = locateOwnMemoryCgroup();
      if (found.ok) {
        own = found.location;
        enforcement = { enforced: true, version: own.version };
      } else {
        enforcement = { enforced: false, reason: found.reason };
      }
    }
    const ws = new LocalWorkspace(cfg, tmpDir, env, enforcement, opts);
    ws.tlsDir = tlsDir;
    try {
      if (own !== undefined) {
        try {
          const stale = await removeStaleRunCgroups(own);
          if (stale.length > 0) log(`removed ${stale.length} cgroup(s) left by an earlier run`);
          ws.runCgroup = createCgroup(own, runCgroupName(process.pid));
        } catch (err) {
          ws.runCgroupFailed((err as Error).message);
        }
      }
      if (!ws.enforcement.enforced) {
        log(`pod memory limits are NOT enforced (${ws.enforcement.reason}); running without them`);
      }
      const spill = spillSpaceWarning({
        freeBytes: freeBytesAt(tmpDir),
        pods: cfg.workers.replicas,
        limitBytes: cfg.hardening.storage.worker.scratch.bytes,
        dir: tmpDir,
      });
      if (spill !== undefined) log(`warning: ${spill}`);
      await ws.startScheduler();
      for (let i = 0; i < cfg.workers.replicas; i++) ws.startPod(podName(i));
      await ws.waitForWorkers(opts.readyTimeoutMs ?? 120_000);
      return ws;
    } catch (err) {
      await ws.stop();
      throw err;
    }
  }

  private runCgroupFailed(reason: string): void {
    (this as { enforcement: Enforcement }).enforcement = {
      enforced: false,
      reason: `cannot create memory cgroups: ${reason}`,
    };
  }

  /** A child cgroup of the run cgroup (undefined when limits are not enforced). */
  private cgroupFor(name: string, limitBytes: number | undefined): Cgroup | undefined {
    if (this.runCgroup === undefined || !this.enforcement.enforced) return undefined;
    const cg = createCgroup(this.runCgroup, name, limitBytes);
    this.cgroups.set(name, cg);
    return cg;
  }

  private forwarder(source: string) {
    const forward = this.opts.forward ?? isNotableDaskLine;
    return (line: string) => {
      // Teardown's own "killed by signal 15" lines are expected, not news.
      if (this.stopping === undefined && forward(line)) this.opts.log(`[${source}] ${line}`);
    };
  }

  private spawn(
    name: string,
    argv: string[],
    opts: {
      cgroup?: Cgroup;
      env?: Record<string, string>;
      onLine?: (line: string, stream: "stdout" | "stderr") => void;
    },
  ): ManagedProcess {
    if (this.stopping !== undefined)
      throw new Error(`cannot start ${name}: the workspace is stopping`);
    const p = new ManagedProcess(name, argv, {
      env: { ...this.env, ...opts.env },
      cwd: this.opts.root,
      cgroup: opts.cgroup,
      logFile: path.join(this.logDir, `${name}.log`),
      onLine: opts.onLine,
    });
    this.processes.push(p);
    return p;
  }

  /**
   * Starts the scheduler and waits until it serves. Its own scheduler file, not a probe of the
   * port, says it is up and on which ports: another process (a second `npm run local`, a parallel
   * test) may take a port between our check and the scheduler's bind, and a bare port probe would
   * then find *that* scheduler. When the comm port is taken, the scheduler exits and is started
   * once more on ports the kernel picks; when only the dashboard port is taken, Dask moves the
   * dashboard itself, and the file names where.
   */
  private async startScheduler(): Promise<void> {
    const cg = this.cgroupFor("scheduler", this.config.scheduler.memory.bytes);
    const file = path.join(this.tmpDir, "scheduler.json");
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 120_000);
    const wanted = {
      port: this.cfg.scheduler.port,
      dashboardPort: this.cfg.scheduler.dashboardPort,
    };
    for (let attempt = 1; ; attempt++) {
      fs.rmSync(file, { force: true });
      const logFrom = this.logSize("scheduler");
      const p = this.spawn(
        "scheduler",
        [...localSchedulerArgv(this.config), "--scheduler-file", file],
        {
          cgroup: cg,
          env: schedulerEnv(this.config),
          onLine: this.forwarder("scheduler"),
        },
      );
      let ports: LocalPorts | undefined;
      for (;;) {
        ports = readSchedulerFile(file);
        if (ports !== undefined && (await this.serves(ports.port))) break;
        if (!p.running) break;
        if (Date.now() > deadline)
          throw this.startFailure(p, "the scheduler did not start in time");
        await sleep(100);
      }
      if (ports !== undefined && p.running) {
        const moved = portsMoved(wanted, ports);
        if (moved !== undefined) this.opts.log(moved);
        this.cfg = withPorts(this.cfg, ports);
        return;
      }
      const bindFailed = isAddressInUse(this.logSince("scheduler", logFrom));
      if (attempt > 1 || !bindFailed) {
        throw this.startFailure(p, "the scheduler exited while starting");
      }
      // Port 0: the scheduler binds a free port itself, so this attempt cannot race.
      this.cfg = withPorts(this.cfg, { port: 0, dashboardPort: 0 });
    }
  }

  /** True when our scheduler answers on `port` (a TLS handshake with TLS on). */
  private serves(port: number): Promise<boolean> {
    return this.tlsDir === undefined
      ? canConnect(LOCAL_HOST, port)
      : canConnectTls(LOCAL_HOST, port, this.tlsDir);
  }

  private startPod(name: string): void {
    const cg = this.cgroupFor(name, this.config.workers.podMemory.bytes);
    // The pod's own spill directory, limited like its /tmp emptyDir (infra/local/ephemeral.ts).
    const scratch = podScratchDir(this.tmpDir, name);
    fs.mkdirSync(scratch, { recursive: true });
    const argv = [...localWorkerArgv(this.config, { name }), "--local-directory", scratch];
    const p = this.spawn(name, argv, {
      cgroup: cg,
      env: workerEnv(this.config),
      onLine: this.forwarder(name),
    });
    this.pods.set(name, { process: p, cgroup: cg });
    const limit = this.config.hardening.storage.worker.scratch;
    this.spillWatches.push(
      new SpillWatch({
        dir: scratch,
        limitBytes: limit.bytes,
        onExceeded: (used) => {
          if (this.stopping !== undefined) return;
          this.evictions.push(name);
          this.opts.log(
            `pod ${name} evicted: its spill directory holds ${Math.round(used / 1024 ** 2)}Mi, ` +
              `over workers.spillStorage ${limit.quantity} (the kubelet evicts a worker pod the same way)`,
          );
          void p.stop(1_000);
        },
      }).start(),
    );
  }

  /** Starts one more worker pod (the `--autoscale` emulation, infra/local/autoscale.ts). */
  addPod(name: string): void {
    if (this.pods.has(name)) throw new Error(`pod ${name} exists already`);
    this.startPod(name);
  }

  /** Stops one pod: SIGTERM to its process tree, SIGKILL after `graceMs`; its cgroup stays. */
  async stopPod(name: string, graceMs = 5_000): Promise<void> {
    await this.pods.get(name)?.process.stop(graceMs);
  }

  private logSize(name: string): number {
    try {
      return fs.statSync(path.join(this.logDir, `${name}.log`)).size;
    } catch {
      return 0;
    }
  }

  /** What process `name` logged after byte `from` of its log. */
  private logSince(name: string, from: number): string {
    try {
      return fs
        .readFileSync(path.join(this.logDir, `${name}.log`))
        .subarray(from)
        .toString("utf8");
    } catch {
      return "";
    }
  }

  private logTail(p: ManagedProcess): string {
    try {
      return fs
        .readFileSync(path.join(this.logDir, `${p.name}.log`), "utf8")
        .split("\n")
        .slice(-15)
        .join("\n");
    } catch {
      return "";
    }
  }

  private startFailure(p: ManagedProcess, what: string): Error {
    return new Error(`${what}; last lines of its log:\n${this.logTail(p)}`);
  }

  /** The scheduler's worker count, from its JSON route (undefined while it does not answer). */
  async workerCount(): Promise<number | undefined> {
    const counts = await this.schedulerCounts();
    return counts?.workers;
  }

  /** `/json/counts.json` of the scheduler: workers, tasks, processing, memory, ... */
  async schedulerCounts(): Promise<Record<string, number> | undefined> {
    try {
      const res = await fetch(`${this.dashboardUrl}/json/counts.json`, {
        signal: AbortSignal.timeout(5_000),
      });
      if (!res.ok) return undefined;
      return (await res.json()) as Record<string, number>;
    } catch {
      return undefined;
    }
  }

  private async waitForWorkers(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const [name, pod] of this.pods) {
        if (!pod.process.running)
          throw this.startFailure(pod.process, `pod ${name} exited while starting`);
      }
      const n = await this.workerCount();
      if (n !== undefined && n >= this.expectedWorkers) return;
      if (Date.now() > deadline) {
        throw new Error(
          `only ${n ?? 0} of ${this.expectedWorkers} worker processes joined the scheduler within ` +
            `${Math.round(timeoutMs / 1000)} s; logs: ${this.logDir}`,
        );
      }
      await sleep(200);
    }
  }

  /**
   * Runs a client process (the runner, a benchmark driver) against this workspace and resolves
   * with its exit status. It is stopped with everything else on {@link stop}.
   * @param opts.memoryLimitBytes confine it to a cgroup with this limit (the runner: runner.memory).
   */
  runClient(
    name: string,
    argv: string[],
    opts: {
      onLine?: (line: string, stream: "stdout" | "stderr") => void;
      memoryLimitBytes?: number;
      env?: Record<string, string>;
    } = {},
  ): { process: ManagedProcess; cgroup?: Cgroup } {
    const cg = this.cgroupFor(name, opts.memoryLimitBytes);
    const p = this.spawn(name, argv, { cgroup: cg, env: opts.env, onLine: opts.onLine });
    return { process: p, cgroup: cg };
  }

  /** Kernel OOM kills counted by the worker pods' cgroups; null when limits are not enforced. */
  podOomKills(): number | null {
    if (!this.enforcement.enforced) return null;
    let total = 0;
    for (const pod of this.pods.values()) if (pod.cgroup) total += readOomKills(pod.cgroup);
    return total;
  }

  /** Kernel OOM kills in the cgroup of a named process (scheduler, runner); null if none. */
  oomKillsOf(name: string): number | null {
    const cg = this.cgroups.get(name);
    return cg === undefined || !fs.existsSync(cg.dir) ? null : readOomKills(cg);
  }

  /** Peak memory charged to each pod's cgroup, bytes; null when limits are not enforced. */
  podPeakMemory(): Record<string, number> | null {
    if (!this.enforcement.enforced) return null;
    const out: Record<string, number> = {};
    for (const [name, pod] of this.pods) {
      const peak = pod.cgroup ? readPeakMemory(pod.cgroup) : undefined;
      if (peak !== undefined) out[name] = peak;
    }
    return out;
  }

  /** Peak memory of a named cgroup (a pod, "scheduler", "runner", ...), bytes; null if none. */
  peakMemoryOf(name: string): number | null {
    const cg = this.cgroups.get(name);
    if (cg === undefined || !fs.existsSync(cg.dir)) return null;
    return readPeakMemory(cg) ?? null;
  }

  /** Resets every cgroup's peak-memory counter (benchmarks measure one run at a time). */
  resetPeakMemory(): void {
    for (const cg of this.cgroups.values()) resetPeakMemory(cg);
  }

  /**
   * The pids of a pod's Dask worker processes (not its nanny host process), from the pod's cgroup
   * or, unenforced, from its process group. For fault injection in tests and benchmarks.
   */
  workerProcessPids(pod: string): number[] {
    const p = this.pods.get(pod);
    if (p === undefined) throw new Error(`no pod ${pod}`);
    const pids = p.cgroup ? cgroupPids(p.cgroup) : processGroupPids(p.process.pid);
    return pids.filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("spawn_main");
      } catch {
        return false;
      }
    });
  }

  /** Every cgroup directory this workspace created (all gone after {@link stop}). */
  cgroupDirs(): string[] {
    return [
      ...(this.runCgroup ? [this.runCgroup.dir] : []),
      ...[...this.cgroups.values()].map((c) => c.dir),
    ];
  }

  /**
   * Tears everything down: clients first, then pods, then the scheduler (so no worker retries a
   * dead scheduler), each SIGTERM → grace → SIGKILL; then empties and removes every cgroup.
   * Idempotent; concurrent calls share one teardown.
   */
  stop(
    opts: { graceMs?: number; keepLogs?: boolean; clientSignal?: NodeJS.Signals } = {},
  ): Promise<void> {
    this.stopping ??= this.teardown(
      opts.graceMs ?? this.opts.graceMs ?? 5_000,
      opts.keepLogs,
      opts.clientSignal,
    );
    return this.stopping;
  }

  /**
   * @param clientSignal what clients (the runner) get first: SIGINT after a Ctrl-C, so the runner
   *   reports the interruption the way the user caused it (exit 130); SIGTERM otherwise.
   */
  private async teardown(
    graceMs: number,
    keepLogs = false,
    clientSignal: NodeJS.Signals = "SIGTERM",
  ): Promise<void> {
    for (const w of this.spillWatches) w.stop();
    const podProcs = new Set([...this.pods.values()].map((p) => p.process));
    const clients = this.processes.filter((p) => p.name !== "scheduler" && !podProcs.has(p));
    const scheduler = this.processes.filter((p) => p.name === "scheduler");
    await Promise.all(clients.map((p) => p.stop(graceMs, clientSignal)));
    for (const tier of [[...podProcs], scheduler]) {
      await Promise.all(tier.map((p) => p.stop(graceMs)));
    }
    const errors: string[] = [];
    if (this.runCgroup !== undefined) {
      try {
        await removeCgroup(this.runCgroup);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    // A pod's /dev/shm goes away with the pod; locally, shared-memory files that a run's
    // processes tagged with the run id (its temp dir's name) go away with the run.
    for (const name of runShmFiles(listDir(SHM_DIR), path.basename(this.tmpDir))) {
      fs.rmSync(path.join(SHM_DIR, name), { force: true });
    }
    if (!keepLogs) fs.rmSync(this.tmpDir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`teardown incomplete: ${errors.join("; ")}`);
  }
}

/** Free bytes for an unprivileged user on the filesystem of `dir` (Infinity when unknown). */
function freeBytesAt(dir: string): number {
  try {
    const st = fs.statfsSync(dir);
    return st.bavail * st.bsize;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** Where POSIX shared memory lives on Linux. */
export const SHM_DIR = "/dev/shm";

/**
 * The shared-memory files of a run: names that end with the run id (the basename of the run's
 * DASK_TEMPORARY_DIRECTORY, which every process of the run has in its environment). They are
 * removed at teardown, as a pod's /dev/shm disappears with the pod.
 */
export function runShmFiles(names: string[], runId: string): string[] {
  return names.filter((n) => n.endsWith(`-${runId}`) || n === runId);
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** True when a TCP connection to host:port succeeds. */
function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.setTimeout(2_000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** Live pids whose process group is `pgid` (from /proc). */
export function processGroupPids(pgid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      // Fields after the ")" that closes the command name: state ppid pgrp ...
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Zombies (Z) and dead tasks (X) are gone already, only not yet reaped by their parent.
      if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") {
        out.push(Number(entry));
      }
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
