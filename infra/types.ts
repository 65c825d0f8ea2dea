/**
 * The validated, defaults-resolved workspace configuration.
 *
 * This is the one typed shape that flows from `infra/config.ts` (which reads and validates the
 * stack config with zod) into every consumer: the DaskWorkspace component (`infra/workspace/`),
 * the AksCluster component (`infra/azure/`) and the local launcher (`infra/local/`).
 * Memory is always in **bytes** here (exact integers); the original Kubernetes quantity string is
 * kept beside it where a manifest needs to show it.
 */
import type { AzureSecurityConfig } from "./config-azure-security.js";
import type { Hardening } from "./config-security.js";
import type { AutoscalingMode, DaskScalingConfig, MonitoringConfig } from "./config-autoscaling.js";
import type { TlsConfig } from "./config-tls.js";

/** Bytes, as an exact integer. */
export type Bytes = number;

/** A memory amount as both the user's Kubernetes quantity and its exact byte count. */
export interface Memory {
  /** Exact bytes (integer). */
  bytes: Bytes;
  /** Canonical Kubernetes quantity for manifests, e.g. `16Gi` or `3584Mi`. */
  quantity: string;
}

/** Dask worker memory thresholds, fractions of the per-process memory limit. */
export interface MemoryThresholds {
  /** `distributed.worker.memory.target` (start spilling managed memory). */
  target: number;
  /** `distributed.worker.memory.spill` (spill based on process memory). */
  spill: number;
  /** `distributed.worker.memory.pause` (stop running new tasks). */
  pause: number;
  /** `distributed.worker.memory.terminate` (the nanny restarts the worker process). */
  terminate: number;
}

/** Worker process recycling (`dask worker --lifetime ...`). Durations are Dask duration strings. */
export interface WorkerLifetime {
  /** `--lifetime`, e.g. `"1h"`. */
  duration: string;
  /** `--lifetime-stagger`, e.g. `"5m"`. */
  stagger: string;
  /** `--lifetime-restart`: the nanny starts a fresh process after retirement. */
  restart: boolean;
}

export interface WorkersConfig {
  /** Worker pods (Deployment replicas when autoscaling is off; initial size otherwise). */
  replicas: number;
  /** Dask worker processes per pod (`--nworkers`). */
  nprocs: number;
  /** Threads per process (`--nthreads`). */
  threadsPerProcess: number;
  /** The pod's memory request = limit. */
  podMemory: Memory;
  /** Explicit per-process `--memory-limit` (rendered as an exact byte count). */
  memoryPerProcess: Memory;
  /** podMemory − nprocs × memoryPerProcess, left for the nanny host process and overshoot. */
  headroom: Memory;
  /** CPU request = limit, Kubernetes quantity (`"2"`, `"1500m"`). */
  cpu: string;
  /** Same CPU in millicores. */
  cpuMillis: number;
  /** Process recycling; undefined disables it. */
  lifetime?: WorkerLifetime;
  memoryThresholds: MemoryThresholds;
  /** `distributed.scheduler.worker-saturation`; applied on the scheduler. */
  saturation: number | "inf";
  /** `distributed.scheduler.allowed-failures`. */
  allowedFailures: number;
  /** `MALLOC_TRIM_THRESHOLD_` in bytes for every worker process. */
  mallocTrimThreshold: number;
  /** Seconds the preStop retirement may take; the grace period is derived from it. */
  retireTimeoutSeconds: number;
}

export interface SchedulerConfig {
  /** Scheduler comm port (default 8786). */
  port: number;
  /** Dashboard / HTTP port (default 8787). */
  dashboardPort: number;
  cpu: string;
  memory: Memory;
}

export interface ImagesConfig {
  /** Image for the scheduler and the workers (`images/dask.Dockerfile`). */
  dask: string;
  /** Image for the runner Jobs (`images/runner.Dockerfile`). */
  runner: string;
  pullPolicy: "Always" | "IfNotPresent" | "Never";
}

export interface ScaleDownBehaviour {
  /** HPA scale-down stabilization window, seconds. */
  stabilizationWindowSeconds: number;
  /** At most this many pods removed per period. */
  podsPerPeriod: number;
  periodSeconds: number;
}

export interface AutoscalingConfig {
  enabled: boolean;
  minReplicas: number;
  maxReplicas: number;
  /** Average CPU utilisation target, percent. */
  targetCpuUtilization: number;
  scaleDown: ScaleDownBehaviour;
  /** `dask` (KEDA ScaledObject) or `cpu` (CPU HPA); absent means cpu (infra/config-autoscaling.ts). */
  mode?: AutoscalingMode;
  /** The dask mode's settings (always set by parseWorkspaceConfig). */
  dask?: DaskScalingConfig;
}

export type RunnerMode = "window" | "batch";

/** `--chunking`: pack short replicates into Dask tasks, or one task per replicate. */
export type RunnerChunking = "auto" | "off";

export interface RunnerConfig {
  serviceAccountName: string;
  mode: RunnerMode;
  window: "auto" | number;
  batchSize: number;
  chunking: RunnerChunking;
  /** Seconds a packed task aims at; absent: the runner's default. */
  chunkSeconds?: number;
  /** Default results URI for jobs: a path under `/results`, or `az://`, `s3://`, `gs://`. */
  results: string;
  /** The results volume: a PersistentVolumeClaim mounted at `/results` in every runner Job. */
  resultsVolume: ResultsVolumeConfig;
  /** Secret whose keys become the runner's environment (object store credentials). */
  resultsSecret?: string;
  /** Results outside the volume go to an emptyDir (lost with the pod); validation warned. */
  ephemeral: boolean;
  cpu: string;
  memory: Memory;
}

export interface ResultsVolumeConfig {
  /** Requested size. */
  size: Memory;
  /** StorageClass; the cluster's default when absent. */
  storageClass?: string;
  accessMode: "ReadWriteOnce" | "ReadWriteMany";
  /** Pulumi's `retainOnDelete` on the claim and the namespace: results outlive the workspace. */
  retainOnDelete: boolean;
}

/** A study's bundle (see `infra/workspace/bundle.ts`). */
export interface JobBundle {
  /** Selected files, sorted by relative POSIX path. */
  files: Array<{ path: string; size: number; base64: string }>;
  totalBytes: number;
  /** sha256 hex: the study's code identity. */
  hash: string;
}

export interface JobConfig {
  /** The `jobs.<name>` key; used in resource names. */
  name: string;
  /** Path of the study file as written in the stack config. */
  studyPath: string;
  /** The study file's contents (YAML or JSON), shipped in a ConfigMap. */
  studyText: string;
  /** The study folder's files (the study file included); absent: the study file alone. */
  bundle?: JobBundle;
  results: string;
  mode: RunnerMode;
  window: "auto" | number;
  batchSize: number;
  chunking: RunnerChunking;
  /** Seconds a packed task aims at; absent: the runner's default. */
  chunkSeconds?: number;
  backoffLimit: number;
  ttlSecondsAfterFinished: number;
  activeDeadlineSeconds: number;
}

export interface AzurePoolConfig {
  vmSize: string;
  count: number;
}

export interface AzureWorkerPoolConfig {
  vmSize: string;
  minCount: number;
  maxCount: number;
  spot: boolean;
}

/** Plus the security baseline keys (Entra ID, API server, upgrades, monitoring, storage). */
export interface AzureConfig extends AzureSecurityConfig {
  location: string;
  /** Use an existing resource group by this name; create one when absent. */
  resourceGroupName?: string;
  kubernetesVersion?: string;
  systemPool: AzurePoolConfig;
  workerPool: AzureWorkerPoolConfig;
  registrySku: "Basic" | "Standard" | "Premium";
  /**
   * Microsoft Entra ID group object ids whose members become cluster admins (Kubernetes
   * cluster-admin and the "Azure Kubernetes Service RBAC Cluster Admin" role).
   */
  adminGroupObjectIds?: string[];
  /**
   * Disable AKS local accounts (static admin credentials). Default: true with Entra ID
   * (`entraId.enabled`, on by default); AKS refuses it without Entra ID integration.
   */
  disableLocalAccounts?: boolean;
}

export type Target = "azure" | "kubernetes";

export interface WorkspaceConfig {
  target: Target;
  /** Kubernetes namespace for everything the workspace creates. */
  namespace: string;
  /** target kubernetes: path to a kubeconfig; the current one when absent. */
  kubeconfig?: string;
  /** target kubernetes: kubeconfig context; the current one when absent. */
  context?: string;
  images: ImagesConfig;
  scheduler: SchedulerConfig;
  workers: WorkersConfig;
  autoscaling: AutoscalingConfig;
  runner: RunnerConfig;
  jobs: JobConfig[];
  /** Present when target is `azure`. */
  azure?: AzureConfig;
  /** Ephemeral storage, egress, dashboard sources, PDB switch (infra/config-security.ts). */
  hardening: Hardening;
  /** Dask TLS (`infra/config-tls.ts`); absent means off. */
  tls?: TlsConfig;
  /** Prometheus scraping (infra/config-autoscaling.ts); absent means off. */
  monitoring?: MonitoringConfig;
}
