/**
 * The AKS security baseline (docs/azure.md, "Security baseline"): the `azure` config keys and
 * their validation (through the real parser), the pure decisions of infra/azure/security.ts, and
 * the recorded inputs of every resource each rule adds, under Pulumi's mock runtime.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { formatProblems, parseWorkspaceConfig, type ParseResult } from "../infra/config.js";
import { parseIpv4Range } from "../infra/config-azure-security.js";
import type { AksCluster as AksClusterType } from "../infra/azure/aks-cluster.js";
import {
  MOCK_SUBSCRIPTION_ID,
  azureMockCall,
  azureMockResource,
  mockGuid,
} from "../infra/azure/mocks.js";
import {
  aadProfile,
  apiServerAccessProfile,
  auditLogCategories,
  clusterAccess,
  maintenanceSchedules,
  maintenanceWindow,
  storageNetwork,
} from "../infra/azure/security.js";
import { encryptionAtHostSupport } from "../infra/azure/vm-sizes.js";
import type { AzureConfig } from "../infra/types.js";
import { azureConfig } from "./azure-fixtures.js";
import { PROJECT_ROOT } from "./helpers/config.js";
import {
  type RecordedResource,
  findResource,
  installRecordingMocks,
  recordDuring,
  unwrap,
} from "./helpers/pulumi.js";

const GROUP = "3f0e1c2a-0000-4000-8000-000000000001";
const CLUSTER_ADMIN = `/subscriptions/${MOCK_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b`;
const NETWORK_CONTRIBUTOR = `/subscriptions/${MOCK_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/4d97b98b-1d4f-4787-a291-c67834d212e7`;

// ---------------------------------------------------------------------------------------------
// Config keys and validation, through the real parser
// ---------------------------------------------------------------------------------------------

function parse(azure: Record<string, unknown>): ParseResult {
  return parseWorkspaceConfig(
    { target: "azure", azure: { location: "westeurope", ...azure } },
    { baseDir: PROJECT_ROOT, stack: "test" },
  );
}
function problemsOf(azure: Record<string, unknown>): string[] {
  const r = parse(azure);
  if (r.ok) throw new Error(`accepted: ${JSON.stringify(azure)}`);
  return r.problems.map((p) => `${p.path}: ${p.message}`);
}
function accepted(azure: Record<string, unknown>): { azure: AzureConfig; warnings: string[] } {
  const r = parse(azure);
  if (!r.ok) throw new Error(formatProblems(r.problems));
  return { azure: r.config.azure!, warnings: r.warnings };
}

describe("config: secure defaults", () => {
  it("turns on Entra ID, Azure RBAC, patch upgrades, a window, image cleaner, audit logs, blob protection", () => {
    const { azure } = accepted({});
    expect(azure.entraId).toEqual({ enabled: true, deployerPrincipalType: "User" });
    expect(azure.disableLocalAccounts).toBe(true);
    expect(azure.apiServer).toEqual({ privateCluster: false });
    expect(azure.upgrades).toEqual({
      channel: "patch",
      nodeOsChannel: "NodeImage",
      maintenanceWindow: {
        enabled: true,
        day: "Sunday",
        startHour: 0,
        durationHours: 4,
        utcOffset: "+00:00",
        intervalWeeks: 1,
      },
    });
    expect(azure.monitoring).toEqual({
      auditLogs: "admin",
      retentionDays: 30,
      containerInsights: false,
      prometheus: false,
    });
    expect(azure.defender).toBe(false);
    expect(azure.azurePolicy).toBe(false);
    expect(azure.imageCleaner).toEqual({ enabled: true, intervalHours: 168 });
    expect(azure.encryptionAtHost).toBe(false);
    expect(azure.storage).toEqual({ softDeleteDays: 7, versioning: true, privateEndpoint: false });
  });

  it("warns when the API server is open to the internet, and not when it is limited", () => {
    const open = accepted({}).warnings.filter((w) => w.startsWith("azure.apiServer:"));
    expect(open).toEqual([
      "azure.apiServer: the Kubernetes API server is reachable from the whole internet (Entra ID still guards it); set azure.apiServer.authorizedIpRanges to your addresses or azure.apiServer.privateCluster: true",
    ]);
    for (const apiServer of [{ authorizedIpRanges: ["203.0.113.7"] }, { privateCluster: true }]) {
      expect(
        accepted({ apiServer }).warnings.filter((w) => w.startsWith("azure.apiServer:")),
      ).toEqual([]);
    }
    expect(accepted({ apiServer: { authorizedIpRanges: ["0.0.0.0/0"] } }).warnings).toContain(
      "azure.apiServer.authorizedIpRanges: a /0 range allows every address, which is the same as no restriction",
    );
  });

  it("warns that a private cluster is deployed from inside its network, and about dead keys", () => {
    expect(accepted({ apiServer: { privateCluster: true } }).warnings).toContain(
      'azure.apiServer.privateCluster: the API server resolves only inside the cluster\'s virtual network, so run pulumi up and kubectl from a machine connected to it (docs/azure.md, "API server exposure")',
    );
    expect(
      accepted({ storage: { versioning: false, versionRetentionDays: 3 } }).warnings,
    ).toContain(
      "azure.storage.versionRetentionDays: ignored because azure.storage.versioning is false",
    );
  });

  it("warns when Entra ID is switched off", () => {
    const r = accepted({ entraId: { enabled: false } });
    expect(r.azure.disableLocalAccounts).toBe(false);
    expect(
      r.warnings.some((w) => w.startsWith("azure.entraId.enabled: false keeps AKS local accounts")),
    ).toBe(true);
  });
});

describe("config: every rule rejects what AKS or Azure would refuse, with the fix", () => {
  it.each([
    [
      "an address that is no address",
      { apiServer: { authorizedIpRanges: ["203.0.113.300"] } },
      'azure.apiServer.authorizedIpRanges.0: "203.0.113.300" is not an IPv4 address or CIDR range; write it like 203.0.113.7 or 203.0.113.0/24',
    ],
    [
      "a prefix length beyond 32",
      { apiServer: { authorizedIpRanges: ["203.0.113.0/33"] } },
      'azure.apiServer.authorizedIpRanges.0: "203.0.113.0/33" has prefix length /33; it must be 0–32',
    ],
    [
      "authorized ranges on a private cluster",
      { apiServer: { authorizedIpRanges: ["203.0.113.0/24"], privateCluster: true } },
      "azure.apiServer.authorizedIpRanges: cannot be combined with azure.apiServer.privateCluster: true (AKS applies authorized ranges only to a public API server); keep one of the two",
    ],
    [
      "a maintenance window shorter than AKS allows",
      { upgrades: { maintenanceWindow: { durationHours: 2 } } },
      "azure.upgrades.maintenanceWindow.durationHours: 2 is out of range: must be ≥ 4",
    ],
    [
      "an hour that does not exist",
      { upgrades: { maintenanceWindow: { startHour: 24 } } },
      "azure.upgrades.maintenanceWindow.startHour: 24 is out of range: must be ≤ 23",
    ],
    [
      "a misspelt day",
      { upgrades: { maintenanceWindow: { day: "sunday" } } },
      'azure.upgrades.maintenanceWindow.day: "sunday" is not one of "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"; did you mean "Sunday"?',
    ],
    [
      "a UTC offset without minutes",
      { upgrades: { maintenanceWindow: { utcOffset: "+2" } } },
      'azure.upgrades.maintenanceWindow.utcOffset: must look like "+00:00", "+05:30" or "-07:00" (−14:00 to +14:00)',
    ],
    [
      "a patch version the patch channel would move past",
      { kubernetesVersion: "1.33.2" },
      'azure.kubernetesVersion: 1.33.2 pins a patch release, but azure.upgrades.channel "patch" moves the cluster past it and the next pulumi up would try to go back; write "1.33" or set azure.upgrades.channel: none',
    ],
    [
      "a minor version the stable channel would move past",
      { kubernetesVersion: "1.33", upgrades: { channel: "stable" } },
      'azure.kubernetesVersion: 1.33 pins a minor release, but azure.upgrades.channel "stable" upgrades minors too and the next pulumi up would try to go back; remove kubernetesVersion or use channel patch',
    ],
    [
      "no local accounts without Entra ID",
      { entraId: { enabled: false }, disableLocalAccounts: true },
      "azure.disableLocalAccounts: true needs Entra ID: AKS refuses to disable local accounts without it; remove azure.entraId.enabled: false or this key",
    ],
    [
      "Azure RBAC without Entra ID",
      { entraId: { enabled: false, azureRbac: true } },
      "azure.entraId.azureRbac: true needs azure.entraId.enabled: Azure RBAC for Kubernetes works only with AKS-managed Entra ID",
    ],
    [
      "admin groups without Entra ID",
      { entraId: { enabled: false }, adminGroupObjectIds: [GROUP] },
      "azure.adminGroupObjectIds: names Entra ID admin groups, but azure.entraId.enabled is false; remove one of the two",
    ],
    [
      "storage IP rules without a private endpoint",
      { storage: { allowedIpRanges: ["203.0.113.7"] } },
      "azure.storage.allowedIpRanges: closes the account's public endpoint to everything else, and the runner on AKS (same region, where storage IP rules do not apply) could no longer write results; also set azure.storage.privateEndpoint: true",
    ],
    [
      "a closed public endpoint without a private one",
      { storage: { publicNetworkAccess: "Disabled" } },
      "azure.storage.publicNetworkAccess: Disabled leaves the runner no way to the results; also set azure.storage.privateEndpoint: true",
    ],
    [
      "a /32 storage rule",
      { storage: { privateEndpoint: true, allowedIpRanges: ["203.0.113.7/32"] } },
      "azure.storage.allowedIpRanges.0: 203.0.113.7/32: Azure Storage rejects /31 and /32 ranges; write the address without a prefix (203.0.113.7)",
    ],
    [
      "a private range in storage rules",
      { storage: { privateEndpoint: true, allowedIpRanges: ["10.1.0.0/16"] } },
      "azure.storage.allowedIpRanges.0: 10.1.0.0/16 is a private (RFC 1918) range, which storage IP rules cannot allow; the cluster reaches the account through the private endpoint, list only public addresses here",
    ],
    [
      "soft delete beyond a year",
      { storage: { softDeleteDays: 400 } },
      "azure.storage.softDeleteDays: 400 is out of range: must be ≤ 365",
    ],
    [
      "a misspelt key",
      { monitoring: { auditLog: "all" } },
      "azure.monitoring.auditLog: unknown key; did you mean azure.monitoring.auditLogs?",
    ],
    [
      "encryption at host on a legacy size",
      { encryptionAtHost: true, systemPool: { vmSize: "Standard_A4" } },
      "azure.systemPool.vmSize: Standard_A4 does not support encryption at host (azure.encryptionAtHost: true); choose a current size such as Standard_D4s_v5, or turn encryptionAtHost off",
    ],
  ])("%s", (_what, azure, problem) => {
    expect(problemsOf(azure)).toContain(problem);
  });

  it("reports every problem at once", () => {
    const problems = problemsOf({
      apiServer: { authorizedIpRanges: ["nope"], privateCluster: true },
      upgrades: { maintenanceWindow: { durationHours: 30, startHour: -1 } },
      storage: { allowedIpRanges: ["203.0.113.7"] },
    });
    expect(problems.map((p) => p.slice(0, p.indexOf(":")))).toEqual(
      expect.arrayContaining([
        "azure.apiServer.authorizedIpRanges.0",
        "azure.apiServer.authorizedIpRanges",
        "azure.upgrades.maintenanceWindow.durationHours",
        "azure.upgrades.maintenanceWindow.startHour",
        "azure.storage.allowedIpRanges",
      ]),
    );
  });

  it("accepts encryption at host on a supported size, warns on a size it cannot check", () => {
    expect(accepted({ encryptionAtHost: true }).azure.encryptionAtHost).toBe(true);
    const r = accepted({ encryptionAtHost: true, systemPool: { vmSize: "Standard_D2s_v6" } });
    expect(r.warnings).toContain(
      `azure.systemPool.vmSize: whether Standard_D2s_v6 supports encryption at host is not in the VM size table; check with az vm list-skus --size Standard_D2s_v6 --query "[0].capabilities[?name=='EncryptionAtHostSupported']"`,
    );
  });

  it("accepts a private endpoint with the caller's addresses on the public endpoint", () => {
    const { azure } = accepted({
      storage: { privateEndpoint: true, allowedIpRanges: ["203.0.113.7", "198.51.100.0/24"] },
    });
    expect(azure.storage.allowedIpRanges).toEqual(["203.0.113.7", "198.51.100.0/24"]);
  });
});

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

describe("pure decisions", () => {
  const base = azureConfig().azure!;
  const with_ = (o: Partial<AzureConfig>): AzureConfig => ({ ...base, ...o });

  it("parses IPv4 addresses and ranges", () => {
    expect(parseIpv4Range("203.0.113.7")).toEqual({
      ok: true,
      octets: [203, 0, 113, 7],
      prefix: 32,
    });
    expect(parseIpv4Range("10.0.0.0/8")).toEqual({ ok: true, octets: [10, 0, 0, 0], prefix: 8 });
    for (const bad of ["1.2.3", "1.2.3.4/", "1.2.3.4/8/9", "::1", "256.0.0.1", "1.2.3.4/x"]) {
      expect(parseIpv4Range(bad).ok, bad).toBe(false);
    }
  });

  it("makes the deployer the admin unless groups are named (or it is asked for explicitly)", () => {
    expect(clusterAccess(base)).toEqual({
      entraId: true,
      azureRbac: true,
      disableLocalAccounts: true,
      adminGroups: [],
      deployerIsAdmin: true,
    });
    expect(clusterAccess(with_({ adminGroupObjectIds: [GROUP] })).deployerIsAdmin).toBe(false);
    expect(
      clusterAccess(
        with_({
          adminGroupObjectIds: [GROUP],
          entraId: {
            enabled: true,
            azureRbac: true,
            deployerIsAdmin: true,
            deployerPrincipalType: "ServicePrincipal",
          },
        }),
      ).deployerIsAdmin,
    ).toBe(true);
    // Without Azure RBAC the role would grant nothing in the cluster.
    expect(
      clusterAccess(
        with_({ entraId: { enabled: true, azureRbac: false, deployerPrincipalType: "User" } }),
      ).deployerIsAdmin,
    ).toBe(false);
    expect(aadProfile(clusterAccess(with_({ adminGroupObjectIds: [GROUP] })))).toEqual({
      managed: true,
      enableAzureRBAC: true,
      adminGroupObjectIDs: [GROUP],
    });
  });

  it("exposes the API server as configured", () => {
    expect(apiServerAccessProfile(base)).toEqual({
      enablePrivateCluster: false,
      authorizedIPRanges: [],
    });
    expect(apiServerAccessProfile(with_({ apiServer: { privateCluster: true } }))).toEqual({
      enablePrivateCluster: true,
    });
    expect(
      apiServerAccessProfile(
        with_({ apiServer: { privateCluster: false, authorizedIpRanges: ["203.0.113.0/24"] } }),
      ),
    ).toEqual({ enablePrivateCluster: false, authorizedIPRanges: ["203.0.113.0/24"] });
  });

  it("builds the maintenance window and a schedule per channel that is on", () => {
    const w = (o: Partial<AzureConfig["upgrades"]["maintenanceWindow"]>, up = {}) =>
      with_({
        upgrades: {
          ...base.upgrades,
          ...up,
          maintenanceWindow: { ...base.upgrades.maintenanceWindow, ...o },
        },
      });
    expect(maintenanceWindow(w({ day: "Saturday", startHour: 7, utcOffset: "+05:30" }))).toEqual({
      schedule: { weekly: { dayOfWeek: "Saturday", intervalWeeks: 1 } },
      durationHours: 4,
      startTime: "07:00",
      utcOffset: "+05:30",
    });
    expect(maintenanceSchedules(base)).toEqual([
      "aksManagedAutoUpgradeSchedule",
      "aksManagedNodeOSUpgradeSchedule",
    ]);
    expect(maintenanceSchedules(w({}, { channel: "none" }))).toEqual([
      "aksManagedNodeOSUpgradeSchedule",
    ]);
    expect(maintenanceSchedules(w({}, { channel: "none", nodeOsChannel: "Unmanaged" }))).toEqual(
      [],
    );
    expect(maintenanceSchedules(w({ enabled: false }))).toEqual([]);
  });

  it("maps audit levels to control-plane log categories", () => {
    expect(auditLogCategories("admin")).toEqual(["kube-audit-admin"]);
    expect(auditLogCategories("all")).toEqual(["kube-audit"]);
    expect(auditLogCategories("off")).toEqual([]);
  });

  it("closes the storage account's public endpoint only behind a private endpoint", () => {
    expect(storageNetwork(base)).toEqual({ publicNetworkAccess: "Enabled" });
    const pe = { ...base.storage, privateEndpoint: true };
    expect(storageNetwork(with_({ storage: pe }))).toEqual({
      publicNetworkAccess: "Disabled",
      networkRuleSet: { defaultAction: "Deny", bypass: "AzureServices", ipRules: [] },
    });
    expect(storageNetwork(with_({ storage: { ...pe, allowedIpRanges: ["203.0.113.7"] } }))).toEqual(
      {
        publicNetworkAccess: "Enabled",
        networkRuleSet: {
          defaultAction: "Deny",
          bypass: "AzureServices",
          ipRules: [{ iPAddressOrRange: "203.0.113.7", action: "Allow" }],
        },
      },
    );
  });

  it("knows which sizes support encryption at host", () => {
    expect(encryptionAtHostSupport("Standard_D4s_v5")).toBe("supported");
    expect(encryptionAtHostSupport("standard_e16ds_v5")).toBe("supported");
    expect(encryptionAtHostSupport("Standard_F8s_v2")).toBe("supported");
    expect(encryptionAtHostSupport("Standard_A2")).toBe("unsupported");
    expect(encryptionAtHostSupport("Basic_A1")).toBe("unsupported");
    expect(encryptionAtHostSupport("Standard_NC6s_v3")).toBe("unknown");
  });
});

// ---------------------------------------------------------------------------------------------
// Resources under Pulumi's mock runtime
// ---------------------------------------------------------------------------------------------

let recorded: RecordedResource[];
let full: AksClusterType;

beforeAll(async () => {
  const recording = await installRecordingMocks("dev", {
    resource: azureMockResource,
    call: azureMockCall,
  });
  const { AksCluster } = await import("../infra/azure/aks-cluster.js");
  const built = await recordDuring(recording, () => {
    // Every default.
    new AksCluster("base", {
      azure: azureConfig().azure!,
      namespace: "dask",
      runnerServiceAccountName: "dask-runner",
    });
    // Every option on.
    full = new AksCluster("full", {
      azure: azureConfig({
        azure: {
          adminGroupObjectIds: [GROUP],
          entraId: {
            enabled: true,
            azureRbac: true,
            deployerIsAdmin: true,
            deployerPrincipalType: "ServicePrincipal",
          },
          apiServer: { privateCluster: true },
          upgrades: {
            channel: "stable",
            nodeOsChannel: "SecurityPatch",
            maintenanceWindow: {
              enabled: true,
              day: "Saturday",
              startHour: 22,
              durationHours: 6,
              utcOffset: "+02:00",
              intervalWeeks: 2,
            },
          },
          monitoring: {
            auditLogs: "all",
            retentionDays: 90,
            dailyQuotaGb: 2,
            containerInsights: true,
            prometheus: true,
          },
          defender: true,
          azurePolicy: true,
          imageCleaner: { enabled: false, intervalHours: 24 },
          encryptionAtHost: true,
          storage: {
            softDeleteDays: 14,
            versioning: true,
            versionRetentionDays: 30,
            allowedIpRanges: ["203.0.113.0/24"],
            privateEndpoint: true,
          },
        },
      }).azure!,
      namespace: "dask",
      runnerServiceAccountName: "dask-runner",
    });
    // Everything off that can be.
    new AksCluster("bare", {
      azure: azureConfig({
        azure: {
          entraId: { enabled: false, deployerPrincipalType: "User" },
          apiServer: { privateCluster: false, authorizedIpRanges: ["198.51.100.0/24"] },
          upgrades: {
            channel: "none",
            nodeOsChannel: "None",
            maintenanceWindow: { ...azureConfig().azure!.upgrades.maintenanceWindow },
          },
          monitoring: {
            auditLogs: "off",
            retentionDays: 30,
            containerInsights: false,
            prometheus: true,
          },
          storage: { softDeleteDays: 0, versioning: false, privateEndpoint: false },
        },
      }).azure!,
      namespace: "dask",
      runnerServiceAccountName: "dask-runner",
    });
  });
  recorded = built.resources;
});

const get = (type: string, name: string) =>
  findResource(recorded, `azure-native:${type}`, name).inputs as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const has = (type: string, name: string) =>
  recorded.some((r) => r.type === `azure-native:${type}` && r.name === name);
const names = (prefix: string) =>
  recorded
    .filter((r) => r.name.startsWith(`${prefix}-`) || r.name.startsWith(prefix))
    .filter((r) => r.type.startsWith("azure-native:"))
    .map((r) => `${r.type.slice("azure-native:".length)} ${r.name}`)
    .sort();

describe("Entra ID and cluster admins", () => {
  it("gives the deployer the AKS RBAC Cluster Admin role on the cluster only", () => {
    expect(get("authorization:RoleAssignment", "base-deployer-admin")).toEqual({
      principalId: mockGuid("object"),
      principalType: "User",
      roleDefinitionId: CLUSTER_ADMIN,
      scope: `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/base-rg/providers/Microsoft.ContainerService/managedClusters/base-aks`,
    });
  });

  it("gives the configured groups the role, and the deployer too when asked", () => {
    expect(get("authorization:RoleAssignment", "full-admin-group-0")).toMatchObject({
      principalId: GROUP,
      principalType: "Group",
      roleDefinitionId: CLUSTER_ADMIN,
    });
    expect(get("authorization:RoleAssignment", "full-deployer-admin")["principalType"]).toBe(
      "ServicePrincipal",
    );
    expect(get("containerservice:ManagedCluster", "full-aks")["aadProfile"]).toEqual({
      managed: true,
      enableAzureRBAC: true,
      adminGroupObjectIDs: [GROUP],
    });
  });

  it("assigns no admin role and keeps local accounts without Entra ID", () => {
    expect(names("bare").filter((n) => n.includes("admin"))).toEqual([]);
    expect(get("containerservice:ManagedCluster", "bare-aks")["disableLocalAccounts"]).toBe(false);
  });
});

describe("API server, upgrades and maintenance window", () => {
  it("makes the cluster private, or limits it to authorized ranges, or leaves it", () => {
    expect(get("containerservice:ManagedCluster", "full-aks")["apiServerAccessProfile"]).toEqual({
      enablePrivateCluster: true,
    });
    expect(get("containerservice:ManagedCluster", "bare-aks")["apiServerAccessProfile"]).toEqual({
      enablePrivateCluster: false,
      authorizedIPRanges: ["198.51.100.0/24"],
    });
    // Open, and saying so: an empty list clears ranges a previous config had set.
    expect(get("containerservice:ManagedCluster", "base-aks")["apiServerAccessProfile"]).toEqual({
      enablePrivateCluster: false,
      authorizedIPRanges: [],
    });
  });

  it("sets the upgrade channels", () => {
    expect(get("containerservice:ManagedCluster", "base-aks")["autoUpgradeProfile"]).toEqual({
      upgradeChannel: "patch",
      nodeOSUpgradeChannel: "NodeImage",
    });
    expect(get("containerservice:ManagedCluster", "full-aks")["autoUpgradeProfile"]).toEqual({
      upgradeChannel: "stable",
      nodeOSUpgradeChannel: "SecurityPatch",
    });
  });

  it("creates both AKS-named maintenance schedules with the window from config", () => {
    expect(get("containerservice:MaintenanceConfiguration", "base-upgrade-window")).toEqual({
      resourceGroupName: "base-rg",
      resourceName: "base-aks",
      configName: "aksManagedAutoUpgradeSchedule",
      maintenanceWindow: {
        schedule: { weekly: { dayOfWeek: "Sunday", intervalWeeks: 1 } },
        durationHours: 4,
        startTime: "00:00",
        utcOffset: "+00:00",
      },
    });
    expect(get("containerservice:MaintenanceConfiguration", "full-node-os-window")).toMatchObject({
      configName: "aksManagedNodeOSUpgradeSchedule",
      maintenanceWindow: {
        schedule: { weekly: { dayOfWeek: "Saturday", intervalWeeks: 2 } },
        durationHours: 6,
        startTime: "22:00",
        utcOffset: "+02:00",
      },
    });
    expect(names("bare").filter((n) => n.startsWith("containerservice:Maintenance"))).toEqual([]);
  });
});

describe("node pools", () => {
  it("taints the system pool CriticalAddonsOnly", () => {
    for (const n of ["base", "full", "bare"]) {
      const [system] = get("containerservice:ManagedCluster", `${n}-aks`)["agentPoolProfiles"];
      expect(system.nodeTaints).toEqual(["CriticalAddonsOnly=true:NoSchedule"]);
    }
  });

  it("encrypts at host on both pools when asked", () => {
    const [system] = get("containerservice:ManagedCluster", "full-aks")["agentPoolProfiles"];
    expect(system.enableEncryptionAtHost).toBe(true);
    expect(get("containerservice:AgentPool", "full-workers")["enableEncryptionAtHost"]).toBe(true);
    expect(get("containerservice:AgentPool", "base-workers")["enableEncryptionAtHost"]).toBe(false);
  });
});

describe("security and monitoring add-ons", () => {
  const workspaceId = (n: string) =>
    `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/${n}-rg/providers/Microsoft.OperationalInsights/workspaces/${n}-logs`;

  it("sends control-plane audit logs to a Log Analytics workspace", () => {
    expect(get("operationalinsights:Workspace", "base-logs")).toMatchObject({
      sku: { name: "PerGB2018" },
      retentionInDays: 30,
    });
    expect(get("operationalinsights:Workspace", "base-logs")["workspaceCapping"]).toBeUndefined();
    expect(get("operationalinsights:Workspace", "full-logs")).toMatchObject({
      retentionInDays: 90,
      workspaceCapping: { dailyQuotaGb: 2 },
    });
    expect(get("monitor:DiagnosticSetting", "base-audit")).toEqual({
      name: "control-plane-audit",
      resourceUri: `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/base-rg/providers/Microsoft.ContainerService/managedClusters/base-aks`,
      workspaceId: workspaceId("base"),
      logAnalyticsDestinationType: "Dedicated",
      logs: [{ category: "kube-audit-admin", enabled: true }],
    });
    expect(get("monitor:DiagnosticSetting", "full-audit")["logs"]).toEqual([
      { category: "kube-audit", enabled: true },
    ]);
    // Nothing needs a workspace on the bare cluster: none is created.
    expect(has("operationalinsights:Workspace", "bare-logs")).toBe(false);
    expect(has("monitor:DiagnosticSetting", "bare-audit")).toBe(false);
  });

  it("turns on Defender, Azure Policy and Container Insights with the workspace, and image cleaner", () => {
    const full = get("containerservice:ManagedCluster", "full-aks");
    expect(full["securityProfile"]).toEqual({
      workloadIdentity: { enabled: true },
      imageCleaner: { enabled: false, intervalHours: 24 },
      defender: {
        logAnalyticsWorkspaceResourceId: workspaceId("full"),
        securityMonitoring: { enabled: true },
      },
    });
    expect(full["addonProfiles"]).toEqual({
      azurepolicy: { enabled: true },
      omsagent: {
        enabled: true,
        config: { logAnalyticsWorkspaceResourceID: workspaceId("full"), useAADAuth: "true" },
      },
    });
    const base = get("containerservice:ManagedCluster", "base-aks");
    expect(base["securityProfile"]["imageCleaner"]).toEqual({ enabled: true, intervalHours: 168 });
    expect(base["securityProfile"]["defender"]).toEqual({ securityMonitoring: { enabled: false } });
    expect(base["addonProfiles"]).toEqual({
      azurepolicy: { enabled: false },
      omsagent: { enabled: false },
    });
  });

  it("routes Container Insights through a data collection rule associated with the cluster", () => {
    expect(get("monitor:DataCollectionRule", "full-insights-dcr")).toMatchObject({
      kind: "Linux",
      destinations: {
        logAnalytics: [{ name: "ciworkspace", workspaceResourceId: workspaceId("full") }],
      },
      dataFlows: [
        { streams: ["Microsoft-ContainerInsights-Group-Default"], destinations: ["ciworkspace"] },
      ],
    });
    expect(get("monitor:DataCollectionRuleAssociation", "full-insights-dcra")).toEqual({
      associationName: "ContainerInsightsExtension",
      resourceUri: `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/full-rg/providers/Microsoft.ContainerService/managedClusters/full-aks`,
      dataCollectionRuleId: `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/full-rg/providers/Microsoft.Insights/dataCollectionRules/full-insights-dcr`,
    });
  });

  it("runs managed Prometheus into an Azure Monitor workspace", () => {
    expect(get("containerservice:ManagedCluster", "full-aks")["azureMonitorProfile"]).toEqual({
      metrics: { enabled: true },
    });
    expect(get("containerservice:ManagedCluster", "base-aks")["azureMonitorProfile"]).toEqual({
      metrics: { enabled: false },
    });
    const amw = `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/bare-rg/providers/Microsoft.Monitor/accounts/bare-prometheus`;
    expect(get("monitor:DataCollectionRule", "bare-prometheus-dcr")).toMatchObject({
      dataCollectionEndpointId: expect.stringContaining(
        "dataCollectionEndpoints/bare-prometheus-dce",
      ),
      dataSources: {
        prometheusForwarder: [
          {
            name: "PrometheusDataSource",
            streams: ["Microsoft-PrometheusMetrics"],
            labelIncludeFilter: {},
          },
        ],
      },
      destinations: {
        monitoringAccounts: [{ name: "MonitoringAccount1", accountResourceId: amw }],
      },
    });
    expect(get("monitor:DataCollectionRuleAssociation", "bare-prometheus-dcea")).toMatchObject({
      associationName: "configurationAccessEndpoint",
      dataCollectionEndpointId: expect.stringContaining("bare-prometheus-dce"),
    });
    expect(has("monitor:DataCollectionRuleAssociation", "bare-prometheus-dcra")).toBe(true);
    expect(has("monitor:AzureMonitorWorkspace", "base-prometheus")).toBe(false);
  });
});

describe("results storage", () => {
  it("keeps deleted blobs and containers, versions blobs, and expires old versions", () => {
    expect(get("storage:BlobServiceProperties", "base-blob-service")).toEqual({
      resourceGroupName: "base-rg",
      accountName: "basesa",
      blobServicesName: "default",
      deleteRetentionPolicy: { enabled: true, days: 7 },
      containerDeleteRetentionPolicy: { enabled: true, days: 7 },
      isVersioningEnabled: true,
    });
    expect(get("storage:ManagementPolicy", "base-blob-lifecycle")["policy"]).toEqual({
      rules: [
        {
          name: "expire-previous-versions",
          enabled: true,
          type: "Lifecycle",
          definition: {
            filters: { blobTypes: ["blockBlob"] },
            actions: { version: { delete: { daysAfterCreationGreaterThan: 7 } } },
          },
        },
      ],
    });
    expect(
      get("storage:ManagementPolicy", "full-blob-lifecycle")["policy"].rules[0].definition.actions,
    ).toEqual({ version: { delete: { daysAfterCreationGreaterThan: 30 } } });
    expect(get("storage:BlobServiceProperties", "bare-blob-service")).toMatchObject({
      deleteRetentionPolicy: { enabled: false },
      containerDeleteRetentionPolicy: { enabled: false },
      isVersioningEnabled: false,
    });
    expect(has("storage:ManagementPolicy", "bare-blob-lifecycle")).toBe(false);
  });

  it("leaves the public endpoint open without a private endpoint, closes it with one", () => {
    expect(get("storage:StorageAccount", "basesa")["publicNetworkAccess"]).toBe("Enabled");
    expect(get("storage:StorageAccount", "basesa")["networkRuleSet"]).toBeUndefined();
    expect(get("storage:StorageAccount", "fullsa")).toMatchObject({
      publicNetworkAccess: "Enabled",
      networkRuleSet: {
        defaultAction: "Deny",
        bypass: "AzureServices",
        ipRules: [{ iPAddressOrRange: "203.0.113.0/24", action: "Allow" }],
      },
    });
  });

  it("puts the node pools in a network with a blob private endpoint and its DNS zone", async () => {
    const rg = `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/full-rg/providers`;
    const nodes = `${rg}/Microsoft.Network/virtualNetworks/full-vnet/subnets/full-nodes`;
    expect(get("network:VirtualNetwork", "full-vnet")["addressSpace"]).toEqual({
      addressPrefixes: ["10.240.0.0/16"],
    });
    expect(get("network:Subnet", "full-nodes")["addressPrefix"]).toBe("10.240.0.0/22");
    expect(get("network:Subnet", "full-endpoints")["addressPrefix"]).toBe("10.240.4.0/24");
    const [system] = get("containerservice:ManagedCluster", "full-aks")["agentPoolProfiles"];
    expect(system.vnetSubnetID).toBe(nodes);
    expect(get("containerservice:AgentPool", "full-workers")["vnetSubnetID"]).toBe(nodes);
    expect(get("network:PrivateEndpoint", "full-blob-pe")).toMatchObject({
      subnet: { id: `${rg}/Microsoft.Network/virtualNetworks/full-vnet/subnets/full-endpoints` },
      privateLinkServiceConnections: [
        {
          name: "blob",
          groupIds: ["blob"],
          privateLinkServiceId: `${rg}/Microsoft.Storage/storageAccounts/fullsa`,
        },
      ],
    });
    expect(get("privatedns:PrivateZone", "full-blob-dns")["privateZoneName"]).toBe(
      "privatelink.blob.core.windows.net",
    );
    expect(get("privatedns:VirtualNetworkLink", "full-blob-dns-link")).toMatchObject({
      privateZoneName: "privatelink.blob.core.windows.net",
      virtualNetwork: { id: `${rg}/Microsoft.Network/virtualNetworks/full-vnet` },
      registrationEnabled: false,
    });
    expect(get("network:PrivateDnsZoneGroup", "full-blob-pe-dns")["privateDnsZoneConfigs"]).toEqual(
      [
        {
          name: "blob",
          privateDnsZoneId: `${rg}/Microsoft.Network/privateDnsZones/privatelink.blob.core.windows.net`,
        },
      ],
    );
    // The cluster's identity may manage the node subnet it did not create.
    expect(get("authorization:RoleAssignment", "full-aks-network")).toEqual({
      principalId: mockGuid("full-aks/identity/principal"),
      principalType: "ServicePrincipal",
      roleDefinitionId: NETWORK_CONTRIBUTOR,
      scope: nodes,
    });
    // No network of ours without a private endpoint.
    expect(names("base").filter((n) => n.startsWith("network:"))).toEqual([]);
    expect(await unwrap(full.storageAccountName)).toBe("fullsa");
  });
});
