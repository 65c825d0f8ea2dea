/**
 * Egress NetworkPolicies (docs/security.md, "Egress"). With `network.restrictEgress` (the default)
 * the namespace's default-deny policy also denies egress, and these rules allow only:
 *
 * - DNS: UDP and TCP 53 to the cluster DNS pods (`k8s-app: kube-dns` in `kube-system`, the label
 *   CoreDNS carries on AKS, kind and kubeadm clusters);
 * - Dask: every pod of this workspace to every other (scheduler comm, worker peers, nanny ports
 *   are random, so no port list);
 * - the runner to the Kubernetes API (`network.apiServer`: its pod watch; in autoscaling mode
 *   `dask` the pod-deletion-cost updater too, which patches pods), and, when a job writes
 *   to an object store (`az://`, `s3://`, `gs://`), to that store (`network.objectStore`: port
 *   443 on public addresses by default; NetworkPolicy cannot name a host, so it takes ranges);
 * - `network.extraEgress`: ranges every workspace pod may reach (a package index, a database).
 *
 * Link-local (169.254.0.0/16, with the cloud instance-metadata endpoint 169.254.169.254) is
 * never allowed: every range that contains it lists it in `except`, and config validation
 * refuses a range inside it.
 */
import type * as k8s from "@pulumi/kubernetes";
import { exceptWithin, LINK_LOCAL, PRIVATE_RANGES } from "../config-security.js";
import type { WorkspaceConfig } from "../types.js";
import { usesKeda } from "./keda.js";
import { instanceLabels, selectorLabels } from "./labels.js";

type Spec = k8s.types.input.networking.v1.NetworkPolicySpec;
type Rule = k8s.types.input.networking.v1.NetworkPolicyEgressRule;
type Peer = k8s.types.input.networking.v1.NetworkPolicyPeer;

/** Names of the egress policies of one workspace instance. */
export function egressNames(instance: string): {
  dns: string;
  dask: string;
  runner: string;
  deletionCost: string;
  extra: string;
} {
  return {
    dns: `${instance}-egress-dns`,
    dask: `${instance}-egress-dask`,
    runner: `${instance}-egress-runner`,
    deletionCost: `${instance}-egress-deletion-cost`,
    extra: `${instance}-egress-extra`,
  };
}

/** An ipBlock that never reaches link-local (nor, with `alsoExcept`, those ranges). */
export function ipBlockPeer(cidr: string, alsoExcept: readonly string[] = []): Peer {
  const except = exceptWithin(cidr, [LINK_LOCAL, ...alsoExcept]);
  return { ipBlock: { cidr, ...(except.length > 0 ? { except } : {}) } };
}

function tcpPorts(ports: readonly number[]): Array<{ protocol: string; port: number }> {
  return ports.map((port) => ({ protocol: "TCP", port }));
}

/** The cluster DNS pods. */
export const DNS_PEER: Peer = {
  namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
  podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
};

/** The egress policy specs of a workspace, by name (none when egress is not restricted). */
export function egressPolicySpecs(
  cfg: WorkspaceConfig,
  instance: string,
): Array<{ name: string; spec: Spec }> {
  const egress = cfg.hardening.egress;
  if (!egress.restrict) return [];
  const names = egressNames(instance);
  const all = { matchLabels: instanceLabels(instance) };
  const runner = { matchLabels: selectorLabels(instance, "runner") };
  const runnerRules: Rule[] = [
    {
      to: egress.apiServer.cidrs.map((c) => ipBlockPeer(c)),
      ports: tcpPorts(egress.apiServer.ports),
    },
  ];
  if (egress.objectStore !== undefined) {
    runnerRules.push({
      to: egress.objectStore.cidrs.map((c) => ipBlockPeer(c, PRIVATE_RANGES)),
      ports: tcpPorts(egress.objectStore.ports),
    });
  }
  const specs: Array<{ name: string; spec: Spec }> = [
    {
      name: names.dns,
      spec: {
        podSelector: all,
        policyTypes: ["Egress"],
        egress: [
          {
            to: [DNS_PEER],
            ports: [
              { protocol: "UDP", port: 53 },
              { protocol: "TCP", port: 53 },
            ],
          },
        ],
      },
    },
    {
      name: names.dask,
      spec: { podSelector: all, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: all }] }] },
    },
  ];
  // Without jobs there are no runner pods for the runner's rules to select.
  if (cfg.jobs.length > 0) {
    specs.push({
      name: names.runner,
      spec: { podSelector: runner, policyTypes: ["Egress"], egress: runnerRules },
    });
  }
  // Autoscaling mode dask: the pod-deletion-cost updater patches pods through the API server.
  if (usesKeda(cfg)) {
    specs.push({
      name: names.deletionCost,
      spec: {
        podSelector: { matchLabels: selectorLabels(instance, "deletion-cost") },
        policyTypes: ["Egress"],
        egress: [runnerRules[0]],
      },
    });
  }
  if (egress.extra.length > 0) {
    specs.push({
      name: names.extra,
      spec: {
        podSelector: all,
        policyTypes: ["Egress"],
        egress: egress.extra.map((e) => ({
          to: [ipBlockPeer(e.cidr)],
          ...(e.ports !== undefined
            ? { ports: e.ports.map((port) => ({ protocol: e.protocol, port })) }
            : {}),
        })),
      },
    });
  }
  return specs;
}
