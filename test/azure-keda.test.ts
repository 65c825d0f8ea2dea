/**
 * Target azure, autoscaling mode dask: the AKS KEDA add-on is on exactly when the workspace has a
 * ScaledObject (the stack's own azure program path: newAksCluster → AksCluster).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { azureMockCall, azureMockResource } from "../infra/azure/mocks.js";
import { usesKeda } from "../infra/workspace/keda.js";
import { workspaceConfig } from "./helpers/config.js";
import {
  findResource,
  inputs,
  installRecordingMocks,
  type RecordedResource,
  recordDuring,
  type RecordingMocks,
} from "./helpers/pulumi.js";

const CLUSTER = "azure-native:containerservice:ManagedCluster";
let recording: RecordingMocks;

beforeAll(async () => {
  recording = await installRecordingMocks("dev", {
    resource: azureMockResource,
    call: azureMockCall,
  });
});

async function cluster(autoscaling: Record<string, unknown>): Promise<RecordedResource[]> {
  const { newAksCluster } = await import("../infra/azure/target.js");
  const cfg = workspaceConfig({
    target: "azure",
    azure: { location: "westeurope", workerPool: { vmSize: "Standard_E4s_v5", minCount: 0 } },
    workers: { nprocs: 2, podMemory: "8Gi", cpu: "2" },
    autoscaling,
  });
  const { resources } = await recordDuring(recording, () => newAksCluster("dask", cfg));
  return resources;
}

describe("AKS KEDA add-on", () => {
  it("is on in mode dask (the default on azure)", async () => {
    const resources = await cluster({ enabled: true, maxReplicas: 3 });
    const aks = inputs(findResource(resources, CLUSTER, "dask-aks"));
    expect(aks.workloadAutoScalerProfile).toEqual({ keda: { enabled: true } });
  });

  it("stays off for a CPU HPA and without autoscaling, as before", async () => {
    for (const autoscaling of [{ enabled: true, targetCpuUtilization: 80 }, { enabled: false }]) {
      const resources = await cluster(autoscaling);
      const aks = inputs(findResource(resources, CLUSTER, "dask-aks"));
      expect(aks.workloadAutoScalerProfile).toBeUndefined();
    }
    expect(
      usesKeda(workspaceConfig({ autoscaling: { enabled: true, targetCpuUtilization: 50 } })),
    ).toBe(false);
  });
});
