/**
 * `npm run local -- --autoscale`: autoscaling mode `dask` emulated over the local cgroup pods.
 *
 * The same parts as on a cluster, with KEDA and the ReplicaSet played by this loop:
 * - the same metrics, read from the same scheduler routes KEDA reads: `dask_scheduler_desired_workers`
 *   on `/metrics` and `dask_workspace_busy_pods` on `/workspace/metrics`;
 * - the same decision: {@link decideScale} with the stack's {@link scalingPolicy} (bounds,
 *   windows, rate limits, activation, the busy-pod floor);
 * - the same choice of which pods go: idle pods first, then those holding the least data (what
 *   the pod-deletion-cost annotation makes the ReplicaSet do), from `/workspace/pods.json`;
 * - the same retire-then-remove: the worker pods' preStop command (`python -m dask_workspace
 *   retire`), then SIGTERM to the pod's process tree.
 * It starts at `minReplicas` pods, grows with the study and, once the study is over, keeps
 * deciding until the workspace is back at `minReplicas` (zero included).
 */
import { retireCommand } from "../dask.js";
import type { WorkspaceConfig } from "../types.js";
import { scalingPolicy } from "../workspace/keda.js";
import {
  decideScale,
  INITIAL_SCALING_STATE,
  type ScalingPolicy,
  type ScalingState,
} from "../workspace/scaling-decision.js";
import * as fs from "node:fs";
import { cgroupPids } from "./cgroup.js";
import {
  exitCodeOf,
  type LocalWorkspace,
  type ManagedProcess,
  podName,
  processGroupPids,
} from "./launcher.js";
import type { LaunchResult } from "./run.js";

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** CPU seconds (user + system) of the processes in one pod's cgroup (or process group). */
export function podCpuSeconds(ws: LocalWorkspace, pod: string): number {
  const p = ws.pods.get(pod);
  if (p === undefined) return 0;
  const pids = p.cgroup ? cgroupPids(p.cgroup) : processGroupPids(p.process.pid);
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks / USER_HZ;
}

/** What the scheduler says, as KEDA would read it. */
export interface ScalingSignals {
  desiredProcesses: number;
  busyPods: number;
  /** Per pod: busy and bytes held (the deletion-cost view). */
  pods: Record<string, { busy: boolean; nbytes: number }>;
}

/** The value of an unlabelled gauge in Prometheus text, or undefined. Pure. */
export function prometheusGauge(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{\\})? ([-+0-9.eE]+|NaN)$`, "m").exec(text);
  if (m === null) return undefined;
  const v = Number(m[1]);
  return Number.isFinite(v) ? v : undefined;
}

/**
 * The `n` pods to remove: idle before busy, then the fewest bytes held, then the newest (a
 * ReplicaSet's tie-break), exactly as deletion costs order them. Pure.
 */
export function podsToRemove(
  running: readonly string[],
  activity: ScalingSignals["pods"],
  n: number,
): string[] {
  const order = running.map((name, i) => ({ name, i, a: activity[name] }));
  order.sort(
    (x, y) =>
      Number(x.a?.busy ?? false) - Number(y.a?.busy ?? false) ||
      (x.a?.nbytes ?? 0) - (y.a?.nbytes ?? 0) ||
      y.i - x.i,
  );
  return order.slice(0, Math.max(0, n)).map((o) => o.name);
}

async function getText(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

/** Reads the signals from the scheduler's HTTP port; undefined while it does not answer. */
export async function readScalingSignals(
  dashboardUrl: string,
): Promise<ScalingSignals | undefined> {
  const [metrics, workspace, pods] = await Promise.all([
    getText(`${dashboardUrl}/metrics`),
    getText(`${dashboardUrl}/workspace/metrics`),
    getText(`${dashboardUrl}/workspace/pods.json`),
  ]);
  if (metrics === undefined || workspace === undefined || pods === undefined) return undefined;
  const desired = prometheusGauge(metrics, "dask_scheduler_desired_workers");
  const busy = prometheusGauge(workspace, "dask_workspace_busy_pods");
  if (desired === undefined || busy === undefined) return undefined;
  const view = JSON.parse(pods) as { pods: ScalingSignals["pods"] };
  return { desiredProcesses: desired, busyPods: busy, pods: view.pods };
}

/** One sample of the emulation, for reports and benchmarks. */
export interface AutoscaleSample {
  /** Seconds since the autoscaler started. */
  t: number;
  pods: number;
  desiredProcesses: number;
  busyPods: number;
}

export interface AutoscaleOptions {
  /** Seconds between decisions (KEDA's polling interval). Default: the stack's pollingSeconds. */
  tickSeconds?: number;
  /**
   * `dask` (the default): the scheduler's metrics. `cpu`: a CPU HPA's rule on the same pods, for
   * comparison (benchmarks): ⌈pods × utilisation ÷ target⌉ from the CPU time of the processes in
   * each pod's cgroup, Kubernetes' default scale-up (4 pods per 15 s), no busy-pod floor, at
   * least 1 pod (an HPA on CPU cannot scale to zero), idle pods not preferred on scale-down.
   */
  mode?: "dask" | "cpu";
  /** Mode cpu: the utilisation target, percent (default the stack's targetCpuUtilization). */
  targetCpuUtilization?: number;
  log: (line: string) => void;
  /** Monotonic clock in seconds (tests). */
  now?: () => number;
}

/** The emulation loop over one {@link LocalWorkspace}. */
export class LocalAutoscaler {
  readonly policy: ScalingPolicy;
  readonly samples: AutoscaleSample[] = [];
  /** Σ running pods × seconds between decisions (what the pods cost). */
  podSeconds = 0;
  podsAdded = 0;
  podsRemoved = 0;
  private state: ScalingState = INITIAL_SCALING_STATE;
  private running: string[];
  private next: number;
  private readonly start: number;
  private lastTick: number;
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<unknown>;
  private readonly tickMs: number;
  private readonly now: () => number;

  private readonly mode: "dask" | "cpu";
  private cpuSeen = new Map<string, number>();

  constructor(
    private readonly ws: LocalWorkspace,
    private readonly opts: AutoscaleOptions,
  ) {
    this.mode = opts.mode ?? "dask";
    const dask = scalingPolicy(ws.config);
    this.policy =
      this.mode === "dask"
        ? dask
        : {
            ...dask,
            minReplicas: Math.max(1, dask.minReplicas),
            scaleUp: { stabilizationWindowSeconds: 0, podsPerPeriod: 4, periodSeconds: 15 },
          };
    this.now = opts.now ?? (() => performance.now() / 1000);
    this.start = this.now();
    this.lastTick = this.start;
    this.running = [...ws.pods.keys()];
    this.next = this.running.length;
    this.tickMs = (opts.tickSeconds ?? ws.config.autoscaling.dask?.pollingSeconds ?? 15) * 1000;
  }

  /** Pods whose process trees run. */
  get pods(): readonly string[] {
    return this.running;
  }

  /** Decides every tick until {@link stop}. */
  startLoop(): void {
    const loop = () => {
      this.ticking = this.tick().finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(loop, this.tickMs);
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  /**
   * Mode cpu: what a CPU HPA would ask for, as desired processes (no busy floor). The HPA's rule
   * when scaling up: ⌈Σ utilisation of the measured pods ÷ target⌉ (pods without a sample yet
   * count as 0), with its 10% tolerance around the current size.
   */
  private cpuSignals(dt: number): ScalingSignals {
    const target =
      (this.opts.targetCpuUtilization ?? this.ws.config.autoscaling.targetCpuUtilization) / 100;
    const cores = this.ws.config.workers.cpuMillis / 1000;
    let used = 0;
    let measured = 0;
    for (const pod of this.running) {
      const cpu = podCpuSeconds(this.ws, pod);
      const before = this.cpuSeen.get(pod);
      this.cpuSeen.set(pod, cpu);
      if (before === undefined || dt <= 0) continue;
      // Capped at the pod's limit: on a cluster requests = limits (Guaranteed QoS), so the CFS
      // quota keeps a pod at or below 100% of workers.cpu; local pods have no CPU limit.
      used += Math.min(1, Math.max(0, cpu - before) / (dt * cores));
      measured++;
    }
    const current = this.running.length;
    let pods = measured === 0 ? current : Math.ceil(used / target - 1e-9);
    if (measured > 0 && current > 0 && Math.abs(used / measured / target - 1) <= 0.1)
      pods = current;
    return { desiredProcesses: pods * this.ws.config.workers.nprocs, busyPods: 0, pods: {} };
  }

  /** One decision; returns the pod count after it. */
  async tick(): Promise<number> {
    const nowBefore = this.now();
    const signals =
      this.mode === "dask"
        ? await readScalingSignals(this.ws.dashboardUrl)
        : this.cpuSignals(nowBefore - this.lastTick);
    const now = this.now();
    this.podSeconds += this.running.length * (now - this.lastTick);
    this.lastTick = now;
    if (signals === undefined) return this.running.length;
    const decision = decideScale(
      this.policy,
      {
        atSeconds: now - this.start,
        currentPods: this.running.length,
        desiredProcesses: signals.desiredProcesses,
        busyPods: signals.busyPods,
      },
      this.state,
    );
    this.state = decision.state;
    this.samples.push({
      t: now - this.start,
      pods: decision.pods,
      desiredProcesses: signals.desiredProcesses,
      busyPods: signals.busyPods,
    });
    const delta = decision.pods - this.running.length;
    if (delta > 0) {
      for (let i = 0; i < delta; i++) {
        const name = podName(this.next++);
        this.ws.addPod(name);
        this.running.push(name);
        this.podsAdded++;
      }
      this.opts.log(
        `autoscale: ${decision.pods} pod(s) (scheduler wants ${signals.desiredProcesses} worker processes)`,
      );
    } else if (delta < 0) {
      const going = podsToRemove(this.running, signals.pods, -delta);
      this.running = this.running.filter((p) => !going.includes(p));
      await Promise.all(going.map((pod) => this.retireAndRemove(pod)));
      this.podsRemoved += going.length;
      this.opts.log(
        `autoscale: ${decision.pods} pod(s); retired and removed ${going.join(", ")}` +
          (decision.limitedBy !== "" ? ` (held by the ${decision.limitedBy})` : ""),
      );
    }
    return this.running.length;
  }

  /** The pod's preStop command, then SIGTERM (as the kubelet does). */
  private async retireAndRemove(pod: string): Promise<void> {
    const timeout = this.ws.config.workers.retireTimeoutSeconds;
    const argv = retireCommand({
      schedulerAddress: this.ws.schedulerAddress,
      namePrefix: pod,
      timeoutSeconds: timeout,
    });
    const { process } = this.ws.runClient(`retire-${pod}`, argv);
    const status = await process.exited;
    if (exitCodeOf(status) !== 0)
      this.opts.log(`autoscale: retiring ${pod} exited ${exitCodeOf(status)}`);
    await this.ws.stopPod(pod);
  }

  /**
   * After the study: keeps deciding (every tick) until the pods are back at minReplicas, or
   * `timeoutSeconds` passed. Returns the pods left.
   */
  async settle(timeoutSeconds: number): Promise<number> {
    await this.stop();
    const deadline = this.now() + timeoutSeconds;
    while (this.running.length > this.policy.minReplicas && this.now() < deadline) {
      await new Promise((r) => setTimeout(r, this.tickMs));
      await this.tick();
    }
    return this.running.length;
  }

  /** Summary fields (`autoscale` in the local summary). */
  report(): Record<string, unknown> {
    return {
      min_replicas: this.policy.minReplicas,
      max_replicas: this.policy.maxReplicas,
      pods_added: this.podsAdded,
      pods_removed: this.podsRemoved,
      peak_pods: Math.max(0, ...this.samples.map((s) => s.pods)),
      pods_at_end: this.running.length,
      pod_seconds: Math.round(this.podSeconds * 10) / 10,
    };
  }
}

/**
 * The raw stack config with autoscaling mode dask turned on (what `--autoscale` emulates). A
 * stack that says `mode: cpu` is refused: there is no CPU HPA to emulate here.
 */
export function autoscaleRawConfig(
  raw: Record<string, unknown>,
): { ok: true; raw: Record<string, unknown> } | { ok: false; message: string } {
  const a = (raw["autoscaling"] ?? {}) as Record<string, unknown>;
  if (a["mode"] === "cpu") {
    return {
      ok: false,
      message:
        "--autoscale emulates autoscaling mode dask, and this stack sets autoscaling.mode: cpu; remove the mode (or set it to dask) to try it locally",
    };
  }
  const { targetCpuUtilization: _ignored, ...rest } = a;
  return { ok: true, raw: { ...raw, autoscaling: { ...rest, enabled: true, mode: "dask" } } };
}

/** The config the local workspace starts with: `minReplicas` pods. */
export function autoscaleStartConfig(cfg: WorkspaceConfig): WorkspaceConfig {
  return { ...cfg, workers: { ...cfg.workers, replicas: cfg.autoscaling.minReplicas } };
}

/** Seconds between decisions of the local emulation (the cluster's HPA syncs every 15 s). */
export const LOCAL_TICK_SECONDS = 2;

/** Seconds the policy needs at most to go from maxReplicas back to minReplicas, plus a margin. */
export function settleSeconds(policy: ScalingPolicy): number {
  const d = policy.scaleDown;
  const steps = Math.ceil((policy.maxReplicas - policy.minReplicas) / d.podsPerPeriod);
  return d.stabilizationWindowSeconds + steps * d.periodSeconds + 60;
}

/**
 * `launchWorkspace` hooks for `--autoscale`: the loop runs beside the runner, then, after the
 * study, until the workspace is back at minReplicas; its report goes into the summary as
 * `autoscale`. `then` runs afterwards (e.g. `--keep`).
 */
export function autoscaleHooks(
  log: (line: string) => void,
  then?: (ws: LocalWorkspace, result: LaunchResult) => Promise<void>,
  opts: { tickSeconds?: number; mode?: "dask" | "cpu" } = {},
): {
  during: (ws: LocalWorkspace, runner: ManagedProcess) => Promise<void>;
  afterRun: (ws: LocalWorkspace, result: LaunchResult) => Promise<void>;
  autoscaler: () => LocalAutoscaler | undefined;
} {
  let scaler: LocalAutoscaler | undefined;
  return {
    autoscaler: () => scaler,
    during: async (ws, runner) => {
      scaler = new LocalAutoscaler(ws, {
        log,
        tickSeconds: opts.tickSeconds ?? LOCAL_TICK_SECONDS,
        mode: opts.mode,
      });
      log(
        `autoscale: starting at ${ws.pods.size} pod(s), between ${scaler.policy.minReplicas} and ${scaler.policy.maxReplicas}`,
      );
      scaler.startLoop();
      await runner.exited;
    },
    afterRun: async (ws, result) => {
      if (scaler !== undefined) {
        const limit = settleSeconds(scaler.policy);
        log(
          `autoscale: study over; shrinking to ${scaler.policy.minReplicas} pod(s) (at most ${limit} s)`,
        );
        const left = await scaler.settle(limit);
        log(`autoscale: ${left} pod(s) left`);
        result.summary["autoscale"] = scaler.report();
      }
      if (then !== undefined) await then(ws, result);
    },
  };
}
