/**
 * The whole `target: azure` program, offline: the real `infra/index.ts` evaluated under Pulumi's
 * mock runtime by `npm run render`, in-process for the dev stack and as a real process for other
 * azure stacks (a spot/Entra ID stack, and a pod too big for its VM).
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { render } from "../infra/render.js";
import { PROJECT_ROOT } from "./helpers/config.js";

const TSX = join(PROJECT_ROOT, "node_modules", ".bin", "tsx");

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "azure-program-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

type AzureFile = { type: string; name: string; inputs: Record<string, any> };

async function azureFiles(out: string): Promise<Map<string, AzureFile>> {
  const files = await readdir(join(out, "azure"));
  const byName = new Map<string, AzureFile>();
  for (const f of files) {
    const r = JSON.parse(await readFile(join(out, "azure", f), "utf8")) as AzureFile;
    byName.set(`${r.type} ${r.name}`, r);
  }
  return byName;
}

async function manifest(out: string, file: string): Promise<any> {
  return parse(await readFile(join(out, "kubernetes", file), "utf8"));
}

/** A stack file with these dask-workspace keys (written to the temp dir). */
async function stackFile(name: string, raw: Record<string, unknown>): Promise<string> {
  const path = join(tmp, `Pulumi.${name}.yaml`);
  const config = Object.fromEntries(
    Object.entries(raw).map(([k, v]) => [`dask-workspace:${k}`, v]),
  );
  await writeFile(path, stringify({ config }));
  return path;
}

describe("the dev stack (Pulumi.dev.yaml), evaluated in-process", () => {
  let out: string;
  beforeAll(async () => {
    out = join(tmp, "dev");
    await render({ stack: "dev", configFile: join(PROJECT_ROOT, "Pulumi.dev.yaml"), out });
  });

  it("writes one JSON file {type, name, inputs} per Azure resource", async () => {
    const azure = await azureFiles(out);
    expect([...azure.keys()].sort()).toEqual(
      [
        "azure-native:authorization:RoleAssignment dask-acr-pull",
        "azure-native:authorization:RoleAssignment dask-results-writer",
        "azure-native:containerregistry:Registry daskacr",
        "azure-native:containerservice:AgentPool dask-workers",
        "azure-native:containerservice:ManagedCluster dask-aks",
        "azure-native:managedidentity:FederatedIdentityCredential dask-runner-federation",
        "azure-native:managedidentity:UserAssignedIdentity dask-runner",
        "azure-native:resources:ResourceGroup dask-rg",
        "azure-native:storage:BlobContainer dask-results",
        "azure-native:storage:StorageAccount dasksa",
        // The security baseline (docs/azure.md): upgrade windows, the deployer's admin role,
        // audit logs to Log Analytics, blob soft delete and versioning with version expiry.
        "azure-native:containerservice:MaintenanceConfiguration dask-upgrade-window",
        "azure-native:containerservice:MaintenanceConfiguration dask-node-os-window",
        "azure-native:authorization:RoleAssignment dask-deployer-admin",
        "azure-native:operationalinsights:Workspace dask-logs",
        "azure-native:monitor:DiagnosticSetting dask-audit",
        "azure-native:storage:BlobServiceProperties dask-blob-service",
        "azure-native:storage:ManagementPolicy dask-blob-lifecycle",
      ].sort(),
    );
    for (const r of azure.values()) {
      expect(Object.keys(r)).toEqual(["type", "name", "inputs"]);
    }
  });

  it("renders the cluster and pools the stack asks for", async () => {
    const azure = await azureFiles(out);
    const aks = azure.get("azure-native:containerservice:ManagedCluster dask-aks")!.inputs;
    expect(aks["oidcIssuerProfile"]).toEqual({ enabled: true });
    expect(aks["securityProfile"]).toMatchObject({ workloadIdentity: { enabled: true } });
    expect(aks["networkProfile"]["networkPolicy"]).toBe("cilium");
    expect(aks["location"]).toBe("westeurope");
    const pool = azure.get("azure-native:containerservice:AgentPool dask-workers")!.inputs;
    expect(pool).toMatchObject({
      vmSize: "Standard_D4s_v5",
      enableAutoScaling: true,
      minCount: 1,
      maxCount: 4,
    });
    // The federated subject names the namespace and ServiceAccount the workspace really creates.
    const sa = await manifest(out, "v1-ServiceAccount-dask-dev-dask-runner.yaml");
    const fic = azure.get(
      "azure-native:managedidentity:FederatedIdentityCredential dask-runner-federation",
    )!.inputs;
    expect(fic["subject"]).toBe(
      `system:serviceaccount:${sa.metadata.namespace}:${sa.metadata.name}`,
    );
    const identity = azure.get("azure-native:managedidentity:UserAssignedIdentity dask-runner")!;
    expect(fic["resourceName"]).toBe(identity.name);
  });

  it("annotates the runner ServiceAccount with the identity and labels job pods for it", async () => {
    const sa = await manifest(out, "v1-ServiceAccount-dask-dev-dask-runner.yaml");
    expect(sa.metadata.annotations["azure.workload.identity/client-id"]).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
    const job = await manifest(out, "batch-v1-Job-dask-dev-dask-job-sir-grid.yaml");
    const pod = job.spec.template;
    expect(pod.metadata.labels["azure.workload.identity/use"]).toBe("true");
    expect(pod.spec.serviceAccountName).toBe("dask-runner");
    const runner = pod.spec.containers[0];
    expect(runner.env).toContainEqual({ name: "AZURE_STORAGE_ACCOUNT_NAME", value: "dasksa" });
    expect(runner.command).toContain("az://results/sir-grid");
  });

  it("puts workers and jobs on the worker pool, and the scheduler on the system pool", async () => {
    const worker = await manifest(out, "apps-v1-Deployment-dask-dev-dask-worker.yaml");
    const job = await manifest(out, "batch-v1-Job-dask-dev-dask-job-sir-grid.yaml");
    for (const spec of [worker.spec.template.spec, job.spec.template.spec]) {
      expect(spec.nodeSelector).toEqual({ "dask-workspace/pool": "workers" });
      expect(spec.tolerations).toEqual([
        { key: "dask-workspace/pool", operator: "Equal", value: "workers", effect: "NoSchedule" },
      ]);
    }
    const scheduler = await manifest(out, "apps-v1-Deployment-dask-dev-dask-scheduler.yaml");
    // The system pool is tainted CriticalAddonsOnly; the scheduler is the one pod of ours there.
    expect(scheduler.spec.template.spec.nodeSelector).toEqual({
      "kubernetes.azure.com/mode": "system",
    });
    expect(scheduler.spec.template.spec.tolerations).toEqual([
      { key: "CriticalAddonsOnly", operator: "Equal", value: "true", effect: "NoSchedule" },
    ]);
  });

  it("pulls the images from the stack's registry", async () => {
    const worker = await manifest(out, "apps-v1-Deployment-dask-dev-dask-worker.yaml");
    const job = await manifest(out, "batch-v1-Job-dask-dev-dask-job-sir-grid.yaml");
    expect(worker.spec.template.spec.containers[0].image).toBe(
      "daskacr.azurecr.io/dask-workspace/dask:0.1.0",
    );
    expect(job.spec.template.spec.containers[0].image).toBe(
      "daskacr.azurecr.io/dask-workspace/runner:0.1.0",
    );
  });
});

describe("other azure stacks, through the render CLI", () => {
  const base = {
    target: "azure",
    namespace: "calib",
    workers: { replicas: 2, nprocs: 4, podMemory: "24Gi", cpu: "6" },
    jobs: { sweep: { study: "examples/studies/sir-grid.yaml" } },
  };

  it("renders a spot pool with its taint toleration, Entra ID and no local accounts", async () => {
    const file = await stackFile("spot", {
      ...base,
      azure: {
        location: "northeurope",
        kubernetesVersion: "1.33",
        workerPool: { vmSize: "Standard_E8s_v5", minCount: 0, maxCount: 10, spot: true },
        adminGroupObjectIds: ["3f0e1c2a-0000-4000-8000-000000000001"],
        apiServer: { authorizedIpRanges: ["203.0.113.0/24", "198.51.100.7"] },
      },
      images: { dask: "ghcr.io/example/dask:2026.1", runner: "dask-workspace/runner:0.2.0" },
    });
    const out = join(tmp, "spot");
    const result = await execa(
      TSX,
      ["infra/render.ts", "--stack", "spot", "--config-file", file, "--out", out],
      { cwd: PROJECT_ROOT, reject: false },
    );
    // Nothing on stderr but the images-by-tag warnings (the stack pins no digests).
    expect(
      result.stderr
        .split("\n")
        .filter((l) => l !== "" && !/images\.(dask|runner): .* is a tag/.test(l)),
    ).toEqual([]);
    expect(result.exitCode).toBe(0);
    const azure = await azureFiles(out);
    const aks = azure.get("azure-native:containerservice:ManagedCluster dask-aks")!.inputs;
    expect(aks["disableLocalAccounts"]).toBe(true);
    expect(aks["aadProfile"]).toMatchObject({ managed: true });
    expect(aks["kubernetesVersion"]).toBe("1.33");
    expect(aks["apiServerAccessProfile"]).toEqual({
      enablePrivateCluster: false,
      authorizedIPRanges: ["203.0.113.0/24", "198.51.100.7"],
    });
    // With admin groups, the groups (not the deployer) get the cluster admin role.
    expect(azure.has("azure-native:authorization:RoleAssignment dask-deployer-admin")).toBe(false);
    expect(
      azure.get("azure-native:authorization:RoleAssignment dask-admin-group-0")!.inputs,
    ).toMatchObject({
      principalId: "3f0e1c2a-0000-4000-8000-000000000001",
      principalType: "Group",
    });
    const pool = azure.get("azure-native:containerservice:AgentPool dask-workers")!.inputs;
    expect(pool).toMatchObject({
      vmSize: "Standard_E8s_v5",
      minCount: 0,
      maxCount: 10,
      scaleSetPriority: "Spot",
      scaleSetEvictionPolicy: "Delete",
      spotMaxPrice: -1,
    });
    const worker = await manifest(out, "apps-v1-Deployment-calib-dask-worker.yaml");
    expect(worker.spec.template.spec.tolerations).toContainEqual({
      key: "kubernetes.azure.com/scalesetpriority",
      operator: "Equal",
      value: "spot",
      effect: "NoSchedule",
    });
    // An image with a registry host is kept; a registry-less one goes to the stack's registry.
    expect(worker.spec.template.spec.containers[0].image).toBe("ghcr.io/example/dask:2026.1");
    const job = await manifest(out, "batch-v1-Job-calib-dask-job-sweep.yaml");
    expect(job.spec.template.spec.containers[0].image).toBe(
      "daskacr.azurecr.io/dask-workspace/runner:0.2.0",
    );
    const fic = azure.get(
      "azure-native:managedidentity:FederatedIdentityCredential dask-runner-federation",
    )!.inputs;
    expect(fic["subject"]).toBe("system:serviceaccount:calib:dask-runner");
  });

  it("refuses a worker pod larger than its VM, says how much fits, writes nothing", async () => {
    const file = await stackFile("toobig", {
      ...base,
      workers: { replicas: 2, nprocs: 4, podMemory: "16Gi", cpu: "3" },
      azure: { location: "westeurope", workerPool: { vmSize: "Standard_D4s_v5" } },
    });
    const out = join(tmp, "toobig");
    const result = await execa(
      TSX,
      ["infra/render.ts", "--stack", "toobig", "--config-file", file, "--out", out],
      { cwd: PROJECT_ROOT, reject: false },
    );
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(
      "workers.podMemory: 16Gi does not fit Standard_D4s_v5 (about 14.2Gi allocatable); use Standard_D8s_v5 or podMemory ≤ 14Gi",
    );
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(out)).toBe(false);
  });
});
