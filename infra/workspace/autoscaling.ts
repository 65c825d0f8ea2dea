/**
 * The worker HorizontalPodAutoscaler (autoscaling/v2), created only when `autoscaling.enabled`.
 *
 * Scaling up is cheap; scaling down deletes pods that hold results. Each deleted pod runs the
 * preStop retirement (see `workers.ts`), which moves its data to the remaining workers, so
 * scale-down is slowed on purpose: a stabilization window so a short CPU dip between study
 * phases does not shed workers, and a Pods policy so at most a few pods retire at once and the
 * survivors have the memory to take their data.
 */
import type * as k8s from "@pulumi/kubernetes";
import type { AutoscalingConfig, WorkspaceConfig } from "../types.js";
import { recommendedLabels, type WorkspaceNames } from "./labels.js";

/** The HPA's `behavior`: conservative scale-down, Kubernetes' default scale-up. */
export function autoscalerBehaviour(
  autoscaling: AutoscalingConfig,
): k8s.types.input.autoscaling.v2.HorizontalPodAutoscalerBehavior {
  const { scaleDown } = autoscaling;
  return {
    scaleDown: {
      stabilizationWindowSeconds: scaleDown.stabilizationWindowSeconds,
      selectPolicy: "Min",
      policies: [
        { type: "Pods", value: scaleDown.podsPerPeriod, periodSeconds: scaleDown.periodSeconds },
      ],
    },
  };
}

export function workerAutoscaler(ctx: {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
}): k8s.types.input.autoscaling.v2.HorizontalPodAutoscaler {
  const { cfg, instance, names } = ctx;
  return {
    apiVersion: "autoscaling/v2",
    kind: "HorizontalPodAutoscaler",
    metadata: {
      name: names.autoscaler,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "worker", cfg.images.dask),
    },
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: names.worker },
      minReplicas: cfg.autoscaling.minReplicas,
      maxReplicas: cfg.autoscaling.maxReplicas,
      metrics: [
        {
          type: "Resource",
          resource: {
            name: "cpu",
            target: {
              type: "Utilization",
              averageUtilization: cfg.autoscaling.targetCpuUtilization,
            },
          },
        },
      ],
      behavior: autoscalerBehaviour(cfg.autoscaling),
    },
  };
}
