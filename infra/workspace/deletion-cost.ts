/**
 * The pod-deletion-cost updater (mode dask): a one-replica Deployment running
 * `python -m dask_workspace deletion-cost` (runner image), its ServiceAccount, and a Role that
 * may only get, list and patch pods in the workspace's namespace.
 *
 * Why a Deployment of its own: the ReplicaSet deletes the pods with the lowest
 * `controller.kubernetes.io/pod-deletion-cost` first, so someone must keep that annotation in
 * step with the scheduler's view (which pods hold results or run tasks). Doing it in the scheduler
 * would give the scheduler API credentials; doing it in the worker pods would give pods that run
 * user code the right to patch every pod. A small separate pod keeps both without a token. The
 * loop is rate-limited (`dask_workspace.deletion_cost`): Kubernetes warns against updating the
 * annotation often.
 */
import type * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import type { WorkspaceConfig } from "../types.js";
import { WORKSPACE_PODS_PATH, schedulerHttpUrl } from "./keda.js";
import { instanceLabels, type Labels, type WorkspaceNames } from "./labels.js";
import { type NodePlacement, placementFields } from "./placement.js";
import {
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
  scratchVolume,
  scratchVolumeMount,
  SCRATCH_DIR,
} from "./security.js";

export interface DeletionCostContext {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
  /** Runner image; default `cfg.images.runner`. */
  image?: pulumi.Input<string>;
  placement?: NodePlacement;
}

/** The object name shared by the Deployment, ServiceAccount, Role and RoleBinding. */
export function deletionCostName(instance: string): string {
  return `${instance}-deletion-cost`;
}

function labels(instance: string): Labels {
  return {
    ...instanceLabels(instance),
    "app.kubernetes.io/component": "deletion-cost",
    "app.kubernetes.io/part-of": "dask-workspace",
    "app.kubernetes.io/managed-by": "pulumi",
  };
}

function meta(ctx: DeletionCostContext) {
  return {
    name: deletionCostName(ctx.instance),
    namespace: ctx.cfg.namespace,
    labels: labels(ctx.instance),
  };
}

/** The Role: pods only; get and list to find them, patch to set the annotation. */
export function deletionCostRoleRules(): k8s.types.input.rbac.v1.PolicyRule[] {
  return [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "patch"] }];
}

export function deletionCostServiceAccount(
  ctx: DeletionCostContext,
): k8s.types.input.core.v1.ServiceAccount {
  return { apiVersion: "v1", kind: "ServiceAccount", metadata: meta(ctx) };
}

export function deletionCostRole(ctx: DeletionCostContext): k8s.types.input.rbac.v1.Role {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: meta(ctx),
    rules: deletionCostRoleRules(),
  };
}

export function deletionCostRoleBinding(
  ctx: DeletionCostContext,
): k8s.types.input.rbac.v1.RoleBinding {
  const name = deletionCostName(ctx.instance);
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: meta(ctx),
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
    subjects: [{ kind: "ServiceAccount", name, namespace: ctx.cfg.namespace }],
  };
}

/** `python -m dask_workspace deletion-cost ...` */
export function deletionCostCommand(cfg: WorkspaceConfig, names: WorkspaceNames): string[] {
  return [
    "python",
    "-m",
    "dask_workspace",
    "deletion-cost",
    "--pods-url",
    `${schedulerHttpUrl(cfg, names)}${WORKSPACE_PODS_PATH}`,
    "--namespace",
    cfg.namespace,
  ];
}

export function deletionCostDeployment(
  ctx: DeletionCostContext,
): k8s.types.input.apps.v1.Deployment {
  const { cfg, instance, names } = ctx;
  const podLabels = labels(instance);
  const resources = { cpu: "100m", memory: "256Mi" };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(ctx),
    spec: {
      replicas: 1,
      selector: {
        matchLabels: {
          ...instanceLabels(instance),
          "app.kubernetes.io/component": "deletion-cost",
        },
      },
      template: {
        metadata: { labels: podLabels },
        spec: {
          serviceAccountName: deletionCostName(instance),
          securityContext: restrictedPodSecurityContext(),
          ...placementFields(ctx.placement),
          containers: [
            {
              name: "deletion-cost",
              image: ctx.image ?? cfg.images.runner,
              imagePullPolicy: cfg.images.pullPolicy,
              command: deletionCostCommand(cfg, names),
              env: [
                { name: "HOME", value: SCRATCH_DIR },
                { name: "PYTHONUNBUFFERED", value: "1" },
              ],
              resources: { requests: resources, limits: resources },
              securityContext: restrictedContainerSecurityContext(),
              volumeMounts: [scratchVolumeMount()],
            },
          ],
          volumes: [scratchVolume()],
        },
      },
    },
  };
}
