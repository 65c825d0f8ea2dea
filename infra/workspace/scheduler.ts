/**
 * The Dask scheduler: one pod behind a ClusterIP Service, with health probes and a
 * PodDisruptionBudget.
 */
import type * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { schedulerAddress, schedulerCommand, schedulerEnv } from "../dask.js";
import type { WorkspaceConfig } from "../types.js";
import {
  daskConfigChecksum,
  daskConfigEnv,
  daskConfigMount,
  daskConfigVolume,
} from "./daskconfig.js";
import { recommendedLabels, selectorLabels, type WorkspaceNames } from "./labels.js";
import { type NodePlacement, placementFields } from "./placement.js";
import { schedulerLivenessProbe, schedulerReadinessProbe } from "./probes.js";
import {
  SCRATCH_DIR,
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
  scratchVolume,
  scratchVolumeMount,
  withEphemeralStorage,
} from "./security.js";
import { tlsVolumeMounts, tlsVolumes } from "./tls.js";

/** Named container/Service ports; NetworkPolicies and probes refer to these numbers. */
export const COMM_PORT_NAME = "tcp-comm";
export const DASHBOARD_PORT_NAME = "http-dashboard";

export interface SchedulerContext {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
  placement?: NodePlacement;
  /** Container image; default `cfg.images.dask`. */
  image?: pulumi.Input<string>;
}

/**
 * The in-cluster DNS name of the scheduler Service. `<svc>.<namespace>.svc` rather than the full
 * `.svc.cluster.local`, because the cluster domain is configurable and the short form resolves
 * through the pod's DNS search path on every cluster.
 */
export function schedulerHost(names: WorkspaceNames, namespace: string): string {
  return `${names.scheduler}.${namespace}.svc`;
}

/** `tcp://<svc>.<ns>.svc:<port>`: what workers and runner Jobs connect to. */
export function workspaceSchedulerAddress(cfg: WorkspaceConfig, names: WorkspaceNames): string {
  return schedulerAddress(cfg, schedulerHost(names, cfg.namespace));
}

/**
 * Readiness and liveness on the dashboard's `/health` route, each with its own timing
 * (infra/workspace/probes.ts): readiness quick, liveness lenient and measured.
 */
export function schedulerProbes(): {
  readinessProbe: k8s.types.input.core.v1.Probe;
  livenessProbe: k8s.types.input.core.v1.Probe;
} {
  return {
    readinessProbe: schedulerReadinessProbe(DASHBOARD_PORT_NAME),
    livenessProbe: schedulerLivenessProbe(DASHBOARD_PORT_NAME),
  };
}

export function schedulerDeployment(ctx: SchedulerContext): k8s.types.input.apps.v1.Deployment {
  const { cfg, instance, names } = ctx;
  const selector = selectorLabels(instance, "scheduler");
  const labels = recommendedLabels(instance, "scheduler", cfg.images.dask);
  const resources = { cpu: cfg.scheduler.cpu, memory: cfg.scheduler.memory.quantity };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: names.scheduler, namespace: cfg.namespace, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: selector },
      // Two schedulers never help: workers would split between them. Stop the old one first.
      strategy: { type: "Recreate" },
      template: {
        metadata: {
          labels,
          annotations: {
            ...daskConfigChecksum(cfg),
            // Evicting the scheduler loses every in-flight result; the autoscaler must not do it.
            "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
          },
        },
        spec: {
          automountServiceAccountToken: false,
          securityContext: restrictedPodSecurityContext(),
          ...placementFields(ctx.placement),
          containers: [
            {
              name: "scheduler",
              image: ctx.image ?? cfg.images.dask,
              imagePullPolicy: cfg.images.pullPolicy,
              command: schedulerCommand(cfg),
              env: [
                ...daskConfigEnv(),
                { name: "HOME", value: SCRATCH_DIR },
                ...Object.entries(schedulerEnv(cfg)).map(([name, value]) => ({ name, value })),
              ],
              ports: [
                { name: COMM_PORT_NAME, containerPort: cfg.scheduler.port, protocol: "TCP" },
                {
                  name: DASHBOARD_PORT_NAME,
                  containerPort: cfg.scheduler.dashboardPort,
                  protocol: "TCP",
                },
              ],
              resources: withEphemeralStorage(resources, cfg.hardening.storage.scheduler),
              ...schedulerProbes(),
              securityContext: restrictedContainerSecurityContext(),
              volumeMounts: [daskConfigMount(), scratchVolumeMount(), ...tlsVolumeMounts(cfg)],
            },
          ],
          volumes: [
            daskConfigVolume(names.daskConfig),
            scratchVolume(cfg.hardening.storage.scheduler),
            ...tlsVolumes(cfg, instance, names),
          ],
        },
      },
    },
  };
}

export function schedulerService(ctx: SchedulerContext): k8s.types.input.core.v1.Service {
  const { cfg, instance, names } = ctx;
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: names.scheduler,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "scheduler", cfg.images.dask),
    },
    spec: {
      type: "ClusterIP",
      selector: selectorLabels(instance, "scheduler"),
      ports: [
        {
          name: COMM_PORT_NAME,
          port: cfg.scheduler.port,
          targetPort: COMM_PORT_NAME,
          protocol: "TCP",
        },
        {
          name: DASHBOARD_PORT_NAME,
          port: cfg.scheduler.dashboardPort,
          targetPort: DASHBOARD_PORT_NAME,
          protocol: "TCP",
        },
      ],
    },
  };
}

/**
 * `minAvailable: 1` on the single scheduler: a voluntary eviction (node drain, cluster
 * autoscaler) waits instead of silently destroying the study's state. An operator who really
 * wants to drain the node deletes the pod (or the workspace) on purpose, or sets
 * `scheduler.disruptionBudget: false` for the maintenance (then `index.ts` creates no budget).
 * `unhealthyPodEvictionPolicy: AlwaysAllow`: a scheduler that is not Ready (crash-looping,
 * stuck starting) holds no state worth protecting, so it never blocks a drain.
 */
export function schedulerDisruptionBudget(
  ctx: SchedulerContext,
): k8s.types.input.policy.v1.PodDisruptionBudget {
  const { cfg, instance, names } = ctx;
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: {
      name: names.scheduler,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "scheduler", cfg.images.dask),
    },
    spec: {
      minAvailable: 1,
      unhealthyPodEvictionPolicy: "AlwaysAllow",
      selector: { matchLabels: selectorLabels(instance, "scheduler") },
    },
  };
}
