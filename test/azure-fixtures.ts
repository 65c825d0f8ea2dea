/**
 * A validated `target: azure` WorkspaceConfig for the Azure tests, built by hand so the pure
 * Azure functions can be tested without the config parser.
 */
import { defaultAzureSecurity } from "../infra/config-azure-security.js";
import { defaultHardening } from "../infra/config-security.js";
import type { AzureConfig, WorkspaceConfig } from "../infra/types.js";

const Gi = 1024 ** 3;
const Mi = 1024 ** 2;

/** `"16Gi"` / `"3584Mi"` → the `Memory` shape of WorkspaceConfig. */
export function mem(quantity: string): { bytes: number; quantity: string } {
  const m = /^(\d+)(Gi|Mi)$/.exec(quantity);
  if (!m) throw new Error(`test fixture: unsupported quantity ${quantity}`);
  return { bytes: Number(m[1]) * (m[2] === "Gi" ? Gi : Mi), quantity };
}

export interface FixtureOverrides {
  podMemory?: string;
  cpu?: string;
  cpuMillis?: number;
  replicas?: number;
  autoscaling?: { enabled: boolean; maxReplicas: number };
  schedulerMemory?: string;
  schedulerCpu?: string;
  azure?: Partial<Omit<AzureConfig, "workerPool">> & {
    workerPool?: Partial<AzureConfig["workerPool"]>;
  };
  target?: WorkspaceConfig["target"];
  runnerResults?: string;
  /** Job name → results URI. */
  jobs?: Record<string, string>;
}

export function azureConfig(o: FixtureOverrides = {}): WorkspaceConfig {
  const podMemory = mem(o.podMemory ?? "12Gi");
  const nprocs = 2;
  const perProcess = Math.floor((podMemory.bytes - 512 * Mi) / nprocs);
  const cpu = o.cpu ?? "3";
  const azure: AzureConfig = {
    location: "westeurope",
    systemPool: { vmSize: "Standard_D2s_v5", count: 1 },
    registrySku: "Basic",
    ...defaultAzureSecurity(),
    ...o.azure,
    workerPool: {
      vmSize: "Standard_D4s_v5",
      minCount: 0,
      maxCount: 5,
      spot: false,
      ...o.azure?.workerPool,
    },
  };
  return {
    target: o.target ?? "azure",
    namespace: "dask",
    images: {
      dask: "example.azurecr.io/dask-workspace/dask:0.1.0",
      runner: "example.azurecr.io/dask-workspace/runner:0.1.0",
      pullPolicy: "IfNotPresent",
    },
    scheduler: {
      port: 8786,
      dashboardPort: 8787,
      cpu: o.schedulerCpu ?? "1",
      memory: mem(o.schedulerMemory ?? "2Gi"),
    },
    workers: {
      replicas: o.replicas ?? 2,
      nprocs,
      threadsPerProcess: 1,
      podMemory,
      memoryPerProcess: { bytes: perProcess, quantity: `${perProcess}` },
      headroom: { bytes: podMemory.bytes - nprocs * perProcess, quantity: "512Mi" },
      cpu,
      cpuMillis: o.cpuMillis ?? Number(cpu) * 1000,
      memoryThresholds: { target: 0.6, spill: 0.7, pause: 0.8, terminate: 0.95 },
      saturation: 1,
      allowedFailures: 3,
      mallocTrimThreshold: 65536,
      retireTimeoutSeconds: 120,
    },
    autoscaling: {
      enabled: o.autoscaling?.enabled ?? false,
      minReplicas: 1,
      maxReplicas: o.autoscaling?.maxReplicas ?? 4,
      targetCpuUtilization: 80,
      scaleDown: { stabilizationWindowSeconds: 600, podsPerPeriod: 1, periodSeconds: 120 },
    },
    runner: {
      serviceAccountName: "dask-runner",
      mode: "window",
      window: "auto",
      batchSize: 200,
      chunking: "auto",
      results: o.runnerResults ?? "az://results",
      resultsVolume: {
        size: mem("10Gi"),
        accessMode: "ReadWriteOnce",
        retainOnDelete: true,
      },
      ephemeral: false,
      cpu: "1",
      memory: mem("2Gi"),
    },
    jobs: Object.entries(o.jobs ?? {}).map(([name, results]) => ({
      name,
      studyPath: "examples/studies/sir-grid.yaml",
      studyText: "name: sir-grid\n",
      results,
      mode: "window" as const,
      window: "auto" as const,
      batchSize: 200,
      chunking: "auto",
      backoffLimit: 2,
      ttlSecondsAfterFinished: 86400,
      activeDeadlineSeconds: 86400,
    })),
    azure,
    hardening: defaultHardening({ podMemoryBytes: podMemory.bytes }),
  };
}
