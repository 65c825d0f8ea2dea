/**
 * Where pods may run. The `kubernetes` target leaves this empty (any node); the `azure` target
 * pins workers and runner Jobs to the worker node pool (its label and, for spot pools, its taint).
 */
import type * as k8s from "@pulumi/kubernetes";

export interface NodePlacement {
  /** `spec.nodeSelector` of the pod template. */
  nodeSelector?: Record<string, string>;
  /** `spec.tolerations` of the pod template, e.g. for the spot-pool taint. */
  tolerations?: k8s.types.input.core.v1.Toleration[];
}

/** The pod-spec fields for a placement; empty when there is none, so nothing is rendered. */
export function placementFields(placement: NodePlacement | undefined): {
  nodeSelector?: Record<string, string>;
  tolerations?: k8s.types.input.core.v1.Toleration[];
} {
  const nodeSelector = placement?.nodeSelector;
  const tolerations = placement?.tolerations;
  return {
    ...(nodeSelector !== undefined && Object.keys(nodeSelector).length > 0 ? { nodeSelector } : {}),
    ...(tolerations !== undefined && tolerations.length > 0 ? { tolerations } : {}),
  };
}
