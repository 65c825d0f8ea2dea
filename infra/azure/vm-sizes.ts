/**
 * Does the worker pod fit the worker VM? The VM size table, AKS's node reservations and the fit
 * check that `infra/config.ts` runs for `target: azure` (docs/azure.md, "How the fit check works").
 *
 * Why this exists: a pod whose memory or CPU request exceeds what the kubelet reports as
 * allocatable is never scheduled. With the cluster autoscaler it is worse than a plain error: the
 * autoscaler sees that no node of the pool could ever hold the pod, adds nothing, and `pulumi up`
 * succeeds while every worker stays Pending. So the size is checked before anything is created.
 *
 * Everything here is pure and table-driven, like awsx's `fargateMemoryAndCpu.ts`.
 */
import type { Problem } from "../errors.js";
import type { Bytes, WorkspaceConfig } from "../types.js";
import { DEFAULT_RESULTS_CONTAINER, parseAzUri } from "./results.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** An Azure VM size as Azure publishes it. */
export interface VmSize {
  /** The ARM size name, e.g. `Standard_D4s_v5`. */
  name: string;
  vcpus: number;
  /** Memory in GiB, as in Azure's size tables. */
  memoryGiB: number;
}

function series(template: string, rows: ReadonlyArray<readonly [number, number]>): VmSize[] {
  return rows.map(([vcpus, memoryGiB]) => ({
    name: template.replace("{n}", String(vcpus)),
    vcpus,
    memoryGiB,
  }));
}

// The v5 families share their shapes across the Intel (`s`), Intel + local disk (`ds`) and, for D,
// AMD (`as`) variants.
const D_V5: ReadonlyArray<readonly [number, number]> = [
  [2, 8],
  [4, 16],
  [8, 32],
  [16, 64],
  [32, 128],
  [48, 192],
  [64, 256],
  [96, 384],
];
const E_V5: ReadonlyArray<readonly [number, number]> = [
  [2, 16],
  [4, 32],
  [8, 64],
  [16, 128],
  [20, 160],
  [32, 256],
  [48, 384],
  [64, 512],
  [96, 672],
];
const F_V2: ReadonlyArray<readonly [number, number]> = [
  [2, 4],
  [4, 8],
  [8, 16],
  [16, 32],
  [32, 64],
  [48, 96],
  [64, 128],
  [72, 144],
];

/**
 * Common general-purpose (D), memory-optimised (E) and compute-optimised (F) sizes.
 *
 * Source: Microsoft Learn, "Sizes for virtual machines in Azure": the Dsv5/Ddsv5/Dasv5,
 * Esv5/Edsv5 and Fsv2 series pages (vCPUs and "Memory (GiB)" columns),
 * https://learn.microsoft.com/azure/virtual-machines/sizes/overview. Constrained-vCPU variants
 * (`Standard_E16-4s_v5`) are left out on purpose: the reservation formula counts the vCPUs the
 * kubelet sees, which those names do not state.
 */
export const VM_SIZES: readonly VmSize[] = [
  ...series("Standard_D{n}s_v5", D_V5),
  ...series("Standard_D{n}ds_v5", D_V5),
  ...series("Standard_D{n}as_v5", D_V5),
  ...series("Standard_E{n}s_v5", E_V5),
  ...series("Standard_E{n}ds_v5", E_V5),
  ...series("Standard_F{n}s_v2", F_V2),
];

const SIZES_BY_NAME = new Map(VM_SIZES.map((s) => [s.name.toLowerCase(), s]));

/** The table entry for a size name; Azure size names are case-insensitive. */
export function lookupVmSize(name: string): VmSize | undefined {
  return SIZES_BY_NAME.get(name.toLowerCase());
}

/** Splits `Standard_D4s_v5` into its family key (`Standard_D{n}s_v5`). */
function familyOf(name: string): string | undefined {
  const m = /^(Standard_[A-Z]+)(\d+)([a-z]*_v\d+)$/i.exec(name);
  return m ? `${m[1]}{n}${m[3]}`.toLowerCase() : undefined;
}

/** Sizes of the same family as `name`, smallest first (empty for unknown families). */
export function sameFamily(name: string): VmSize[] {
  const family = familyOf(name);
  if (family === undefined) return [];
  return VM_SIZES.filter((s) => familyOf(s.name) === family).sort((a, b) => a.vcpus - b.vcpus);
}

/**
 * Encryption at host (the `EncryptionAtHostSupported` capability of a VM size), by name pattern.
 *
 * Supported: every family of {@link VM_SIZES} (Dsv5, Ddsv5, Dasv5, Esv5, Edsv5, Fsv2), current
 * generations that Microsoft Learn ("Encryption at host", "Supported VM sizes") lists among the
 * sizes with the capability. Not supported: the legacy A-series v1 and Basic sizes ("Legacy VM
 * sizes are not supported", same page). Anything else is unknown: `az vm list-skus` in the
 * target region is the authority, and the capability could not be queried here (no Azure access).
 */
const ENCRYPTION_AT_HOST: ReadonlyArray<readonly [RegExp, boolean]> = [
  [/^Standard_(D\d+(s|ds|as)_v5|E\d+(s|ds)_v5|F\d+s_v2)$/i, true],
  [/^(Basic_A\d+|Standard_A\d+)$/i, false],
];

/** Whether VM size `name` supports encryption at host, as far as the table above knows. */
export function encryptionAtHostSupport(name: string): "supported" | "unsupported" | "unknown" {
  const hit = ENCRYPTION_AT_HOST.find(([pattern]) => pattern.test(name.trim()));
  if (hit === undefined) return "unknown";
  return hit[1] ? "supported" : "unsupported";
}

/**
 * Max pods per node of the worker pool. `AksCluster` sets it on the pool and the reservation
 * below depends on it, so both read this one constant. A worker node runs one or a few Dask pods
 * plus about ten system DaemonSet pods; 30 leaves room and keeps kube-reserved small
 * (20 MiB per pod, see `kubeReservedMemoryBytes`). The Azure CNI Overlay default would be 250,
 * which on a 16 GiB node reserves the full 25% (4 GiB) instead of 650 MiB.
 */
export const WORKER_POOL_MAX_PODS = 30;

/** Max pods per node of the system pool (CoreDNS, metrics-server, the Dask scheduler, ...). */
export const SYSTEM_POOL_MAX_PODS = 110;

/**
 * What the AKS-managed DaemonSets request on every node, plus some slack for the part of the VM's
 * memory the kernel keeps (the kubelet's capacity is MemTotal, a little below the VM's nominal
 * size). The DaemonSets on a node of this cluster (Azure CNI Overlay + Cilium, no add-ons) are the
 * Cilium agent, azure-cns, cloud-node-manager, the Azure Disk and Azure File CSI node plugins and
 * ip-masq-agent: about 350m CPU and 750Mi of memory in requests. This is an ESTIMATE from their
 * published manifests: it could not be measured here (no AKS cluster). Compare it with
 * `kubectl describe node` ("Non-terminated Pods") on a real worker node and adjust it here.
 */
export const DAEMONSET_ALLOWANCE = { cpuMillis: 400, memoryBytes: 1024 * MiB } as const;

/**
 * AKS's reservations, from Microsoft Learn, "Node resource reservations in Azure Kubernetes
 * Service (AKS)", https://learn.microsoft.com/azure/aks/node-resource-reservations (page dated
 * 2024-04-16; MicrosoftDocs/azure-aks-docs `articles/aks/node-resource-reservations.md`):
 *
 * - CPU (kube-reserved, millicores) by cores on the host: 1→60, 2→100, 4→140, 8→180, 16→260,
 *   32→420, 64→740.
 * - Memory, AKS 1.29 and later: kube-reserved = the lesser of `20 MB × max pods + 50 MB` and 25% of
 *   the node's memory; plus the kubelet's hard eviction threshold `memory.available < 100Mi`.
 * - Memory, AKS before 1.29: kube-reserved = 25% of the first 4 GB, 20% of the next 4 GB (up to
 *   8 GB), 10% of the next 8 GB (up to 16 GB), 6% of the next 112 GB (up to 128 GB), 2% above
 *   128 GB; plus the eviction threshold `memory.available < 750Mi`.
 *
 * The page writes "MB"/"GB" loosely (its own example subtracts 100Mi as "0.1 GB"). We read them
 * as MiB/GiB, the larger reading, so a pod we accept is never one that AKS would refuse.
 */
export interface Reservation {
  kubeReservedCpuMillis: number;
  kubeReservedMemoryBytes: Bytes;
  evictionThresholdBytes: Bytes;
}

/** True unless `kubernetesVersion` (`"1.28"`, `"1.28.9"`) names a minor before 1.29. */
export function usesPodBasedMemoryReservation(kubernetesVersion: string | undefined): boolean {
  if (kubernetesVersion === undefined) return true; // AKS picks its current default, ≥ 1.29
  const m = /^v?(\d+)\.(\d+)/.exec(kubernetesVersion.trim());
  if (!m) return true;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 1 || (major === 1 && minor >= 29);
}

/** kube-reserved CPU for a host with `vcpus` cores (millicores). */
export function kubeReservedCpuMillis(vcpus: number): number {
  // The table's points from 4 cores up lie exactly on 140 + 10 m per extra core (8→180, 16→260,
  // 32→420, 64→740), so that line also gives the sizes between and beyond them (48→580, 72→820).
  if (vcpus <= 1) return 60;
  if (vcpus <= 2) return 100;
  if (vcpus < 4) return 100 + (vcpus - 2) * 20;
  return 140 + (vcpus - 4) * 10;
}

/** kube-reserved memory for a node with `memoryBytes` of memory (see `Reservation`). */
export function kubeReservedMemoryBytes(
  memoryBytes: Bytes,
  opts: { maxPods: number; kubernetesVersion?: string },
): Bytes {
  if (usesPodBasedMemoryReservation(opts.kubernetesVersion)) {
    return Math.min((20 * opts.maxPods + 50) * MiB, Math.floor(memoryBytes / 4));
  }
  const tiers: ReadonlyArray<readonly [number, number]> = [
    [4 * GiB, 0.25],
    [4 * GiB, 0.2],
    [8 * GiB, 0.1],
    [112 * GiB, 0.06],
    [Infinity, 0.02],
  ];
  let left = memoryBytes;
  let reserved = 0;
  for (const [size, rate] of tiers) {
    const inTier = Math.min(left, size);
    reserved += inTier * rate;
    left -= inTier;
    if (left <= 0) break;
  }
  return Math.ceil(reserved);
}

/** The kubelet's hard eviction threshold on AKS (see `Reservation`). */
export function evictionThresholdBytes(kubernetesVersion: string | undefined): Bytes {
  return (usesPodBasedMemoryReservation(kubernetesVersion) ? 100 : 750) * MiB;
}

/** A node's allocatable resources and what one pod of ours may use of them. */
export interface NodeCapacity {
  size: VmSize;
  reservation: Reservation;
  /** What the kubelet reports as allocatable: capacity − kube-reserved − eviction threshold. */
  allocatableCpuMillis: number;
  allocatableMemoryBytes: Bytes;
  /** Allocatable minus `DAEMONSET_ALLOWANCE`: the largest pod that can be scheduled here. */
  podCpuMillis: number;
  podMemoryBytes: Bytes;
}

/** Allocatable resources of an AKS node of `size` (pure arithmetic on the cited formula). */
export function aksNodeCapacity(
  size: VmSize,
  opts: { maxPods: number; kubernetesVersion?: string },
): NodeCapacity {
  const memoryBytes = size.memoryGiB * GiB;
  const reservation: Reservation = {
    kubeReservedCpuMillis: kubeReservedCpuMillis(size.vcpus),
    kubeReservedMemoryBytes: kubeReservedMemoryBytes(memoryBytes, opts),
    evictionThresholdBytes: evictionThresholdBytes(opts.kubernetesVersion),
  };
  const allocatableCpuMillis = size.vcpus * 1000 - reservation.kubeReservedCpuMillis;
  const allocatableMemoryBytes =
    memoryBytes - reservation.kubeReservedMemoryBytes - reservation.evictionThresholdBytes;
  return {
    size,
    reservation,
    allocatableCpuMillis,
    allocatableMemoryBytes,
    podCpuMillis: allocatableCpuMillis - DAEMONSET_ALLOWANCE.cpuMillis,
    podMemoryBytes: allocatableMemoryBytes - DAEMONSET_ALLOWANCE.memoryBytes,
  };
}

/** `14.27 GiB` → `"14.2Gi"`: one decimal, rounded down so "about" never overstates. */
export function formatApproxGi(bytes: Bytes): string {
  return `${(Math.floor((bytes / GiB) * 10) / 10).toFixed(1)}Gi`;
}

/** The largest round memory quantity ≤ `bytes`: whole Gi from 4Gi up, else multiples of 128Mi. */
export function roundMemoryDown(bytes: Bytes): string {
  if (bytes >= 4 * GiB) return `${Math.floor(bytes / GiB)}Gi`;
  const mi = Math.floor(bytes / (128 * MiB)) * 128;
  return mi % 1024 === 0 && mi > 0 ? `${mi / 1024}Gi` : `${mi}Mi`;
}

/** The largest round CPU quantity ≤ `millis`: multiples of 100m, whole cores as `"3"`. */
export function roundCpuDown(millis: number): string {
  const m = Math.floor(millis / 100) * 100;
  return m % 1000 === 0 ? String(m / 1000) : `${m}m`;
}

/** Cores for messages: `3460` → `"3.46"`. */
function formatCores(millis: number): string {
  return String(Math.floor(millis / 10) / 100);
}

/** A pod's requests (= limits) in the units the fit check needs. */
export interface PodRequest {
  memoryBytes: Bytes;
  cpuMillis: number;
  /** The user's quantities, echoed in messages. */
  memoryQuantity: string;
  cpuQuantity: string;
}

/** How a pod fits one pool's VM size. */
export type PodFit =
  | { kind: "unknown-size" }
  | { kind: "fits"; capacity: NodeCapacity; podsPerNode: number }
  | { kind: "too-big"; capacity: NodeCapacity; memory: boolean; cpu: boolean; larger?: VmSize };

/**
 * Fits `pod` on a node of `vmSize`? When not, also the smallest size of the same family on which
 * it fits (`larger`, undefined when none does).
 */
export function fitPod(
  pod: PodRequest,
  vmSize: string,
  opts: { maxPods: number; kubernetesVersion?: string },
): PodFit {
  const size = lookupVmSize(vmSize);
  if (size === undefined) return { kind: "unknown-size" };
  const fitsOn = (c: NodeCapacity) =>
    pod.memoryBytes <= c.podMemoryBytes && pod.cpuMillis <= c.podCpuMillis;
  const capacity = aksNodeCapacity(size, opts);
  if (fitsOn(capacity)) {
    const podsPerNode = Math.min(
      Math.floor(capacity.podMemoryBytes / pod.memoryBytes),
      pod.cpuMillis > 0 ? Math.floor(capacity.podCpuMillis / pod.cpuMillis) : Infinity,
      opts.maxPods,
    );
    return { kind: "fits", capacity, podsPerNode };
  }
  const larger = sameFamily(size.name).find(
    (s) => s.vcpus > size.vcpus && fitsOn(aksNodeCapacity(s, opts)),
  );
  return {
    kind: "too-big",
    capacity,
    memory: pod.memoryBytes > capacity.podMemoryBytes,
    cpu: pod.cpuMillis > capacity.podCpuMillis,
    larger,
  };
}

/** The problems for a pod that does not fit, one per resource (memory, CPU). */
function tooBigProblems(
  fit: Extract<PodFit, { kind: "too-big" }>,
  pod: PodRequest,
  paths: { memory: string; cpu: string; sizeKey: string },
): Problem[] {
  const { capacity } = fit;
  const name = capacity.size.name;
  const bigger = fit.larger
    ? `use ${fit.larger.name}`
    : `no ${name.replace(/\d+(?=[a-z]*_v\d+$)/i, "*")} size is large enough: choose another ${paths.sizeKey}`;
  const key = (path: string) => path.slice(path.lastIndexOf(".") + 1);
  const problems: Problem[] = [];
  if (fit.memory) {
    problems.push({
      path: paths.memory,
      message:
        `${pod.memoryQuantity} does not fit ${name} (about ${formatApproxGi(capacity.podMemoryBytes)} ` +
        `allocatable); ${bigger} or ${key(paths.memory)} ≤ ${roundMemoryDown(capacity.podMemoryBytes)}`,
    });
  }
  if (fit.cpu) {
    problems.push({
      path: paths.cpu,
      message:
        `${pod.cpuQuantity} does not fit ${name} (about ${formatCores(capacity.podCpuMillis)} CPU ` +
        `allocatable); ${bigger} or ${key(paths.cpu)} ≤ ${roundCpuDown(capacity.podCpuMillis)}`,
    });
  }
  return problems;
}

/**
 * The Azure checks of a validated config: the worker pod must fit `azure.workerPool.vmSize` and
 * the scheduler pod `azure.systemPool.vmSize`, after AKS's reservations and the DaemonSets, and
 * every job must write to the one results container the runner's identity may write to. An
 * unknown size is a warning (the check is skipped), never a failure: Azure has hundreds of sizes
 * and a new one must not block a deployment. Does nothing unless `target` is `azure`.
 */
export function azureFitProblems(cfg: WorkspaceConfig): {
  problems: Problem[];
  warnings: string[];
} {
  const problems: Problem[] = [];
  const warnings: string[] = [];
  const azure = cfg.azure;
  if (cfg.target !== "azure" || azure === undefined) return { problems, warnings };
  const kubernetesVersion = azure.kubernetesVersion;

  const unknown = (key: string, vmSize: string) =>
    `${key}: ${vmSize} is not in the VM size table (infra/azure/vm-sizes.ts), so whether the pods ` +
    `fit its allocatable memory and CPU was not checked`;

  const worker: PodRequest = {
    memoryBytes: cfg.workers.podMemory.bytes,
    memoryQuantity: cfg.workers.podMemory.quantity,
    cpuMillis: cfg.workers.cpuMillis,
    cpuQuantity: cfg.workers.cpu,
  };
  const wfit = fitPod(worker, azure.workerPool.vmSize, {
    maxPods: WORKER_POOL_MAX_PODS,
    kubernetesVersion,
  });
  if (wfit.kind === "unknown-size") {
    warnings.push(unknown("azure.workerPool.vmSize", azure.workerPool.vmSize));
  } else if (wfit.kind === "too-big") {
    problems.push(
      ...tooBigProblems(wfit, worker, {
        memory: "workers.podMemory",
        cpu: "workers.cpu",
        sizeKey: "azure.workerPool.vmSize",
      }),
    );
  } else {
    // Enough nodes for the most worker pods the workspace may ask for? Pending pods are not an
    // error (the autoscaler may be mid-scale), but a ceiling that can never be reached is worth
    // saying before the bill arrives.
    const wanted = cfg.autoscaling.enabled ? cfg.autoscaling.maxReplicas : cfg.workers.replicas;
    const room = wfit.podsPerNode * azure.workerPool.maxCount;
    if (wanted > room) {
      warnings.push(
        `azure.workerPool.maxCount: ${azure.workerPool.maxCount} × ${azure.workerPool.vmSize} ` +
          `hold ${room} worker pods (${wfit.podsPerNode} per node) but the workspace may run ` +
          `${wanted}; raise maxCount to ${Math.ceil(wanted / wfit.podsPerNode)} or the extra pods stay Pending`,
      );
    }
  }

  const schedulerCpu = cpuMillisOf(cfg.scheduler.cpu);
  const scheduler: PodRequest = {
    memoryBytes: cfg.scheduler.memory.bytes,
    memoryQuantity: cfg.scheduler.memory.quantity,
    // An unparsable quantity is config.ts's problem to report; here it just skips the CPU check.
    cpuMillis: Number.isNaN(schedulerCpu) ? 0 : schedulerCpu,
    cpuQuantity: cfg.scheduler.cpu,
  };
  const sfit = fitPod(scheduler, azure.systemPool.vmSize, {
    maxPods: SYSTEM_POOL_MAX_PODS,
    kubernetesVersion,
  });
  if (sfit.kind === "unknown-size") {
    warnings.push(unknown("azure.systemPool.vmSize", azure.systemPool.vmSize));
  } else if (sfit.kind === "too-big") {
    problems.push(
      ...tooBigProblems(sfit, scheduler, {
        memory: "scheduler.memory",
        cpu: "scheduler.cpu",
        sizeKey: "azure.systemPool.vmSize",
      }),
    );
  }
  // One results container per workspace: the runner's identity may write there and nowhere else.
  const container = parseAzUri(cfg.runner.results)?.container ?? DEFAULT_RESULTS_CONTAINER;
  for (const job of cfg.jobs) {
    const other = parseAzUri(job.results)?.container;
    if (other !== undefined && other !== container) {
      problems.push({
        path: `jobs.${job.name}.results`,
        message:
          `container "${other}" is not the workspace's results container "${container}", the only ` +
          `one the runner's identity may write to; use az://${container}/... or change runner.results`,
      });
    }
  }
  return { problems, warnings };
}

/** Kubernetes CPU quantity → millicores (`"2"` → 2000, `"1500m"` → 1500, `"0.5"` → 500). */
export function cpuMillisOf(cpu: string): number {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(cpu.trim());
  if (!m) return NaN;
  return m[2] === "m" ? Number(m[1]) : Math.round(Number(m[1]) * 1000);
}
