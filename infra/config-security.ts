/**
 * The hardening keys of the stack config (docs/security.md): their zod schema pieces, which
 * `infra/config.ts` spreads into its sections, and the pure resolution into {@link Hardening}.
 *
 * - `workers.spillStorage`, `scheduler.scratchStorage`, `runner.scratchStorage`: disk for the
 *   `/tmp` emptyDir (`sizeLimit`) and, with a logs allowance, every container's
 *   `ephemeral-storage` request = limit. Spill space follows worker memory by default.
 * - `scheduler.dashboardFrom`: who may reach the dashboard besides the runner.
 * - `scheduler.disruptionBudget`: the scheduler's PodDisruptionBudget, off for maintenance.
 * - `network.*`: the egress allow-list (default-deny egress, link-local always blocked).
 * - `images.dask` / `images.runner`: `repo@sha256:<64 hex>` is validated; a tag is a warning.
 */
import { z } from "zod";
import { aksDefaultOsDiskGiB, nodeEphemeralBytes } from "./node-disk.js";
import { VNET_PLAN } from "./azure/security.js";
import { fitPod, WORKER_POOL_MAX_PODS } from "./azure/vm-sizes.js";
import type { Problem } from "./errors.js";
import { formatQuantity, parseQuantity, QuantityError } from "./memory.js";
import type { Memory } from "./types.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

const toMemory = (bytes: number): Memory => ({ bytes, quantity: formatQuantity(bytes) });

// ---------------------------------------------------------------------------------------------
// Ephemeral storage
// ---------------------------------------------------------------------------------------------

/** Default worker spill space: this many times `workers.podMemory`. */
export const SPILL_PER_POD_MEMORY = 2;
/** Default `/tmp` size of the scheduler and runner pods (lock files, the runner's summary). */
export const DEFAULT_SCRATCH_BYTES = 1 * GiB;
/**
 * Added to each container's ephemeral-storage request = limit on top of its `/tmp` sizeLimit: the
 * kubelet also counts the container's logs (rotated at 10Mi × 5 by default) and its writable
 * layer (empty: the root filesystem is read-only).
 */
export const LOGS_ALLOWANCE_BYTES = 256 * MiB;

/** A disk size: a Kubernetes quantity (or whole bytes), positive. */
const storage = z.union([z.string(), z.number()]).transform((v, ctx): Memory => {
  let bytes: number | undefined;
  let error: string | undefined;
  if (typeof v === "number") {
    if (Number.isSafeInteger(v)) bytes = v;
    else error = `${v} is not a whole number of bytes`;
  } else {
    try {
      bytes = parseQuantity(v);
    } catch (e) {
      if (!(e instanceof QuantityError)) throw e;
      error = e.message;
    }
  }
  if (bytes !== undefined && bytes <= 0) error = `${JSON.stringify(v)} must be positive`;
  if (error !== undefined || bytes === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `${error ?? "invalid"}; use a Kubernetes quantity of disk, e.g. 20Gi`,
      input: v,
    });
    return z.NEVER;
  }
  return toMemory(bytes);
});

/** The disk of one pod: the `/tmp` emptyDir's sizeLimit and the container's ephemeral storage. */
export interface PodStorage {
  /** `sizeLimit` of the `/tmp` emptyDir. */
  scratch: Memory;
  /** The container's `ephemeral-storage` request = limit: scratch + logs allowance (+ extra). */
  ephemeral: Memory;
}

export function podStorage(scratchBytes: number, extraBytes = 0): PodStorage {
  return {
    scratch: toMemory(scratchBytes),
    ephemeral: toMemory(scratchBytes + extraBytes + LOGS_ALLOWANCE_BYTES),
  };
}

/** `workers.spillStorage` when set, else {@link SPILL_PER_POD_MEMORY} × `workers.podMemory`. */
export function workerSpillBytes(opts: { podMemoryBytes: number; spillStorage?: Memory }): number {
  return opts.spillStorage?.bytes ?? SPILL_PER_POD_MEMORY * opts.podMemoryBytes;
}

// ---------------------------------------------------------------------------------------------
// Addresses and selectors
// ---------------------------------------------------------------------------------------------

/** Link-local addresses (cloud instance metadata at 169.254.169.254, node-local services). */
export const LINK_LOCAL = "169.254.0.0/16";
/** Private and shared ranges: not the public endpoint of an object store. */
export const PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/** An IPv4 CIDR as [network address as an unsigned int, prefix length], or undefined. */
export function parseCidr(cidr: string): [number, number] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (m === null) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix > 32) return undefined;
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  const size = 2 ** (32 - prefix);
  if (addr % size !== 0) return undefined; // host bits set: 10.0.0.1/8
  return [addr, prefix];
}

/** Whether CIDR `a` lies entirely inside CIDR `b` (both valid). */
export function cidrWithin(a: string, b: string): boolean {
  const [aAddr, aPre] = parseCidr(a)!;
  const [bAddr, bPre] = parseCidr(b)!;
  if (aPre < bPre) return false;
  const size = 2 ** (32 - bPre);
  return Math.floor(aAddr / size) === Math.floor(bAddr / size);
}

/** Whether two CIDRs share any address. */
export function cidrOverlaps(a: string, b: string): boolean {
  return cidrWithin(a, b) || cidrWithin(b, a);
}

/**
 * The `except` list for an egress ipBlock: every listed range that lies inside `cidr`. Link-local
 * is always among `ranges`, so an allowed range never reaches the instance-metadata endpoint.
 */
export function exceptWithin(cidr: string, ranges: readonly string[]): string[] {
  return ranges.filter((r) => cidrWithin(r, cidr) && r !== cidr);
}

const cidr = z.string().superRefine((v, ctx) => {
  if (parseCidr(v) === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(v)} is not an IPv4 CIDR with its host bits zero, e.g. 10.20.0.0/16 or 203.0.113.7/32`,
    });
  }
});

/** A CIDR that must not reach link-local addresses (it may contain them: they are excluded). */
const egressCidr = cidr.superRefine((v, ctx) => {
  if (parseCidr(v) !== undefined && cidrWithin(v, LINK_LOCAL)) {
    ctx.addIssue({
      code: "custom",
      message: `${v} is link-local (${LINK_LOCAL}: the cloud instance-metadata endpoint 169.254.169.254 and node-local services); egress there is always blocked, so remove this entry`,
    });
  }
});

const port = z.number().int().min(1).max(65535);

const LABEL_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

const labels = z.record(z.string(), z.string()).superRefine((m, ctx) => {
  for (const [k, v] of Object.entries(m)) {
    if (!LABEL_NAME.test(k) || k.length > 317) {
      ctx.addIssue({
        code: "custom",
        path: [k],
        message: `${JSON.stringify(k)} is not a label key`,
      });
    }
    if (!LABEL_VALUE.test(v)) {
      ctx.addIssue({
        code: "custom",
        path: [k],
        message: `${JSON.stringify(v)} is not a label value (at most 63 letters, digits, '-', '_', '.')`,
      });
    }
  }
});

/**
 * One `scheduler.dashboardFrom` entry: pods by labels (in this namespace, or in the namespaces
 * that `namespaceSelector` picks), or an address range.
 */
const DashboardPeerSchema = z
  .strictObject({
    /** Pods with these labels (with `namespaceSelector`: in those namespaces; else this one). */
    podSelector: labels.optional(),
    /** Namespaces with these labels (e.g. `kubernetes.io/metadata.name: monitoring`). */
    namespaceSelector: labels.optional(),
    /** An IPv4 range, e.g. a VPN subnet. Alone: no selectors beside it. */
    cidr: cidr.optional(),
  })
  .superRefine((p, ctx) => {
    const selectors = p.podSelector !== undefined || p.namespaceSelector !== undefined;
    if (p.cidr !== undefined && selectors) {
      ctx.addIssue({
        code: "custom",
        message:
          "give either cidr or podSelector/namespaceSelector, not both (write two entries for both)",
      });
    } else if (p.cidr === undefined && !selectors) {
      ctx.addIssue({
        code: "custom",
        message:
          "is empty; give podSelector (e.g. {app: prometheus}), namespaceSelector, or cidr (e.g. 10.8.0.0/24)",
      });
    }
  });

export type DashboardPeer = z.output<typeof DashboardPeerSchema>;

const ExtraEgressSchema = z.strictObject({
  /** Destination range; must not be link-local (always blocked; excluded from wider ranges). */
  cidr: egressCidr,
  /** Destination ports; all ports when absent. */
  ports: z.array(port).min(1).optional(),
  /** Protocol of those ports. Default TCP. */
  protocol: z.enum(["TCP", "UDP"]).default("TCP"),
});

export type ExtraEgress = z.output<typeof ExtraEgressSchema>;

// ---------------------------------------------------------------------------------------------
// Schema pieces (spread into infra/config.ts)
// ---------------------------------------------------------------------------------------------

/** Keys added to `workers`. */
export const workersHardeningKeys = {
  /** `/tmp` (spill) size limit of a worker pod. Default: 2 × podMemory. */
  spillStorage: storage.optional(),
};

/** Keys added to `scheduler`. */
export const schedulerHardeningKeys = {
  /** `/tmp` size limit of the scheduler pod. Default 1Gi. */
  scratchStorage: storage.optional(),
  /** Extra sources allowed to reach the dashboard port (the runner always may). Default none. */
  dashboardFrom: z.array(DashboardPeerSchema).default([]),
  /** Create the scheduler's PodDisruptionBudget. Default true; false during node maintenance. */
  disruptionBudget: z.boolean().default(true),
};

/** Keys added to `runner`. */
export const runnerHardeningKeys = {
  /** `/tmp` size limit of runner Job pods. Default 1Gi. */
  scratchStorage: storage.optional(),
};

/** The `network` section. */
export const NetworkSchema = z.strictObject({
  /** Default-deny egress with the allow rules below. Default true. */
  restrictEgress: z.boolean().default(true),
  /** Where the runner reaches the Kubernetes API (its pod watch). */
  apiServer: z
    .strictObject({
      /** Default 0.0.0.0/0 (link-local excluded); narrow it to the API server's address. */
      cidrs: z.array(egressCidr).min(1).default(["0.0.0.0/0"]),
      /** Default [443, 6443] (AKS and most clusters; kind and kubeadm). */
      ports: z.array(port).min(1).default([443, 6443]),
    })
    .prefault({}),
  /** Where the runner reaches the results object store (`az://`, `s3://`, `gs://` results only). */
  objectStore: z
    .strictObject({
      /** Default 0.0.0.0/0 minus private and link-local ranges (public endpoints). */
      cidrs: z.array(egressCidr).min(1).default(["0.0.0.0/0"]),
      /** Default [443]. */
      ports: z.array(port).min(1).default([443]),
    })
    .prefault({}),
  /** More egress for every workspace pod, e.g. a package index a model needs. Default none. */
  extraEgress: z.array(ExtraEgressSchema).default([]),
});

/** `repo[:tag]` or `repo@sha256:<64 hex>` (a tag before the digest is allowed and ignored). */
export const imageRef = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    const problem = imageRefProblem(v);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  });

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function imageRefProblem(image: string): string | undefined {
  if (/\s/.test(image)) return `${JSON.stringify(image)} contains white space`;
  const at = image.indexOf("@");
  if (at < 0) return undefined;
  const digest = image.slice(at + 1);
  if (at === 0) return `${JSON.stringify(image)} has a digest but no repository`;
  if (!DIGEST.test(digest)) {
    return `${JSON.stringify(image)}: the digest must be sha256: followed by 64 lower-case hex digits (npm run images:build prints each pushed image as repo@sha256:...)`;
  }
  return undefined;
}

/** Whether an image reference is pinned by digest. */
export function isDigestRef(image: string): boolean {
  const at = image.indexOf("@");
  return at > 0 && DIGEST.test(image.slice(at + 1));
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

/** The resolved hardening settings of a workspace (`WorkspaceConfig.hardening`). */
export interface Hardening {
  storage: { worker: PodStorage; scheduler: PodStorage; runner: PodStorage };
  /** Extra dashboard sources (the runner always may). */
  dashboardFrom: DashboardPeer[];
  /** Whether the scheduler gets its PodDisruptionBudget. */
  disruptionBudget: boolean;
  egress: {
    restrict: boolean;
    apiServer: { cidrs: string[]; ports: number[] };
    /** Present when some job writes to an object store. */
    objectStore?: { cidrs: string[]; ports: number[] };
    extra: ExtraEgress[];
  };
}

export interface HardeningInput {
  target: "azure" | "kubernetes";
  workers: { podMemory: Memory; spillStorage?: Memory; cpu: string; cpuMillis: number };
  scheduler: {
    scratchStorage?: Memory;
    dashboardFrom: DashboardPeer[];
    disruptionBudget: boolean;
  };
  runner: { scratchStorage?: Memory; ephemeral: boolean; ephemeralResultsBytes: number };
  network: z.output<typeof NetworkSchema>;
  images: { dask: string; runner: string };
  /** Results URIs of every job (an object-store URI opens the object-store egress rule). */
  jobResults: string[];
  azure?: {
    workerPool: { vmSize: string };
    kubernetesVersion?: string;
    /** With a private endpoint, blob traffic goes to the endpoint subnet (a private range). */
    storage?: { privateEndpoint?: boolean };
  };
}

/**
 * The object-store egress destinations. On Azure with `azure.storage.privateEndpoint`, the
 * blob endpoint resolves to the private endpoint's subnet, which the default public-only range
 * excludes, so that subnet is always added.
 */
export function objectStoreEgress(input: Pick<HardeningInput, "target" | "azure" | "network">): {
  cidrs: string[];
  ports: number[];
} {
  const { cidrs, ports } = input.network.objectStore;
  const privateEndpoint =
    input.target === "azure" && input.azure?.storage?.privateEndpoint === true;
  if (!privateEndpoint || cidrs.includes(VNET_PLAN.endpoints)) return { cidrs, ports };
  return { cidrs: [...cidrs, VNET_PLAN.endpoints], ports };
}

/**
 * One warning per image referenced by tag. Emitted by the program (`infra/index.ts`), not by
 * config validation: every stack that has not pinned its images yet sees it on each run.
 */
export function imageTagWarnings(images: { dask: string; runner: string }): string[] {
  return (["dask", "runner"] as const)
    .filter((key) => !isDigestRef(images[key]))
    .map(
      (key) =>
        `images.${key}: ${images[key]} is a tag, which can be moved to other content without any change here; pin it by digest (images.${key}: <repo>@sha256:<digest>, printed by npm run images:build)`,
    );
}

/** The hardening of a workspace whose keys are all at their defaults (for hand-built configs). */
export function defaultHardening(opts: { podMemoryBytes: number }): Hardening {
  return {
    storage: {
      worker: podStorage(workerSpillBytes({ podMemoryBytes: opts.podMemoryBytes })),
      scheduler: podStorage(DEFAULT_SCRATCH_BYTES),
      runner: podStorage(DEFAULT_SCRATCH_BYTES),
    },
    dashboardFrom: [],
    disruptionBudget: true,
    egress: {
      restrict: true,
      apiServer: NetworkSchema.parse({}).apiServer,
      objectStore: NetworkSchema.parse({}).objectStore,
      extra: [],
    },
  };
}

/** Every decision of this module, with the problems and warnings it found. */
export function resolveHardening(input: HardeningInput): {
  hardening: Hardening;
  problems: Problem[];
  warnings: string[];
} {
  const problems: Problem[] = [];
  const warnings: string[] = [];
  const worker = podStorage(
    workerSpillBytes({
      podMemoryBytes: input.workers.podMemory.bytes,
      spillStorage: input.workers.spillStorage,
    }),
  );
  const runner = podStorage(
    input.runner.scratchStorage?.bytes ?? DEFAULT_SCRATCH_BYTES,
    input.runner.ephemeral ? input.runner.ephemeralResultsBytes : 0,
  );
  const scheduler = podStorage(input.scheduler.scratchStorage?.bytes ?? DEFAULT_SCRATCH_BYTES);

  if (!input.scheduler.disruptionBudget) {
    warnings.push(
      "scheduler.disruptionBudget: false: the scheduler has no PodDisruptionBudget, so a node drain or the cluster autoscaler may evict it and lose every in-flight result; set it back to true after the maintenance",
    );
  }
  if (!input.network.restrictEgress) {
    warnings.push(
      "network.restrictEgress: false: workspace pods may reach any address, including the cloud instance-metadata endpoint 169.254.169.254",
    );
  }

  const usesObjectStore = input.jobResults.some((r) => /^(az|abfs|s3|gs|gcs):\/\//.test(r));
  const hardening: Hardening = {
    storage: { worker, scheduler, runner },
    dashboardFrom: input.scheduler.dashboardFrom,
    disruptionBudget: input.scheduler.disruptionBudget,
    egress: {
      restrict: input.network.restrictEgress,
      apiServer: input.network.apiServer,
      ...(usesObjectStore ? { objectStore: objectStoreEgress(input) } : {}),
      extra: input.network.extraEgress,
    },
  };

  if (input.target === "azure" && input.azure !== undefined) {
    problems.push(
      ...nodeDiskProblems({
        vmSize: input.azure.workerPool.vmSize,
        kubernetesVersion: input.azure.kubernetesVersion,
        worker: input.workers,
        workerEphemeral: worker.ephemeral.bytes,
        runnerEphemeral: runner.ephemeral.bytes,
        spillExplicit: input.workers.spillStorage !== undefined,
      }),
    );
  }
  return { hardening, problems, warnings };
}

/**
 * Target azure: the worker pods that fit one worker node by memory and CPU, plus one runner Job
 * pod, must also fit that node's disk. Otherwise the kubelet evicts spilling workers (and the
 * results they hold) long before any of them reaches its own limit.
 */
export function nodeDiskProblems(opts: {
  vmSize: string;
  kubernetesVersion?: string;
  worker: { podMemory: Memory; cpu: string; cpuMillis: number };
  workerEphemeral: number;
  runnerEphemeral: number;
  spillExplicit: boolean;
}): Problem[] {
  const fit = fitPod(
    {
      memoryBytes: opts.worker.podMemory.bytes,
      memoryQuantity: opts.worker.podMemory.quantity,
      cpuMillis: opts.worker.cpuMillis,
      cpuQuantity: opts.worker.cpu,
    },
    opts.vmSize,
    { maxPods: WORKER_POOL_MAX_PODS, kubernetesVersion: opts.kubernetesVersion },
  );
  if (fit.kind !== "fits") return []; // unknown size or too big: vm-sizes.ts reports it
  const osDiskGiB = aksDefaultOsDiskGiB(opts.vmSize);
  if (osDiskGiB === undefined) return [];
  const available = nodeEphemeralBytes(osDiskGiB);
  const needed = fit.podsPerNode * opts.workerEphemeral + opts.runnerEphemeral;
  if (needed <= available) return [];
  const maxSpill = Math.floor(
    (available - opts.runnerEphemeral) / fit.podsPerNode - LOGS_ALLOWANCE_BYTES,
  );
  const gi = (b: number) => `${(b / GiB).toFixed(1)}Gi`;
  return [
    {
      path: "workers.spillStorage",
      message:
        `${fit.podsPerNode} worker pod(s) per ${opts.vmSize} node × ${gi(opts.workerEphemeral)} ephemeral storage` +
        ` + a runner's ${gi(opts.runnerEphemeral)} = ${gi(needed)} does not fit the about ${gi(available)}` +
        ` that its ${osDiskGiB} GiB OS disk leaves for pods` +
        (opts.spillExplicit
          ? ""
          : ` (the default spill space is ${SPILL_PER_POD_MEMORY} × podMemory)`) +
        `; set workers.spillStorage to at most ${maxSpill > 0 ? formatQuantity(Math.floor(maxSpill / MiB) * MiB) : "0"} or pick a VM size with more vCPUs (AKS sizes the OS disk by vCPU count)`,
    },
  ];
}
