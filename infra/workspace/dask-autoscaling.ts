/**
 * The Kubernetes objects of autoscaling mode `dask` and of `monitoring.prometheus`, created by
 * the DaskWorkspace component (one call in `index.ts`). Builders live in `keda.ts`,
 * `deletion-cost.ts` and `monitoring.ts`; this file only creates the resources.
 */
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import type { WorkspaceConfig } from "../types.js";
import {
  deletionCostDeployment,
  deletionCostName,
  deletionCostRole,
  deletionCostRoleBinding,
  deletionCostServiceAccount,
} from "./deletion-cost.js";
import { kedaIngressPolicy, kedaNames, kedaReleaseArgs, scaledObject, usesKeda } from "./keda.js";
import type { WorkspaceNames } from "./labels.js";
import { monitoringNames, prometheusIngressPolicy, schedulerPodMonitor } from "./monitoring.js";
import type { NodePlacement } from "./placement.js";

export interface DaskAutoscalingArgs {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
  /** Parent and provider of every object. */
  child: pulumi.CustomResourceOptions;
  /** Objects that must exist first (namespace, the worker Deployment). */
  dependsOn: pulumi.Resource[];
  /** Runner image for the deletion-cost Deployment; default `cfg.images.runner`. */
  runnerImage?: pulumi.Input<string>;
  /** Where the deletion-cost pod may run (the scheduler's placement). */
  placement?: NodePlacement;
}

/** Creates the mode-dask and monitoring objects that the config asks for (none otherwise). */
export function createDaskAutoscaling(args: DaskAutoscalingArgs): void {
  const { cfg, instance, names, child } = args;
  const opts = { ...child, dependsOn: args.dependsOn };
  if (usesKeda(cfg)) {
    const ctx = { cfg, instance, names };
    const kedaNs = kedaNames(instance);
    // KEDA itself (target kubernetes, installKeda): its CRDs must exist before the ScaledObject.
    const keda = cfg.autoscaling.dask?.installKeda
      ? new k8s.helm.v3.Release(`${instance}-keda`, kedaReleaseArgs(cfg), child)
      : undefined;
    const policy = new k8s.networking.v1.NetworkPolicy(
      kedaNs.kedaIngress,
      kedaIngressPolicy(ctx) as k8s.types.input.networking.v1.NetworkPolicy,
      opts,
    );
    new k8s.apiextensions.CustomResource(kedaNs.scaledObject, scaledObject(ctx) as never, {
      ...child,
      dependsOn: [...args.dependsOn, policy, ...(keda !== undefined ? [keda] : [])],
    });
    const dc = { ...ctx, image: args.runnerImage, placement: args.placement };
    const name = deletionCostName(instance);
    const sa = new k8s.core.v1.ServiceAccount(name, deletionCostServiceAccount(dc), opts);
    const role = new k8s.rbac.v1.Role(name, deletionCostRole(dc), opts);
    const binding = new k8s.rbac.v1.RoleBinding(name, deletionCostRoleBinding(dc), {
      ...child,
      dependsOn: [sa, role],
    });
    new k8s.apps.v1.Deployment(name, deletionCostDeployment(dc), {
      ...child,
      dependsOn: [...args.dependsOn, binding],
    });
  }
  if (cfg.monitoring?.prometheus === true) {
    const m = monitoringNames(instance);
    new k8s.networking.v1.NetworkPolicy(
      m.ingress,
      prometheusIngressPolicy({ cfg, instance }) as k8s.types.input.networking.v1.NetworkPolicy,
      opts,
    );
    new k8s.apiextensions.CustomResource(
      m.podMonitor,
      schedulerPodMonitor({ cfg, instance }) as never,
      opts,
    );
  }
}
