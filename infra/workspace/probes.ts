/**
 * Health probes of the scheduler and the workers (docs/security.md, "Probes").
 *
 * Scheduler: readiness and liveness are separate. Readiness is quick (`/health` every 10 s): it
 * only gates traffic. Liveness restarts the container, which loses every task's state and so the
 * whole study's in-flight results, so it is lenient: `/health` may stay unanswered for
 * {@link SCHEDULER_LIVENESS_BUDGET_SECONDS} before the kubelet acts. Measured with
 * `scripts/measure-scheduler-block.py` (a real `dask scheduler` receiving one large `client.map`
 * while `/health` is polled): the route stayed unanswered for 1.2 s at 10,000 tasks and 33 s at
 * 50,000 tasks on a 2-core machine, growing faster than linearly with the graph. The budget keeps
 * a wide margin over that (a 100,000-task graph is about what one such call can submit before
 * the client's own timeouts), and still restarts a scheduler that is truly wedged.
 *
 * Workers: a liveness probe on the nanny heartbeat (`dask_workspace.heartbeat`, loaded with
 * `--preload-nanny`): the `dask worker` host process runs every nanny on one event loop that
 * never runs tasks, and the preload touches a file from that loop every 10 s. A busy worker
 * process does not delay it; a hung host loop (which no longer watches memory or restarts
 * workers) lets the file go stale and the kubelet restarts the pod's container.
 */
import type * as k8s from "@pulumi/kubernetes";

type Probe = k8s.types.input.core.v1.Probe;

/** Seconds `/health` may go unanswered before the scheduler's liveness probe fails. */
export const SCHEDULER_LIVENESS_BUDGET_SECONDS = 600;

/** Readiness: quick; it never restarts anything. */
export function schedulerReadinessProbe(port: string | number): Probe {
  return {
    httpGet: { path: "/health", port },
    initialDelaySeconds: 5,
    periodSeconds: 10,
    timeoutSeconds: 5,
    failureThreshold: 3,
  };
}

/** Liveness: fails only after {@link SCHEDULER_LIVENESS_BUDGET_SECONDS} without an answer. */
export function schedulerLivenessProbe(port: string | number): Probe {
  const periodSeconds = 30;
  return {
    httpGet: { path: "/health", port },
    initialDelaySeconds: 60,
    periodSeconds,
    timeoutSeconds: 30,
    failureThreshold: SCHEDULER_LIVENESS_BUDGET_SECONDS / periodSeconds,
  };
}

/** Where the nanny preload writes its heartbeat (the worker's `/tmp` emptyDir). */
export const NANNY_HEARTBEAT_PATH = "/tmp/dask-workspace/nanny-heartbeat";
/** The heartbeat is stale (the host loop hung) when older than this. */
export const NANNY_HEARTBEAT_STALE_SECONDS = 60;
/** The `dask worker` flags that load the heartbeat preload into every nanny. */
export const NANNY_PRELOAD_ARGS = ["--preload-nanny", "dask_workspace.heartbeat"];

/** `sh -c` check: the heartbeat file exists and is younger than `staleSeconds`. */
export function heartbeatCheckCommand(path: string, staleSeconds: number): string[] {
  return [
    "sh",
    "-c",
    `t=$(stat -c %Y '${path}') && test $(( $(date +%s) - t )) -lt ${staleSeconds}`,
  ];
}

/**
 * Worker liveness: the heartbeat must be fresh. Lenient: four failed checks 30 s apart on top of
 * the 60 s staleness, so the host loop must be stuck for about 3 minutes; the first check waits
 * for the nannies to start.
 */
export function workerLivenessProbe(): Probe {
  return {
    exec: { command: heartbeatCheckCommand(NANNY_HEARTBEAT_PATH, NANNY_HEARTBEAT_STALE_SECONDS) },
    initialDelaySeconds: 60,
    periodSeconds: 30,
    timeoutSeconds: 10,
    failureThreshold: 4,
  };
}
