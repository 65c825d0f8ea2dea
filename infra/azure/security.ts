/**
 * The AKS security baseline as pure decisions (docs/azure.md, "Security baseline"): what the
 * validated `azure` config means for the cluster's Entra ID, API server, upgrade, add-on and
 * storage settings. `AksCluster` turns these into resources; tests check them without Pulumi.
 */
import { storagePublicNetworkAccess } from "../config-azure-security.js";
import type { AzureConfig } from "../types.js";
import { SYSTEM_POOL_TAINT, formatTaint } from "./placement.js";

/** The system pool's taint in AKS's `nodeTaints` syntax: `CriticalAddonsOnly=true:NoSchedule`. */
export const CRITICAL_ADDONS_ONLY_TAINT = formatTaint(SYSTEM_POOL_TAINT);

/** Name AKS requires for the cluster auto-upgrade schedule. */
export const AUTO_UPGRADE_SCHEDULE = "aksManagedAutoUpgradeSchedule";
/** Name AKS requires for the node OS upgrade schedule. */
export const NODE_OS_UPGRADE_SCHEDULE = "aksManagedNodeOSUpgradeSchedule";

/** Who signs in and who administers the cluster. */
export interface ClusterAccess {
  /** AKS-managed Entra ID on. */
  entraId: boolean;
  /** Azure RBAC for Kubernetes authorization on. */
  azureRbac: boolean;
  disableLocalAccounts: boolean;
  /** Entra ID groups that are cluster admins (`aadProfile.adminGroupObjectIDs`, and the role). */
  adminGroups: string[];
  /** Whether the deployer gets "Azure Kubernetes Service RBAC Cluster Admin" on the cluster. */
  deployerIsAdmin: boolean;
}

/** The access settings of a validated config (config.ts has rejected the impossible ones). */
export function clusterAccess(
  azure: Pick<AzureConfig, "entraId" | "adminGroupObjectIds" | "disableLocalAccounts">,
): ClusterAccess {
  const entraId = azure.entraId.enabled;
  const adminGroups = entraId ? [...(azure.adminGroupObjectIds ?? [])] : [];
  const azureRbac = entraId && (azure.entraId.azureRbac ?? true);
  return {
    entraId,
    azureRbac,
    // AKS rejects disableLocalAccounts without Entra ID; config.ts reports an explicit true there.
    disableLocalAccounts: entraId && (azure.disableLocalAccounts ?? true),
    adminGroups,
    // Without Azure RBAC the role grants nothing inside the cluster: admins come from the groups.
    deployerIsAdmin: azureRbac && (azure.entraId.deployerIsAdmin ?? adminGroups.length === 0),
  };
}

/** `aadProfile` of the ManagedCluster, or undefined without Entra ID. */
export function aadProfile(
  access: ClusterAccess,
): { managed: true; enableAzureRBAC: boolean; adminGroupObjectIDs?: string[] } | undefined {
  if (!access.entraId) return undefined;
  return {
    managed: true,
    enableAzureRBAC: access.azureRbac,
    ...(access.adminGroups.length > 0 ? { adminGroupObjectIDs: access.adminGroups } : {}),
  };
}

/**
 * `apiServerAccessProfile`, always stated: a public endpoint carries its authorized ranges (an
 * empty list when open, so that removing the key from config really removes the ranges).
 */
export function apiServerAccessProfile(azure: Pick<AzureConfig, "apiServer">): {
  enablePrivateCluster: boolean;
  authorizedIPRanges?: string[];
} {
  const { authorizedIpRanges, privateCluster } = azure.apiServer;
  if (privateCluster) return { enablePrivateCluster: true };
  return { enablePrivateCluster: false, authorizedIPRanges: [...(authorizedIpRanges ?? [])] };
}

/** `autoUpgradeProfile` of the ManagedCluster. */
export function autoUpgradeProfile(azure: Pick<AzureConfig, "upgrades">): {
  upgradeChannel: string;
  nodeOSUpgradeChannel: string;
} {
  return {
    upgradeChannel: azure.upgrades.channel,
    nodeOSUpgradeChannel: azure.upgrades.nodeOsChannel,
  };
}

/** A MaintenanceConfiguration's `maintenanceWindow`, or undefined when the window is off. */
export function maintenanceWindow(azure: Pick<AzureConfig, "upgrades">):
  | {
      schedule: { weekly: { dayOfWeek: string; intervalWeeks: number } };
      durationHours: number;
      startTime: string;
      utcOffset: string;
    }
  | undefined {
  const w = azure.upgrades.maintenanceWindow;
  if (!w.enabled) return undefined;
  return {
    schedule: { weekly: { dayOfWeek: w.day, intervalWeeks: w.intervalWeeks } },
    durationHours: w.durationHours,
    startTime: `${String(w.startHour).padStart(2, "0")}:00`,
    utcOffset: w.utcOffset,
  };
}

/**
 * The maintenance schedules to create: one per upgrade channel that is on (a schedule for a
 * channel that is off is refused by AKS, or at best pointless).
 */
export function maintenanceSchedules(azure: Pick<AzureConfig, "upgrades">): string[] {
  if (maintenanceWindow(azure) === undefined) return [];
  const names: string[] = [];
  if (azure.upgrades.channel !== "none") names.push(AUTO_UPGRADE_SCHEDULE);
  if (!["None", "Unmanaged"].includes(azure.upgrades.nodeOsChannel)) {
    names.push(NODE_OS_UPGRADE_SCHEDULE);
  }
  return names;
}

/** Diagnostic log categories of the control plane for an `auditLogs` level. */
export function auditLogCategories(level: AzureConfig["monitoring"]["auditLogs"]): string[] {
  switch (level) {
    case "off":
      return [];
    case "admin":
      return ["kube-audit-admin"];
    case "all":
      return ["kube-audit"];
  }
}

/** Whether anything needs the Log Analytics workspace. */
export function needsLogAnalytics(azure: Pick<AzureConfig, "monitoring" | "defender">): boolean {
  return (
    azure.monitoring.auditLogs !== "off" || azure.monitoring.containerInsights || azure.defender
  );
}

/** The storage account's network settings: public access and its firewall. */
export function storageNetwork(azure: Pick<AzureConfig, "storage">): {
  publicNetworkAccess: "Enabled" | "Disabled";
  networkRuleSet?: {
    defaultAction: "Deny";
    bypass: "AzureServices";
    ipRules: { iPAddressOrRange: string; action: "Allow" }[];
  };
} {
  const s = azure.storage;
  const publicNetworkAccess = storagePublicNetworkAccess(s);
  // With a private endpoint the public endpoint admits nobody but the listed addresses; without
  // one it stays open (the runner writes from AKS in the same region, where IP rules never apply).
  if (!s.privateEndpoint) return { publicNetworkAccess };
  return {
    publicNetworkAccess,
    networkRuleSet: {
      defaultAction: "Deny",
      // Trusted Azure services (e.g. Defender's malware scanning, Azure Backup) keep access.
      bypass: "AzureServices",
      ipRules: (s.allowedIpRanges ?? []).map((r) => ({ iPAddressOrRange: r, action: "Allow" })),
    },
  };
}

/** `versionRetentionDays` after its default (`softDeleteDays`, at least 1). */
export function versionRetentionDays(azure: Pick<AzureConfig, "storage">): number {
  return azure.storage.versionRetentionDays ?? Math.max(1, azure.storage.softDeleteDays);
}

/**
 * Address plan of the virtual network the program creates for a private endpoint. It avoids the
 * AKS defaults that share the routing table: the overlay pod range 10.244.0.0/16 and the service
 * range 10.0.0.0/16.
 */
export const VNET_PLAN = {
  addressSpace: "10.240.0.0/16",
  /** Nodes of both pools (1,019 usable addresses: the pools' maxCount plus upgrade surge). */
  nodes: "10.240.0.0/22",
  /** Private endpoints. */
  endpoints: "10.240.4.0/24",
} as const;

/** Private DNS zone that resolves blob endpoints to their private endpoint (Azure public cloud). */
export const BLOB_PRIVATE_DNS_ZONE = "privatelink.blob.core.windows.net";
