/**
 * `scheduler.dashboardFrom` as NetworkPolicy peers: who may reach the scheduler's dashboard port
 * besides this workspace's runner pods (docs/security.md, "Dashboard").
 */
import type * as k8s from "@pulumi/kubernetes";
import type { DashboardPeer } from "../config-security.js";

type Peer = k8s.types.input.networking.v1.NetworkPolicyPeer;

/**
 * One peer per entry: `{podSelector}` (pods in this namespace), `{namespaceSelector}` (every
 * pod of those namespaces), both (those pods of those namespaces), or `{cidr}` (an ipBlock).
 */
export function dashboardPeers(from: readonly DashboardPeer[]): Peer[] {
  return from.map((p): Peer => {
    if (p.cidr !== undefined) return { ipBlock: { cidr: p.cidr } };
    return {
      ...(p.namespaceSelector !== undefined
        ? { namespaceSelector: { matchLabels: p.namespaceSelector } }
        : {}),
      ...(p.podSelector !== undefined ? { podSelector: { matchLabels: p.podSelector } } : {}),
    };
  });
}
