/**
 * How much disk an AKS node leaves for pods' ephemeral storage (emptyDir volumes, container logs
 * and writable layers), for the spill-space check of `target: azure` (`infra/config-security.ts`).
 * Pure and table-driven; the VM size table itself is `infra/azure/vm-sizes.ts`.
 */
import { lookupVmSize } from "./azure/vm-sizes.js";

const GiB = 1024 ** 3;

/**
 * AKS's default OS disk by vCPU count, for a node pool created without `osDiskSizeGB` whose VM
 * size cannot hold an ephemeral OS disk of at least that size (Microsoft Learn, "Storage options
 * for applications in AKS", "Default OS disk sizing": 1–7 vCPUs P10/128G, 8–15 P15/256G, 16–63
 * P20/512G, 64+ P30/1024G). Sizes with a large local disk (the `d` variants) may get an ephemeral
 * OS disk of their temp-disk size instead, which is at least as large, so this is the safe floor.
 */
export function defaultOsDiskGiBForVcpus(vcpus: number): number {
  if (vcpus >= 64) return 1024;
  if (vcpus >= 16) return 512;
  if (vcpus >= 8) return 256;
  return 128;
}

/** The default OS disk of `vmSize` (GiB), or undefined when the size is not in the table. */
export function aksDefaultOsDiskGiB(vmSize: string, osDiskSizeGB?: number): number | undefined {
  if (osDiskSizeGB !== undefined && osDiskSizeGB > 0) return osDiskSizeGB;
  const size = lookupVmSize(vmSize);
  return size === undefined ? undefined : defaultOsDiskGiBForVcpus(size.vcpus);
}

/**
 * The kubelet's hard eviction threshold `nodefs.available<10%` (the upstream default AKS keeps):
 * pods are evicted once the disk is 90% full.
 */
export const NODEFS_EVICTION_FRACTION = 0.1;
/**
 * What the node itself keeps on its OS disk: the node image (Ubuntu, about 10 GiB in use), the
 * container images of the system DaemonSets and the workspace (a few GiB each), kubelet and
 * journal logs. An estimate with margin, not a measurement of a live node.
 */
export const NODE_SYSTEM_DISK_BYTES = 30 * GiB;

/** Bytes of ephemeral storage left for pods on a node with an OS disk of `osDiskGiB`. */
export function nodeEphemeralBytes(osDiskGiB: number): number {
  const disk = osDiskGiB * GiB;
  return Math.max(0, Math.floor(disk * (1 - NODEFS_EVICTION_FRACTION) - NODE_SYSTEM_DISK_BYTES));
}
