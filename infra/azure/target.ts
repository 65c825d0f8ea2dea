/**
 * `target: azure` in the program: the AksCluster first, then what the DaskWorkspace needs to run
 * on it (the cluster's provider, the worker pool placement, workload identity, registry images,
 * the results storage account).
 */
import { usesKeda } from "../workspace/keda.js";
import type { WorkspaceConfig } from "../types.js";
import type { DaskWorkspaceArgs } from "../workspace/index.js";
import { AksCluster } from "./aks-cluster.js";
import { qualifyImage } from "./images.js";
import { systemPoolPlacement, workerPoolPlacement } from "./placement.js";
import { DEFAULT_RESULTS_CONTAINER, parseAzUri } from "./results.js";

/** ServiceAccount annotation naming the managed identity its tokens are exchanged for. */
export const WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id";
/**
 * Pod label that makes the AKS workload identity webhook inject `AZURE_CLIENT_ID`,
 * `AZURE_TENANT_ID` and the projected token file (AKS docs, "Use Microsoft Entra Workload ID").
 */
export const WORKLOAD_IDENTITY_USE_LABEL = "azure.workload.identity/use";

/** The AksCluster for a validated `target: azure` config. */
export function newAksCluster(name: string, cfg: WorkspaceConfig): AksCluster {
  if (cfg.azure === undefined) {
    // config.ts rejects target azure without an azure block; this is a programming error.
    throw new Error("target azure needs the azure block of the config");
  }
  const results = parseAzUri(cfg.runner.results);
  return new AksCluster(name, {
    azure: cfg.azure,
    namespace: cfg.namespace,
    runnerServiceAccountName: cfg.runner.serviceAccountName,
    // The container the jobs write to (config.ts defaults runner.results to az://results).
    resultsContainerName: results?.container ?? DEFAULT_RESULTS_CONTAINER,
    resultsPrefix: results?.prefix ?? "",
    keda: usesKeda(cfg),
  });
}

/** DaskWorkspace arguments that put the workspace on `aks`. */
export function azureWorkspaceArgs(
  cfg: WorkspaceConfig,
  aks: AksCluster,
): Omit<DaskWorkspaceArgs, "config"> {
  const placement = workerPoolPlacement(cfg.azure?.workerPool ?? { spot: false });
  return {
    provider: aks.provider,
    // Workers and runner Jobs on the worker pool; the scheduler on the system pool, whose
    // CriticalAddonsOnly taint it tolerates (nothing else of ours does).
    nodePlacement: { scheduler: systemPoolPlacement(), workers: placement, jobs: placement },
    runnerServiceAccountAnnotations: {
      [WORKLOAD_IDENTITY_CLIENT_ID_ANNOTATION]: aks.identityClientId,
    },
    jobPodLabels: { [WORKLOAD_IDENTITY_USE_LABEL]: "true" },
    images: {
      dask: aks.registryLoginServer.apply((server) => qualifyImage(cfg.images.dask, server)),
      runner: aks.registryLoginServer.apply((server) => qualifyImage(cfg.images.runner, server)),
    },
    // az://container/prefix names no account; the runner (adlfs) reads it from here and
    // authenticates with the workload identity: no keys anywhere.
    runnerEnv: { AZURE_STORAGE_ACCOUNT_NAME: aks.storageAccountName },
  };
}
