/**
 * NetworkPolicies: nothing reaches a workspace pod unless a rule below allows it.
 *
 * Ingress:
 * - default deny for every pod in the namespace;
 * - the scheduler's comm port only from this workspace's worker and runner pods;
 * - the scheduler's dashboard only from this workspace's runner pods (and, in autoscaling mode
 *   `dask`, its pod-deletion-cost updater) and the sources listed in
 *   `scheduler.dashboardFrom` (a `kubectl port-forward` is not pod traffic and keeps working);
 * - workers from the scheduler, other workers and the runner on every port: each `dask worker`
 *   process (and its nanny) listens on a random port, which the scheduler hands to peers for
 *   data transfer, so no fixed port list exists.
 * Kubelet probes come from the node, which NetworkPolicy always allows.
 *
 * Egress: default deny too (unless `network.restrictEgress: false`), with the allow rules of
 * `egress.ts`: DNS, the workspace's own pods, the runner's API server and object store, and
 * `network.extraEgress`. Link-local (the instance-metadata endpoint) is never reachable.
 */
import type * as k8s from "@pulumi/kubernetes";
import type { WorkspaceConfig } from "../types.js";
import { dashboardPeers } from "./dashboard.js";
import { egressPolicySpecs } from "./egress.js";
import { usesKeda } from "./keda.js";
import { recommendedLabels, selectorLabels, type WorkspaceNames } from "./labels.js";

type NetworkPolicy = k8s.types.input.networking.v1.NetworkPolicy;
type Peer = k8s.types.input.networking.v1.NetworkPolicyPeer;

interface NetworkContext {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
}

/** A policy with its name beside it (the Pulumi logical name is the object name). */
export interface NamedPolicy {
  name: string;
  manifest: NetworkPolicy;
}

function policy(
  ctx: NetworkContext,
  name: string,
  spec: k8s.types.input.networking.v1.NetworkPolicySpec,
): NamedPolicy {
  const manifest: NetworkPolicy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: {
      name,
      namespace: ctx.cfg.namespace,
      labels: recommendedLabels(ctx.instance, "network"),
    },
    spec,
  };
  return { name, manifest };
}

function peer(
  instance: string,
  component: "scheduler" | "worker" | "runner" | "deletion-cost",
): Peer {
  return { podSelector: { matchLabels: selectorLabels(instance, component) } };
}

/** Every NetworkPolicy of the workspace, in a fixed order. */
export function networkPolicies(ctx: NetworkContext): NamedPolicy[] {
  const { cfg, instance, names } = ctx;
  const scheduler = { matchLabels: selectorLabels(instance, "scheduler") };
  return [
    // Selects every pod and allows nothing: the baseline the rules below open up.
    policy(ctx, names.defaultDeny, {
      podSelector: {},
      policyTypes: cfg.hardening.egress.restrict ? ["Ingress", "Egress"] : ["Ingress"],
    }),
    policy(ctx, names.schedulerComm, {
      podSelector: scheduler,
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [peer(instance, "worker"), peer(instance, "runner")],
          ports: [{ protocol: "TCP", port: cfg.scheduler.port }],
        },
      ],
    }),
    policy(ctx, names.schedulerDashboard, {
      podSelector: scheduler,
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [
            peer(instance, "runner"),
            // Mode dask: the pod-deletion-cost updater reads the scheduler's pod view here.
            ...(usesKeda(cfg) ? [peer(instance, "deletion-cost")] : []),
            ...dashboardPeers(cfg.hardening.dashboardFrom),
          ],
          ports: [{ protocol: "TCP", port: cfg.scheduler.dashboardPort }],
        },
      ],
    }),
    policy(ctx, names.workerPeers, {
      podSelector: { matchLabels: selectorLabels(instance, "worker") },
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [peer(instance, "scheduler"), peer(instance, "worker"), peer(instance, "runner")],
        },
      ],
    }),
    ...egressPolicySpecs(cfg, instance).map(({ name, spec }) => policy(ctx, name, spec)),
  ];
}
