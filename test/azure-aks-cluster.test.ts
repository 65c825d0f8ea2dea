/**
 * AksCluster under Pulumi's mock runtime: the recorded inputs of every Azure resource, checked for
 * each security property docs/azure.md asks for, and the resource names and types
 * pinned so a refactor cannot silently replace live resources.
 */
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import {
  type RecordedResource,
  findResource,
  installRecordingMocks,
  recordDuring,
  unwrap,
} from "./helpers/pulumi.js";
import type { AksCluster as AksClusterType } from "../infra/azure/aks-cluster.js";
import {
  MOCK_SUBSCRIPTION_ID,
  azureMockCall,
  azureMockResource,
  mockGuid,
} from "../infra/azure/mocks.js";
import { azureConfig } from "./azure-fixtures.js";

const calls: { token: string; inputs: Record<string, unknown> }[] = [];

const ACR_PULL = `/subscriptions/${MOCK_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d`;
const BLOB_CONTRIBUTOR = `/subscriptions/${MOCK_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe`;

let recorded: RecordedResource[];
let plain: AksClusterType;
let hardened: AksClusterType;
let open: AksClusterType;

beforeAll(async () => {
  // The project's real name; a call the mocks do not know fails the run.
  const recording = await installRecordingMocks("dev", {
    resource: azureMockResource,
    call: (token, inputs) => {
      calls.push({ token, inputs });
      return azureMockCall(token, inputs);
    },
  });
  const { AksCluster } = await import("../infra/azure/aks-cluster.js");
  const built = await recordDuring(recording, () => {
    // The dev stack's shape: a new resource group, regular VMs, every security default.
    plain = new AksCluster("dask", {
      azure: azureConfig().azure!,
      namespace: "dask",
      runnerServiceAccountName: "dask-runner",
    });
    // Everything switched the other way: existing group, spot, Entra ID admins, Calico.
    hardened = new AksCluster("prod", {
      azure: azureConfig({
        azure: {
          resourceGroupName: "shared-rg",
          kubernetesVersion: "1.33",
          adminGroupObjectIds: ["3f0e1c2a-0000-4000-8000-000000000001"],
          disableLocalAccounts: true,
          registrySku: "Premium",
          workerPool: { vmSize: "Standard_E8s_v5", minCount: 0, maxCount: 20, spot: true },
        },
      }).azure!,
      namespace: "studies",
      runnerServiceAccountName: "runner",
      resultsContainerName: "calibration",
      resultsPrefix: "/2026/",
      networkPolicy: "calico",
    });
    // Entra ID switched off: local accounts, no Azure RBAC, no admin role assignments.
    open = new AksCluster("open", {
      azure: azureConfig({
        azure: { entraId: { enabled: false, deployerPrincipalType: "User" } },
      }).azure!,
      namespace: "dask",
      runnerServiceAccountName: "dask-runner",
    });
  });
  recorded = built.resources;
});

const only = (type: string, name: string) => findResource(recorded, type, name);
const cluster = (n: string) => only("azure-native:containerservice:ManagedCluster", `${n}-aks`);
const pool = (n: string) => only("azure-native:containerservice:AgentPool", `${n}-workers`);

describe("resource names and types (renaming one replaces live infrastructure)", () => {
  it("pins every resource of the plain cluster", () => {
    const mine = recorded
      .filter((r) => r.name.startsWith("dask"))
      .map((r) => `${r.type} ${r.name}`)
      .sort();
    expect(mine).toEqual(
      [
        "dask-workspace:azure:AksCluster dask",
        "azure-native:resources:ResourceGroup dask-rg",
        "azure-native:containerservice:ManagedCluster dask-aks",
        "azure-native:containerservice:AgentPool dask-workers",
        "azure-native:containerregistry:Registry daskacr",
        "azure-native:authorization:RoleAssignment dask-acr-pull",
        "azure-native:storage:StorageAccount dasksa",
        "azure-native:storage:BlobContainer dask-results",
        "azure-native:managedidentity:UserAssignedIdentity dask-runner",
        "azure-native:managedidentity:FederatedIdentityCredential dask-runner-federation",
        "azure-native:authorization:RoleAssignment dask-results-writer",
        "pulumi:providers:kubernetes dask-k8s",
        // The security baseline's defaults (test/azure-security.test.ts checks their inputs).
        "azure-native:containerservice:MaintenanceConfiguration dask-upgrade-window",
        "azure-native:containerservice:MaintenanceConfiguration dask-node-os-window",
        "azure-native:authorization:RoleAssignment dask-deployer-admin",
        "azure-native:operationalinsights:Workspace dask-logs",
        "azure-native:monitor:DiagnosticSetting dask-audit",
        "azure-native:storage:BlobServiceProperties dask-blob-service",
        "azure-native:storage:ManagementPolicy dask-blob-lifecycle",
      ].sort(),
    );
  });

  it("parents the children to the component (URN)", async () => {
    expect(await unwrap(plain.cluster.urn)).toBe(
      "urn:pulumi:dev::dask-workspace::dask-workspace:azure:AksCluster$azure-native:containerservice:ManagedCluster::dask-aks",
    );
  });

  it("uses an existing resource group by name instead of creating one", () => {
    const prod = recorded.filter((r) => r.name.startsWith("prod"));
    expect(prod.some((r) => r.type === "azure-native:resources:ResourceGroup")).toBe(false);
    const azure = prod.filter((r) => r.type.startsWith("azure-native:"));
    expect(azure.length).toBeGreaterThan(0);
    for (const r of azure.filter((r) => "resourceGroupName" in r.inputs)) {
      expect(r.inputs["resourceGroupName"], r.name).toBe("shared-rg");
    }
  });
});

describe("AKS cluster", () => {
  it("enables the OIDC issuer and workload identity", () => {
    for (const n of ["dask", "prod"]) {
      expect(cluster(n).inputs["oidcIssuerProfile"]).toEqual({ enabled: true });
      expect(cluster(n).inputs["securityProfile"]).toMatchObject({
        workloadIdentity: { enabled: true },
      });
    }
  });

  it("runs a network policy engine (Cilium by default)", () => {
    expect(cluster("dask").inputs["networkProfile"]).toMatchObject({
      networkPlugin: "azure",
      networkPluginMode: "overlay",
      networkDataplane: "cilium",
      networkPolicy: "cilium",
    });
    expect(cluster("prod").inputs["networkProfile"]).toMatchObject({
      networkDataplane: "azure",
      networkPolicy: "calico",
    });
  });

  it("has a managed identity and Kubernetes RBAC", () => {
    expect(cluster("dask").inputs["identity"]).toEqual({ type: "SystemAssigned" });
    expect(cluster("dask").inputs["enableRBAC"]).toBe(true);
  });

  it("uses Entra ID with Azure RBAC and no local accounts by default, keeps them without", () => {
    expect(cluster("dask").inputs["disableLocalAccounts"]).toBe(true);
    expect(cluster("dask").inputs["aadProfile"]).toEqual({ managed: true, enableAzureRBAC: true });
    expect(cluster("prod").inputs["disableLocalAccounts"]).toBe(true);
    expect(cluster("prod").inputs["aadProfile"]).toEqual({
      managed: true,
      enableAzureRBAC: true,
      adminGroupObjectIDs: ["3f0e1c2a-0000-4000-8000-000000000001"],
    });
    expect(cluster("open").inputs["disableLocalAccounts"]).toBe(false);
    expect(cluster("open").inputs["aadProfile"]).toBeUndefined();
  });

  it("has only the system pool inline", () => {
    expect(cluster("dask").inputs["agentPoolProfiles"]).toEqual([
      {
        name: "system",
        mode: "System",
        vmSize: "Standard_D2s_v5",
        count: 1,
        maxPods: 110,
        osType: "Linux",
        type: "VirtualMachineScaleSets",
        nodeTaints: ["CriticalAddonsOnly=true:NoSchedule"],
        enableEncryptionAtHost: false,
      },
    ]);
    expect(cluster("prod").inputs["kubernetesVersion"]).toBe("1.33");
  });
});

describe("worker pool", () => {
  it("autoscales between minCount and maxCount on the configured size", () => {
    expect(pool("dask").inputs).toMatchObject({
      agentPoolName: "workers",
      resourceName: "dask-aks",
      mode: "User",
      vmSize: "Standard_D4s_v5",
      enableAutoScaling: true,
      minCount: 0,
      maxCount: 5,
      count: 0,
      maxPods: 30,
      nodeLabels: { "dask-workspace/pool": "workers" },
      nodeTaints: ["dask-workspace/pool=workers:NoSchedule"],
    });
    expect(pool("dask").inputs["scaleSetPriority"]).toBeUndefined();
  });

  it("is a spot pool with the spot taint, Delete eviction and no price cap when spot", () => {
    expect(pool("prod").inputs).toMatchObject({
      vmSize: "Standard_E8s_v5",
      minCount: 0,
      maxCount: 20,
      scaleSetPriority: "Spot",
      scaleSetEvictionPolicy: "Delete",
      spotMaxPrice: -1,
      orchestratorVersion: "1.33",
      nodeTaints: [
        "dask-workspace/pool=workers:NoSchedule",
        "kubernetes.azure.com/scalesetpriority=spot:NoSchedule",
      ],
    });
  });
});

describe("container registry", () => {
  it("has no admin user and no anonymous pull", () => {
    const acr = only("azure-native:containerregistry:Registry", "daskacr");
    expect(acr.inputs).toMatchObject({
      adminUserEnabled: false,
      anonymousPullEnabled: false,
      sku: { name: "Basic" },
    });
    expect(only("azure-native:containerregistry:Registry", "prodacr").inputs["sku"]).toEqual({
      name: "Premium",
    });
  });

  it("lets the kubelet identity pull (AcrPull on the registry)", () => {
    expect(only("azure-native:authorization:RoleAssignment", "dask-acr-pull").inputs).toEqual({
      principalId: mockGuid("dask-aks/kubelet/object"),
      principalType: "ServicePrincipal",
      roleDefinitionId: ACR_PULL,
      scope: `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/dask-rg/providers/Microsoft.ContainerRegistry/registries/daskacr`,
    });
  });
});

describe("results storage", () => {
  it("allows no public blob access, TLS 1.2+, HTTPS only and no shared keys", () => {
    expect(only("azure-native:storage:StorageAccount", "dasksa").inputs).toMatchObject({
      kind: "StorageV2",
      allowBlobPublicAccess: false,
      minimumTlsVersion: "TLS1_2",
      enableHttpsTrafficOnly: true,
      allowSharedKeyAccess: false,
    });
  });

  it("creates a private results container in that account", () => {
    expect(only("azure-native:storage:BlobContainer", "dask-results").inputs).toEqual({
      resourceGroupName: "dask-rg",
      accountName: "dasksa",
      containerName: "results",
      publicAccess: "None",
    });
    expect(only("azure-native:storage:BlobContainer", "prod-results").inputs).toMatchObject({
      containerName: "calibration",
      publicAccess: "None",
    });
  });
});

describe("runner identity", () => {
  it("federates the identity to exactly the runner's ServiceAccount", () => {
    const fic = only(
      "azure-native:managedidentity:FederatedIdentityCredential",
      "dask-runner-federation",
    );
    expect(fic.inputs).toEqual({
      resourceGroupName: "dask-rg",
      resourceName: "dask-runner",
      issuer: `https://westeurope.oic.prod-aks.azure.com/11111111-1111-1111-1111-111111111111/${mockGuid("dask-aks/oidc")}/`,
      subject: "system:serviceaccount:dask:dask-runner",
      audiences: ["api://AzureADTokenExchange"],
    });
    expect(
      only("azure-native:managedidentity:FederatedIdentityCredential", "prod-runner-federation")
        .inputs["subject"],
    ).toBe("system:serviceaccount:studies:runner");
  });

  it("may write blobs in the results container only (Storage Blob Data Contributor)", () => {
    expect(only("azure-native:authorization:RoleAssignment", "dask-results-writer").inputs).toEqual(
      {
        principalId: mockGuid("dask-runner/principal"),
        principalType: "ServicePrincipal",
        roleDefinitionId: BLOB_CONTRIBUTOR,
        scope: `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/dask-rg/providers/Microsoft.Storage/storageAccounts/dasksa/blobServices/default/containers/results`,
      },
    );
  });
});

describe("outputs and the Kubernetes provider", () => {
  it("exports the kubeconfig as a secret", async () => {
    expect(await pulumi.isSecret(plain.kubeconfig)).toBe(true);
    expect(await pulumi.isSecret(hardened.kubeconfig)).toBe(true);
  });

  it("builds the kubeconfig from the cluster's user credentials", async () => {
    const creds = calls.filter(
      (c) => c.token === "azure-native:containerservice:listManagedClusterUserCredentials",
    );
    expect(
      creds
        .map((c) => c.inputs)
        .sort((a, b) => String(a["resourceName"]).localeCompare(String(b["resourceName"]))),
    ).toEqual([
      { resourceGroupName: "dask-rg", resourceName: "dask-aks", format: "exec" },
      { resourceGroupName: "open-rg", resourceName: "open-aks" },
      { resourceGroupName: "shared-rg", resourceName: "prod-aks", format: "exec" },
    ]);
    const kc = parse(await unwrap(open.kubeconfig));
    expect(kc.clusters[0].cluster.server).toBe("https://open-aks.hcp.westeurope.azmk8s.io:443");
    expect(kc.users[0].user["client-certificate-data"]).toBeDefined();
    // Entra ID: kubelogin with the Azure CLI login, never an interactive device code.
    const exec = parse(await unwrap(hardened.kubeconfig)).users[0].user.exec;
    expect(exec.args.slice(-2)).toEqual(["--login", "azurecli"]);
    expect(exec.args).not.toContain("devicecode");
  });

  it("gives the provider that kubeconfig, still marked secret", async () => {
    const provider = only("pulumi:providers:kubernetes", "dask-k8s");
    expect(provider.inputs["kubeconfig"]).toEqual({
      [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig,
      value: await unwrap(plain.kubeconfig),
    });
  });

  it("exports the registry, results URI and identity client id", async () => {
    expect(await unwrap(plain.registryLoginServer)).toBe("daskacr.azurecr.io");
    expect(await unwrap(plain.resultsUri)).toBe("az://results");
    expect(await unwrap(hardened.resultsUri)).toBe("az://calibration/2026");
    expect(await unwrap(plain.identityClientId)).toBe(mockGuid("dask-runner/client"));
    expect(await unwrap(plain.storageAccountName)).toBe("dasksa");
  });
});
