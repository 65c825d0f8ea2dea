/**
 * The Dask-aware autoscaling keys (`autoscaling.mode`, `autoscaling.scaleUp`, `installKeda`, ...)
 * and `monitoring`, and the rules that combine them. `infra/config.ts` (the only module that reads
 * the stack config) spreads {@link AUTOSCALING_DASK_KEYS} into its `autoscaling` schema, adds
 * {@link MonitoringSchema}, and calls {@link resolveAutoscaling}, which returns the resolved
 * settings with every problem and warning.
 *
 * Defaults, chosen so that no stack that rendered before these keys existed changes meaning:
 * - `mode`: `cpu` when the stack sets `targetCpuUtilization` (it asked for a CPU HPA); otherwise
 *   `dask` on `target: azure` (this stack turns on the AKS KEDA add-on, so the ScaledObject's CRD
 *   is there), and `cpu` on `target: kubernetes`: an arbitrary cluster may not have KEDA, and a
 *   default that made `pulumi up` fail there ("no matches for kind ScaledObject") would break
 *   stacks that work today. Kubernetes users opt in with `mode: dask` (and `installKeda: true`
 *   when the cluster has no KEDA).
 * - `minReplicas`: 0 in dask mode (an idle workspace costs nothing), 1 in cpu mode (as before).
 */
import { z } from "zod";
import type { Problem } from "./errors.js";
import type { ScalingDirection } from "./workspace/scaling-decision.js";

/** The KEDA release this package renders for, installs (`installKeda`) and validates against. */
export const KEDA_VERSION = "2.17.2";

/** `autoscaling.mode`. */
export type AutoscalingMode = "dask" | "cpu";

/** The dask mode's settings, resolved (present on every parsed config). */
export interface DaskScalingConfig {
  /** How fast pods are added: at once by default (the scheduler knows what the work needs). */
  scaleUp: ScalingDirection;
  /** An idle workspace (0 pods) starts only when desired processes exceed this. Default 0. */
  activationProcesses: number;
  /** Seconds between KEDA's looks at the scheduler's metrics. Default 15. */
  pollingSeconds: number;
  /** target kubernetes: install KEDA with a Helm release (pinned {@link KEDA_VERSION}). */
  installKeda: boolean;
  /** Namespace KEDA runs in (its operator scrapes the scheduler from there). */
  kedaNamespace: string;
}

/** `monitoring`, resolved. */
export interface MonitoringConfig {
  /** Render a prometheus-operator PodMonitor for the scheduler's and workers' /metrics. */
  prometheus: boolean;
  /** Scrape interval, a Prometheus duration. */
  interval: string;
  /** Namespace of the Prometheus that scrapes (the NetworkPolicy lets it in). */
  prometheusNamespace: string;
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const namespaceName = z
  .string()
  .max(63)
  .regex(DNS_LABEL, { error: (iss) => `${JSON.stringify(iss.input)} is not a namespace name` });

/** Keys spread into `autoscaling` (all optional; resolved by {@link resolveAutoscaling}). */
export const AUTOSCALING_DASK_KEYS = {
  /**
   * `dask`: a KEDA ScaledObject scales the workers on the scheduler's desired workers (scale to
   * zero allowed). `cpu`: a CPU HorizontalPodAutoscaler. Default: see the module comment.
   */
  mode: z.enum(["dask", "cpu"]).optional(),
  /** Dask mode: how fast pods are added. Default: up to maxReplicas at once, no window. */
  scaleUp: z
    .strictObject({
      /** Seconds of higher load before scaling up. Default 0. */
      stabilizationWindowSeconds: int(0, 3600).optional(),
      /** Pods added per period at most. Default maxReplicas. */
      podsPerPeriod: int(1).optional(),
      /** Period of that rate limit, seconds. Default 15. */
      periodSeconds: int(1, 1800).optional(),
    })
    .optional(),
  /** Dask mode: desired worker processes above which an idle workspace starts a pod. Default 0. */
  activationProcesses: int(0).optional(),
  /** Dask mode: seconds between KEDA's looks at the scheduler. Default 15. */
  pollingSeconds: int(1, 3600).optional(),
  /** target kubernetes, dask mode: install KEDA (Helm chart, version pinned). Default false. */
  installKeda: z.boolean().optional(),
  /** Namespace KEDA runs in. Default kube-system on azure (the add-on), keda otherwise. */
  kedaNamespace: namespaceName.optional(),
};

/** `monitoring` (top-level key). */
export const MonitoringSchema = z.strictObject({
  /** Render a PodMonitor (prometheus-operator) for the scheduler and workers. Default false. */
  prometheus: z.boolean().default(false),
  /** Scrape interval. Default "30s". */
  interval: z
    .string()
    .regex(/^\d+(ms|s|m|h)$/, { error: 'must be a Prometheus duration such as "30s" or "1m"' })
    .default("30s"),
  /** Namespace of the scraping Prometheus (let in by a NetworkPolicy). Default "monitoring". */
  prometheusNamespace: namespaceName.default("monitoring"),
});

/** The parsed (not yet resolved) autoscaling section, as far as these rules need it. */
export interface RawAutoscaling {
  enabled: boolean;
  minReplicas?: number;
  maxReplicas?: number;
  targetCpuUtilization?: number;
  mode?: AutoscalingMode;
  scaleUp?: { stabilizationWindowSeconds?: number; podsPerPeriod?: number; periodSeconds?: number };
  activationProcesses?: number;
  pollingSeconds?: number;
  installKeda?: boolean;
  kedaNamespace?: string;
}

export interface ResolvedAutoscaling {
  mode: AutoscalingMode;
  minReplicas: number;
  maxReplicas: number;
  targetCpuUtilization: number;
  dask: DaskScalingConfig;
}

/** The default `mode` (module comment). */
export function defaultAutoscalingMode(opts: {
  target: "azure" | "kubernetes";
  targetCpuUtilizationSet: boolean;
}): AutoscalingMode {
  if (opts.targetCpuUtilizationSet) return "cpu";
  return opts.target === "azure" ? "dask" : "cpu";
}

/**
 * Resolves the autoscaling section and checks every combination. Pure.
 * @param replicas `workers.replicas` (maxReplicas defaults to max(minReplicas, replicas)).
 */
export function resolveAutoscaling(opts: {
  target: "azure" | "kubernetes";
  autoscaling: RawAutoscaling;
  replicas: number;
  /** target azure: `azure.workerPool.minCount` (nodes the cluster autoscaler always keeps). */
  azureWorkerMinCount?: number;
}): { resolved: ResolvedAutoscaling; problems: Problem[]; warnings: string[] } {
  const a = opts.autoscaling;
  const problems: Problem[] = [];
  const warnings: string[] = [];
  const at = (key: string) => `autoscaling.${key}`;
  const mode =
    a.mode ??
    defaultAutoscalingMode({
      target: opts.target,
      targetCpuUtilizationSet: a.targetCpuUtilization !== undefined,
    });
  const minReplicas = a.minReplicas ?? (mode === "dask" ? 0 : 1);
  const maxReplicas = a.maxReplicas ?? Math.max(minReplicas, opts.replicas, 1);
  const daskOnly = (
    [
      ["scaleUp", a.scaleUp],
      ["activationProcesses", a.activationProcesses],
      ["pollingSeconds", a.pollingSeconds],
    ] as const
  ).filter(([, v]) => v !== undefined);

  if (mode === "cpu") {
    if (a.minReplicas === 0) {
      problems.push({
        path: at("minReplicas"),
        message:
          "0 needs mode dask: a CPU HPA cannot scale to zero (with no pod there is no CPU to measure, so nothing would ever start one); set autoscaling.mode: dask, or minReplicas ≥ 1",
      });
    }
    for (const [key] of daskOnly) {
      problems.push({
        path: at(key),
        message: `applies to mode dask only, and this stack's mode is cpu${a.mode === undefined ? " (the default here)" : ""}; remove it, or set autoscaling.mode: dask`,
      });
    }
    if (a.installKeda === true) {
      problems.push({
        path: at("installKeda"),
        message:
          "nothing uses KEDA in mode cpu (the CPU HPA is plain Kubernetes); set autoscaling.mode: dask, or remove installKeda",
      });
    }
  } else {
    if (a.targetCpuUtilization !== undefined) {
      problems.push({
        path: at("targetCpuUtilization"),
        message:
          "applies to mode cpu only: in mode dask the workers scale on the scheduler's desired workers, and a CPU HPA and a KEDA ScaledObject must never scale the same Deployment; remove targetCpuUtilization, or set autoscaling.mode: cpu",
      });
    }
    if (opts.target === "kubernetes" && a.enabled && a.installKeda !== true) {
      warnings.push(
        `autoscaling.mode: dask needs KEDA ${KEDA_VERSION.split(".").slice(0, 2).join(".")}+ on the cluster (the keda.sh/v1alpha1 ScaledObject CRD); if \`kubectl get crd scaledobjects.keda.sh\` finds nothing, set autoscaling.installKeda: true (or install KEDA yourself), otherwise \`pulumi up\` fails with "no matches for kind ScaledObject"`,
      );
    }
  }
  if (
    mode === "dask" &&
    a.enabled &&
    minReplicas === 0 &&
    opts.target === "azure" &&
    (opts.azureWorkerMinCount ?? 0) > 0
  ) {
    warnings.push(
      `autoscaling.minReplicas: 0 lets the workers go to zero, but azure.workerPool.minCount ${opts.azureWorkerMinCount} keeps that many worker nodes running (and billed); set azure.workerPool.minCount: 0 so the cluster autoscaler removes idle nodes`,
    );
  }
  if (a.installKeda === true && opts.target === "azure") {
    problems.push({
      path: at("installKeda"),
      message:
        "target azure runs KEDA as the AKS add-on (workloadAutoScalerProfile.keda, turned on by this stack); a second KEDA would fight it over the same CRDs; remove installKeda",
    });
  }
  if (!a.enabled) {
    const set = [
      ...(a.mode !== undefined ? ["mode"] : []),
      ...daskOnly.map(([k]) => k),
      ...(a.installKeda !== undefined ? ["installKeda"] : []),
    ];
    if (set.length > 0) {
      warnings.push(
        `${set.map(at).join(", ")}: ignored because autoscaling.enabled is false (set enabled: true to scale the workers)`,
      );
    }
  }

  const up = a.scaleUp ?? {};
  return {
    resolved: {
      mode,
      minReplicas,
      maxReplicas,
      targetCpuUtilization: a.targetCpuUtilization ?? 80,
      dask: {
        scaleUp: {
          stabilizationWindowSeconds: up.stabilizationWindowSeconds ?? 0,
          podsPerPeriod: up.podsPerPeriod ?? Math.max(1, maxReplicas),
          periodSeconds: up.periodSeconds ?? 15,
        },
        activationProcesses: a.activationProcesses ?? 0,
        pollingSeconds: a.pollingSeconds ?? 15,
        installKeda: a.installKeda ?? false,
        kedaNamespace: a.kedaNamespace ?? (opts.target === "azure" ? "kube-system" : "keda"),
      },
    },
    problems,
    warnings,
  };
}
