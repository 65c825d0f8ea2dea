/**
 * Autoscaling mode `dask`: a KEDA ScaledObject on the worker Deployment (KEDA creates and feeds
 * the HPA; the Kubernetes HPA still does the scaling), the NetworkPolicy that lets KEDA read the
 * scheduler's metrics, and, on `target: kubernetes` with `installKeda`, KEDA itself.
 *
 * Two triggers, both `metrics-api` reading the scheduler's HTTP port directly in the Prometheus
 * text format (no Prometheus server needed):
 * - `dask_scheduler_desired_workers` (`/metrics`, Dask's own gauge of `adaptive_target()`) with
 *   target `nprocs` per pod: the HPA's AverageValue rule gives ⌈desired processes ÷ nprocs⌉ pods;
 * - `dask_workspace_busy_pods` (`/workspace/metrics`, `dask_workspace.scaling_metrics`) with
 *   target 1 per pod: the HPA takes the larger recommendation, so the workers never shrink below
 *   the pods that hold results or run tasks.
 * The HPA behaviour comes from {@link hpaBehavior}, the same parameters the local emulation's
 * {@link decideScale} uses. A CPU HPA is never rendered beside it (`index.ts` makes one or the
 * other, and config validation rejects `targetCpuUtilization` in mode dask).
 */
import type { WorkspaceConfig } from "../types.js";
import { KEDA_VERSION } from "../config-autoscaling.js";
import { recommendedLabels, selectorLabels, type WorkspaceNames } from "./labels.js";
import { hpaBehavior, kedaTarget, type ScalingPolicy } from "./scaling-decision.js";

/** The ScaledObject's API version and the KEDA Helm chart's coordinates. */
export const SCALED_OBJECT_API_VERSION = "keda.sh/v1alpha1";
export const KEDA_CHART = { name: "keda", repo: "https://kedacore.github.io/charts" } as const;

/** The scheduler's routes the triggers read. */
export const DESIRED_WORKERS_METRIC = "dask_scheduler_desired_workers";
export const BUSY_PODS_METRIC = "dask_workspace_busy_pods";
export const WORKSPACE_METRICS_PATH = "/workspace/metrics";
export const WORKSPACE_PODS_PATH = "/workspace/pods.json";

/** The resolved dask-mode policy of a config: the one input of the decision and the renderers. */
export function scalingPolicy(cfg: WorkspaceConfig): ScalingPolicy {
  const a = cfg.autoscaling;
  const dask = a.dask;
  if (dask === undefined) throw new Error("autoscaling.dask is unset: parse the config first");
  return {
    minReplicas: a.minReplicas,
    maxReplicas: a.maxReplicas,
    processesPerPod: cfg.workers.nprocs,
    activationProcesses: dask.activationProcesses,
    scaleUp: dask.scaleUp,
    scaleDown: a.scaleDown,
  };
}

/** True when the workers are scaled by a ScaledObject (mode dask, autoscaling on). */
export function usesKeda(cfg: WorkspaceConfig): boolean {
  return cfg.autoscaling.enabled && cfg.autoscaling.mode === "dask";
}

/** `http://<scheduler service>.<namespace>.svc:<dashboard port>` */
export function schedulerHttpUrl(cfg: WorkspaceConfig, names: WorkspaceNames): string {
  return `http://${names.scheduler}.${cfg.namespace}.svc:${cfg.scheduler.dashboardPort}`;
}

/** Names of the dask-mode objects. */
export function kedaNames(instance: string): { scaledObject: string; kedaIngress: string } {
  return { scaledObject: `${instance}-worker`, kedaIngress: `${instance}-scheduler-keda` };
}

export interface KedaContext {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
}

/** The ScaledObject (keda.sh/v1alpha1) for the worker Deployment. */
export function scaledObject(ctx: KedaContext): Record<string, unknown> {
  const { cfg, instance, names } = ctx;
  const policy = scalingPolicy(cfg);
  const dask = cfg.autoscaling.dask!;
  const target = kedaTarget(policy);
  const base = schedulerHttpUrl(cfg, names);
  const trigger = (
    name: string,
    path: string,
    metric: string,
    t: { targetValue: number; activationTargetValue: number },
  ) => ({
    type: "metrics-api",
    name,
    metricType: "AverageValue",
    metadata: {
      url: `${base}${path}`,
      format: "prometheus",
      valueLocation: metric,
      targetValue: String(t.targetValue),
      activationTargetValue: String(t.activationTargetValue),
    },
  });
  return {
    apiVersion: SCALED_OBJECT_API_VERSION,
    kind: "ScaledObject",
    metadata: {
      name: kedaNames(instance).scaledObject,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "worker", cfg.images.dask),
    },
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: names.worker },
      minReplicaCount: policy.minReplicas,
      maxReplicaCount: policy.maxReplicas,
      pollingInterval: dask.pollingSeconds,
      // KEDA's last step to zero waits as long as the HPA's scale-down window: one idea of
      // "quiet for long enough" for every step down.
      cooldownPeriod: policy.scaleDown.stabilizationWindowSeconds,
      advanced: {
        // KEDA names the HPA keda-hpa-<name>: never the CPU HPA's name, so switching modes
        // cannot make KEDA adopt the old HPA.
        horizontalPodAutoscalerConfig: { behavior: hpaBehavior(policy) },
      },
      triggers: [
        trigger("desired-workers", "/metrics", DESIRED_WORKERS_METRIC, target.desiredWorkers),
        trigger("busy-pods", WORKSPACE_METRICS_PATH, BUSY_PODS_METRIC, target.busyPods),
      ],
    },
  };
}

/**
 * A NetworkPolicy that lets every pod of one namespace reach the scheduler's HTTP (dashboard) port:
 * KEDA's operator and Prometheus read its metrics there, and the workspace's default-deny policy
 * would otherwise drop their requests.
 */
export function schedulerHttpIngressPolicy(args: {
  cfg: WorkspaceConfig;
  instance: string;
  name: string;
  fromNamespace: string;
}): Record<string, unknown> {
  const { cfg, instance } = args;
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: {
      name: args.name,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "scheduler", cfg.images.dask),
    },
    spec: {
      podSelector: { matchLabels: selectorLabels(instance, "scheduler") },
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [
            {
              namespaceSelector: {
                matchLabels: { "kubernetes.io/metadata.name": args.fromNamespace },
              },
            },
          ],
          ports: [{ protocol: "TCP", port: cfg.scheduler.dashboardPort }],
        },
      ],
    },
  };
}

/** Lets KEDA's operator (in `kedaNamespace`) reach the scheduler: without it workers never scale. */
export function kedaIngressPolicy(ctx: KedaContext): Record<string, unknown> {
  return schedulerHttpIngressPolicy({
    cfg: ctx.cfg,
    instance: ctx.instance,
    name: kedaNames(ctx.instance).kedaIngress,
    fromNamespace: ctx.cfg.autoscaling.dask!.kedaNamespace,
  });
}

/** The KEDA Helm release's arguments (`autoscaling.installKeda`), version pinned. */
export function kedaReleaseArgs(cfg: WorkspaceConfig): {
  chart: string;
  version: string;
  namespace: string;
  createNamespace: boolean;
  repositoryOpts: { repo: string };
} {
  return {
    chart: KEDA_CHART.name,
    version: KEDA_VERSION,
    namespace: cfg.autoscaling.dask!.kedaNamespace,
    createNamespace: true,
    repositoryOpts: { repo: KEDA_CHART.repo },
  };
}

/** The scheduler route module of `dask_workspace.scaling_metrics`. */
export const SCALING_ROUTES_MODULE = "dask_workspace.scaling_metrics";

/** True when the scheduler serves `/workspace/metrics` (mode dask, or Prometheus scraping). */
export function servesWorkspaceMetrics(cfg: WorkspaceConfig): boolean {
  return usesKeda(cfg) || cfg.monitoring?.prometheus === true;
}

/**
 * What mode dask adds to the Dask config (`infra/dask.ts`): the route module, and the processes
 * per pod it groups worker names by. Nothing otherwise, so the ConfigMap (and its checksum on the
 * pods) of every other stack stays as it was.
 */
export function scalingDaskConfig(cfg: WorkspaceConfig): {
  routes: string[];
  config: Record<string, unknown>;
} {
  if (!servesWorkspaceMetrics(cfg)) return { routes: [], config: {} };
  return {
    routes: [SCALING_ROUTES_MODULE],
    config: { workspace: { autoscaling: { "processes-per-pod": cfg.workers.nprocs } } },
  };
}
