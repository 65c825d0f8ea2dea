/**
 * Where the workspace's pods run on AKS, decided once: `AksCluster` labels and taints the worker
 * pool with these values and the program gives the same values to the DaskWorkspace as the worker
 * and job pods' node selector and tolerations. Pure data, no Pulumi.
 */
import type { AzureWorkerPoolConfig } from "../types.js";

/** A Kubernetes toleration (the subset of `core/v1 Toleration` we use). */
export interface Toleration {
  key: string;
  operator: "Equal" | "Exists";
  value?: string;
  effect: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
}

/** A node taint as AKS takes it in `nodeTaints`: `key=value:Effect`. */
export interface Taint {
  key: string;
  value: string;
  effect: Toleration["effect"];
}

/** The label every worker-pool node carries; worker and job pods select it. */
export const WORKER_POOL_LABEL = { key: "dask-workspace/pool", value: "workers" } as const;

/**
 * The worker pool is tainted so that nothing else lands there: CoreDNS, metrics-server and the
 * scheduler stay on the system pool, a worker node's room is what `vm-sizes.ts` computes, and the
 * autoscaler can empty and remove a worker node once its Dask workers are gone.
 */
export const WORKER_POOL_TAINT: Taint = {
  key: "dask-workspace/pool",
  value: "workers",
  effect: "NoSchedule",
};

/**
 * The taint AKS puts on every spot node (Microsoft Learn, "Add an Azure Spot node pool to an AKS
 * cluster"). We declare it ourselves too: AKS adds it anyway, and declaring it keeps the pool's
 * desired state equal to the real one.
 */
export const SPOT_TAINT: Taint = {
  key: "kubernetes.azure.com/scalesetpriority",
  value: "spot",
  effect: "NoSchedule",
};

/** `key=value:Effect`, the AKS `nodeTaints` syntax. */
export function formatTaint(t: Taint): string {
  return `${t.key}=${t.value}:${t.effect}`;
}

/** The taints of the worker pool. */
export function workerPoolTaints(pool: Pick<AzureWorkerPoolConfig, "spot">): Taint[] {
  return pool.spot ? [WORKER_POOL_TAINT, SPOT_TAINT] : [WORKER_POOL_TAINT];
}

/** Node selector and tolerations that put a pod on the worker pool (workers and runner jobs). */
export interface NodePlacement {
  nodeSelector: Record<string, string>;
  tolerations: Toleration[];
}

/** Placement on the worker pool: select its label, tolerate each of its taints. */
export function workerPoolPlacement(pool: Pick<AzureWorkerPoolConfig, "spot">): NodePlacement {
  return {
    nodeSelector: { [WORKER_POOL_LABEL.key]: WORKER_POOL_LABEL.value },
    tolerations: workerPoolTaints(pool).map((t) => ({
      key: t.key,
      operator: "Equal",
      value: t.value,
      effect: t.effect,
    })),
  };
}

/**
 * The system pool's taint (AKS's documented way to keep application pods off system nodes):
 * only pods that tolerate it run there, i.e. AKS's own add-ons and the Dask scheduler.
 */
export const SYSTEM_POOL_TAINT: Taint = {
  key: "CriticalAddonsOnly",
  value: "true",
  effect: "NoSchedule",
};

/** The label AKS puts on every node of a System-mode pool. */
export const SYSTEM_POOL_LABEL = { key: "kubernetes.azure.com/mode", value: "system" } as const;

/**
 * Placement of the Dask scheduler: on the system pool, tolerating its taint. The scheduler holds
 * the cluster's whole task state, so it stays off the worker pool (spot evictions, autoscaler
 * scale-downs) and on the always-on, non-spot system pool; it is small (docs/azure.md).
 */
export function systemPoolPlacement(): NodePlacement {
  return {
    nodeSelector: { [SYSTEM_POOL_LABEL.key]: SYSTEM_POOL_LABEL.value },
    tolerations: [
      {
        key: SYSTEM_POOL_TAINT.key,
        operator: "Equal",
        value: SYSTEM_POOL_TAINT.value,
        effect: SYSTEM_POOL_TAINT.effect,
      },
    ],
  };
}
