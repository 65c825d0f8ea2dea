/**
 * The Azure half of `target: azure`: everything the workspace needs before the first Kubernetes
 * object exists (docs/azure.md).
 *
 * - a resource group (or an existing one by name);
 * - AKS with a system pool (tainted for critical add-ons) and a separate autoscaling worker pool
 *   (optionally spot), the OIDC issuer and workload identity, a network policy engine, a managed
 *   identity, and the security baseline of `security.ts`: AKS-managed Entra ID with Azure RBAC
 *   and no local accounts, the deployer (or the admin groups) as cluster admin, the API server
 *   limited by config, automatic upgrades in a maintenance window, image cleaner, and the opt-in
 *   add-ons (Defender, Azure Policy, Container Insights, managed Prometheus, encryption at host);
 * - control-plane audit logs in a Log Analytics workspace (`monitoring.ts`);
 * - a container registry without an admin user; the kubelet identity may pull from it (AcrPull);
 * - a storage account (no public blob access, TLS 1.2+, HTTPS only, no shared keys, soft delete
 *   and versioning, network rules from config, optionally a private endpoint: `network.ts`) and
 *   a results container;
 * - a user-assigned identity for the runner, federated to the runner's ServiceAccount and allowed
 *   to write blobs in the results container only;
 * - a Kubernetes provider built from the cluster's user credentials, kept secret.
 *
 * Decisions (VM fit, node placement, role ids, kubeconfig rewriting) live in the pure modules
 * beside this file; this constructor only wires resources together.
 */
import * as k8s from "@pulumi/kubernetes";
// One module per resource rather than the service indexes (`.../storage/index.js`), which load
// every enum of the service: a fifth of the program's import time for nothing (bench/azure-eval.ts).
// For the same reason enum values are written as their strings.
import { getClientConfigOutput } from "@pulumi/azure-native/authorization/getClientConfig.js";
import { RoleAssignment } from "@pulumi/azure-native/authorization/roleAssignment.js";
import { Registry } from "@pulumi/azure-native/containerregistry/registry.js";
import { AgentPool } from "@pulumi/azure-native/containerservice/agentPool.js";
import { listManagedClusterUserCredentialsOutput } from "@pulumi/azure-native/containerservice/listManagedClusterUserCredentials.js";
import { MaintenanceConfiguration } from "@pulumi/azure-native/containerservice/maintenanceConfiguration.js";
import { ManagedCluster } from "@pulumi/azure-native/containerservice/managedCluster.js";
import { FederatedIdentityCredential } from "@pulumi/azure-native/managedidentity/federatedIdentityCredential.js";
import { UserAssignedIdentity } from "@pulumi/azure-native/managedidentity/userAssignedIdentity.js";
import { ResourceGroup } from "@pulumi/azure-native/resources/resourceGroup.js";
import { BlobContainer } from "@pulumi/azure-native/storage/blobContainer.js";
import { BlobServiceProperties } from "@pulumi/azure-native/storage/blobServiceProperties.js";
import { ManagementPolicy } from "@pulumi/azure-native/storage/managementPolicy.js";
import { StorageAccount } from "@pulumi/azure-native/storage/storageAccount.js";
import * as pulumi from "@pulumi/pulumi";
import type { AzureConfig } from "../types.js";
import { kubeconfigFromCredentials } from "./kubeconfig.js";
import {
  containerInsightsAddon,
  newAuditDiagnostics,
  newContainerInsights,
  newLogAnalyticsWorkspace,
  newManagedPrometheus,
} from "./monitoring.js";
import { newBlobPrivateEndpoint, newPrivateNetwork } from "./network.js";
import { DEFAULT_RESULTS_CONTAINER, resultsUri } from "./results.js";
import { WORKER_POOL_LABEL, formatTaint, workerPoolTaints } from "./placement.js";
import {
  ACR_PULL_ROLE_ID,
  AKS_RBAC_CLUSTER_ADMIN_ROLE_ID,
  NETWORK_CONTRIBUTOR_ROLE_ID,
  STORAGE_BLOB_DATA_CONTRIBUTOR_ROLE_ID,
  roleDefinitionId,
} from "./roles.js";
import {
  CRITICAL_ADDONS_ONLY_TAINT,
  aadProfile,
  apiServerAccessProfile,
  autoUpgradeProfile,
  clusterAccess,
  maintenanceSchedules,
  maintenanceWindow,
  needsLogAnalytics,
  storageNetwork,
  versionRetentionDays,
} from "./security.js";
import { SYSTEM_POOL_MAX_PODS, WORKER_POOL_MAX_PODS } from "./vm-sizes.js";

/** Network policy engines AKS offers (`networkProfile.networkPolicy`). */
export type NetworkPolicyEngine = "cilium" | "calico" | "azure";

export interface AksClusterArgs {
  /** The validated `azure` block of the stack config. */
  azure: AzureConfig;
  /** Namespace the workspace is deployed to; part of the federated credential's subject. */
  namespace: string;
  /** Name of the runner's ServiceAccount; the other part of the federated subject. */
  runnerServiceAccountName: string;
  /** Blob container for results (3–63 lowercase letters, digits, hyphens). Default `results`. */
  resultsContainerName?: string;
  /** Path prefix inside the container for `resultsUri`. Default none (the container's root). */
  resultsPrefix?: string;
  /**
   * Network policy engine. Default `cilium` (Azure CNI powered by Cilium: eBPF dataplane,
   * Microsoft's recommended engine for new clusters). `calico` and `azure` (Azure NPM) run on the
   * Azure dataplane instead.
   */
  networkPolicy?: NetworkPolicyEngine;
  /** Tags on every Azure resource created here. */
  tags?: Record<string, string>;
  /** Turn on the AKS KEDA add-on (autoscaling mode dask: the ScaledObject needs it). Default false. */
  keda?: boolean;
}

/** Type token of the component; part of every child's URN, so never change it. */
export const AKS_CLUSTER_TYPE = "dask-workspace:azure:AksCluster";

/** Pool names AKS sees (lowercase alphanumerics, at most 12 characters for Linux pools). */
export const SYSTEM_POOL_NAME = "system";
export const WORKER_POOL_NAME = "workers";

/** The audience Entra ID expects in tokens exchanged for a managed identity's token. */
export const WORKLOAD_IDENTITY_AUDIENCE = "api://AzureADTokenExchange";

/** `system:serviceaccount:<namespace>:<name>`: the `sub` claim of a ServiceAccount token. */
export function federatedSubject(namespace: string, serviceAccountName: string): string {
  return `system:serviceaccount:${namespace}:${serviceAccountName}`;
}

/**
 * Lowercase letters and digits of `name`, at most `max` characters (default 14). Registries and
 * storage accounts allow nothing else, and azure-native appends 8 random characters to the
 * logical name when it auto-names them (storage account names end at 24 characters).
 */
export function compactName(name: string, max = 14): string {
  const compact = name.toLowerCase().replace(/[^a-z0-9]/g, "");
  return (compact === "" ? "dask" : compact).slice(0, max);
}

/** Whether Entra ID integration is on, and so whether local accounts may be disabled. */
export function accessSettings(
  azure: Pick<AzureConfig, "entraId" | "adminGroupObjectIds" | "disableLocalAccounts">,
): {
  entraId: boolean;
  disableLocalAccounts: boolean;
} {
  const access = clusterAccess(azure);
  return { entraId: access.entraId, disableLocalAccounts: access.disableLocalAccounts };
}

export class AksCluster extends pulumi.ComponentResource {
  /** Resource group holding everything here (created, or the existing one named in config). */
  public readonly resourceGroupName: pulumi.Output<string>;
  /** The AKS managed cluster. */
  public readonly cluster: ManagedCluster;
  /** The autoscaling worker pool. */
  public readonly workerPool: AgentPool;
  /** Kubeconfig for the cluster (user credentials); always secret. */
  public readonly kubeconfig: pulumi.Output<string>;
  /** Kubernetes provider for everything the workspace deploys on this cluster. */
  public readonly provider: k8s.Provider;
  /** Registry login server, e.g. `daskacr1a2b3c4d.azurecr.io`. */
  public readonly registryLoginServer: pulumi.Output<string>;
  /** Storage account holding the results container. */
  public readonly storageAccountName: pulumi.Output<string>;
  /** Results container name. */
  public readonly resultsContainerName: pulumi.Output<string>;
  /** `az://<container>/<prefix>`, the default results URI of runner Jobs. */
  public readonly resultsUri: pulumi.Output<string>;
  /** Client id of the runner's identity: the ServiceAccount's `azure.workload.identity/client-id`. */
  public readonly identityClientId: pulumi.Output<string>;
  /** The cluster's OIDC issuer URL (the federated credential's issuer). */
  public readonly oidcIssuerUrl: pulumi.Output<string>;

  constructor(name: string, args: AksClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super(AKS_CLUSTER_TYPE, name, {}, opts);
    const { azure } = args;
    const tags = args.tags ?? {};
    const location = azure.location;
    const containerName = args.resultsContainerName ?? DEFAULT_RESULTS_CONTAINER;
    const prefix = args.resultsPrefix ?? "";
    const access = clusterAccess(azure);
    const networkPolicy = args.networkPolicy ?? "cilium";
    const placement = { location, tags };

    // An existing resource group is used by name only: it is not ours to adopt or delete.
    const resourceGroupName: pulumi.Output<string> =
      azure.resourceGroupName !== undefined
        ? pulumi.output(azure.resourceGroupName)
        : new ResourceGroup(`${name}-rg`, { location, tags }, { parent: this }).name;
    this.resourceGroupName = resourceGroupName;
    const at = { resourceGroupName, ...placement };

    // The node pools join a network of our own only when the storage account needs a private
    // endpoint in it; otherwise AKS manages the network.
    const network = azure.storage.privateEndpoint ? newPrivateNetwork(name, at, this) : undefined;
    const vnetSubnetID = network?.nodes.id;
    const logs = needsLogAnalytics(azure)
      ? newLogAnalyticsWorkspace(name, { ...at, monitoring: azure.monitoring }, this)
      : undefined;
    const apiServer = apiServerAccessProfile(azure);
    const aad = aadProfile(access);

    this.cluster = new ManagedCluster(
      `${name}-aks`,
      {
        resourceGroupName,
        location,
        tags,
        dnsPrefix: compactName(name, 40),
        kubernetesVersion: azure.kubernetesVersion,
        sku: { name: "Base", tier: "Free" },
        // A system-assigned control-plane identity; AKS creates the kubelet identity beside it.
        identity: { type: "SystemAssigned" },
        enableRBAC: true,
        ...(aad !== undefined ? { aadProfile: aad } : {}),
        disableLocalAccounts: access.disableLocalAccounts,
        apiServerAccessProfile: apiServer,
        autoUpgradeProfile: autoUpgradeProfile(azure),
        // Only the system pool is inline: AKS rejects adding pools through the cluster resource,
        // so the worker pool is its own AgentPool and can change without touching the cluster.
        agentPoolProfiles: [
          {
            name: SYSTEM_POOL_NAME,
            mode: "System",
            vmSize: azure.systemPool.vmSize,
            count: azure.systemPool.count,
            maxPods: SYSTEM_POOL_MAX_PODS,
            osType: "Linux",
            type: "VirtualMachineScaleSets",
            orchestratorVersion: azure.kubernetesVersion,
            // Only AKS's critical add-ons (and pods that tolerate this, like the Dask scheduler)
            // run on the system pool; everything else goes to user pools.
            nodeTaints: [CRITICAL_ADDONS_ONLY_TAINT],
            enableEncryptionAtHost: azure.encryptionAtHost,
            ...(vnetSubnetID !== undefined ? { vnetSubnetID } : {}),
          },
        ],
        oidcIssuerProfile: { enabled: true },
        securityProfile: {
          workloadIdentity: { enabled: true },
          imageCleaner: {
            enabled: azure.imageCleaner.enabled,
            intervalHours: azure.imageCleaner.intervalHours,
          },
          defender:
            azure.defender && logs !== undefined
              ? {
                  logAnalyticsWorkspaceResourceId: logs.id,
                  securityMonitoring: { enabled: true },
                }
              : { securityMonitoring: { enabled: false } },
        },
        // Every add-on stated, on or off, so that turning one off in config turns it off here.
        addonProfiles: {
          azurepolicy: { enabled: azure.azurePolicy },
          omsagent:
            azure.monitoring.containerInsights && logs !== undefined
              ? containerInsightsAddon(logs.id)
              : { enabled: false },
        },
        azureMonitorProfile: { metrics: { enabled: azure.monitoring.prometheus } },
        // Autoscaling mode dask: KEDA as the managed add-on (it runs in kube-system).
        ...(args.keda === true ? { workloadAutoScalerProfile: { keda: { enabled: true } } } : {}),
        networkProfile: {
          networkPlugin: "azure",
          networkPluginMode: "overlay",
          networkDataplane: networkPolicy === "cilium" ? "cilium" : "azure",
          networkPolicy,
        },
      },
      { parent: this },
    );

    const pool = azure.workerPool;
    this.workerPool = new AgentPool(
      `${name}-workers`,
      {
        resourceGroupName,
        resourceName: this.cluster.name,
        agentPoolName: WORKER_POOL_NAME,
        mode: "User",
        vmSize: pool.vmSize,
        osType: "Linux",
        type: "VirtualMachineScaleSets",
        orchestratorVersion: azure.kubernetesVersion,
        enableAutoScaling: true,
        minCount: pool.minCount,
        maxCount: pool.maxCount,
        count: pool.minCount,
        // vm-sizes.ts computes kube-reserved memory from this same number.
        maxPods: WORKER_POOL_MAX_PODS,
        nodeLabels: { [WORKER_POOL_LABEL.key]: WORKER_POOL_LABEL.value },
        nodeTaints: workerPoolTaints(pool).map(formatTaint),
        enableEncryptionAtHost: azure.encryptionAtHost,
        ...(vnetSubnetID !== undefined ? { vnetSubnetID } : {}),
        ...(pool.spot
          ? {
              scaleSetPriority: "Spot",
              // Delete, not Deallocate: a deallocated spot VM still bills its disk and keeps
              // counting against the pool's maxCount.
              scaleSetEvictionPolicy: "Delete",
              // -1: pay up to the on-demand price, so nodes are evicted for capacity, not price.
              spotMaxPrice: -1,
            }
          : {}),
        tags,
      },
      // The cluster autoscaler owns the node count after creation.
      { parent: this, ignoreChanges: ["count"] },
    );

    const client = getClientConfigOutput({ parent: this });
    const subscriptionRole = (roleId: string) =>
      client.subscriptionId.apply((s) => roleDefinitionId(s, roleId));

    for (const configName of maintenanceSchedules(azure)) {
      new MaintenanceConfiguration(
        `${name}-${configName === "aksManagedAutoUpgradeSchedule" ? "upgrade" : "node-os"}-window`,
        {
          resourceGroupName,
          resourceName: this.cluster.name,
          configName,
          maintenanceWindow: maintenanceWindow(azure),
        },
        { parent: this },
      );
    }

    // Cluster admins under Azure RBAC: the deployer (so this program can create the workspace's
    // objects) and/or the configured groups. Scoped to this cluster only.
    const admins: RoleAssignment[] = [];
    if (access.deployerIsAdmin) {
      admins.push(
        new RoleAssignment(
          `${name}-deployer-admin`,
          {
            // Whoever runs `pulumi up`: a user, or a service principal in CI (ARM checks the
            // type, and azure-native would otherwise send "User").
            principalId: client.objectId,
            principalType: azure.entraId.deployerPrincipalType,
            roleDefinitionId: subscriptionRole(AKS_RBAC_CLUSTER_ADMIN_ROLE_ID),
            scope: this.cluster.id,
          },
          { parent: this },
        ),
      );
    }
    if (access.azureRbac) {
      access.adminGroups.forEach((group, i) => {
        admins.push(
          new RoleAssignment(
            `${name}-admin-group-${i}`,
            {
              principalId: group,
              principalType: "Group",
              roleDefinitionId: subscriptionRole(AKS_RBAC_CLUSTER_ADMIN_ROLE_ID),
              scope: this.cluster.id,
            },
            { parent: this },
          ),
        );
      });
    }

    if (network !== undefined) {
      // AKS manages load balancer and node IP configurations in a network it did not create.
      new RoleAssignment(
        `${name}-aks-network`,
        {
          principalId: this.cluster.identity.apply((i) => i?.principalId) as pulumi.Output<string>,
          principalType: "ServicePrincipal",
          roleDefinitionId: subscriptionRole(NETWORK_CONTRIBUTOR_ROLE_ID),
          scope: network.nodes.id,
        },
        { parent: this },
      );
    }

    if (logs !== undefined && azure.monitoring.auditLogs !== "off") {
      newAuditDiagnostics(
        name,
        { clusterId: this.cluster.id, workspaceId: logs.id, level: azure.monitoring.auditLogs },
        this,
      );
    }
    if (logs !== undefined && azure.monitoring.containerInsights) {
      newContainerInsights(name, { ...at, workspaceId: logs.id, clusterId: this.cluster.id }, this);
    }
    if (azure.monitoring.prometheus) {
      newManagedPrometheus(name, { ...at, clusterId: this.cluster.id }, this);
    }

    const registry = new Registry(
      `${compactName(name)}acr`,
      {
        resourceGroupName,
        location,
        tags,
        sku: { name: azure.registrySku },
        adminUserEnabled: false,
        anonymousPullEnabled: false,
      },
      { parent: this },
    );
    this.registryLoginServer = registry.loginServer;

    // The kubelet identity pulls images; AKS reports it once the cluster exists.
    const kubeletObjectId = this.cluster.identityProfile.apply(
      (p) => p?.["kubeletidentity"]?.objectId,
    ) as pulumi.Output<string>;
    new RoleAssignment(
      `${name}-acr-pull`,
      {
        principalId: kubeletObjectId,
        // Stating the principal type lets ARM skip the directory lookup that fails with
        // PrincipalNotFound while a just-created identity is still replicating in Entra ID.
        principalType: "ServicePrincipal",
        roleDefinitionId: client.subscriptionId.apply((s) => roleDefinitionId(s, ACR_PULL_ROLE_ID)),
        scope: registry.id,
      },
      { parent: this },
    );

    const account = new StorageAccount(
      `${compactName(name)}sa`,
      {
        resourceGroupName,
        location,
        tags,
        kind: "StorageV2",
        sku: { name: "Standard_LRS" },
        allowBlobPublicAccess: false,
        minimumTlsVersion: "TLS1_2",
        enableHttpsTrafficOnly: true,
        // No account keys anywhere: the runner authenticates with its workload identity.
        allowSharedKeyAccess: false,
        defaultToOAuthAuthentication: true,
        ...storageNetwork(azure),
      },
      { parent: this },
    );
    this.storageAccountName = account.name;

    // Deleted and overwritten results stay recoverable for a while (accidental `rm`, a buggy
    // study overwriting a location). The account's one blob service is always named `default`.
    const soft = azure.storage.softDeleteDays;
    const blobService = new BlobServiceProperties(
      `${name}-blob-service`,
      {
        resourceGroupName,
        accountName: account.name,
        blobServicesName: "default",
        deleteRetentionPolicy: soft > 0 ? { enabled: true, days: soft } : { enabled: false },
        containerDeleteRetentionPolicy:
          soft > 0 ? { enabled: true, days: soft } : { enabled: false },
        isVersioningEnabled: azure.storage.versioning,
      },
      { parent: this },
    );
    if (azure.storage.versioning) {
      // Versions are billed like blobs and never expire by themselves.
      const days = versionRetentionDays(azure);
      new ManagementPolicy(
        `${name}-blob-lifecycle`,
        {
          resourceGroupName,
          accountName: account.name,
          managementPolicyName: "default",
          policy: {
            rules: [
              {
                name: "expire-previous-versions",
                enabled: true,
                type: "Lifecycle",
                definition: {
                  filters: { blobTypes: ["blockBlob"] },
                  actions: { version: { delete: { daysAfterCreationGreaterThan: days } } },
                },
              },
            ],
          },
        },
        { parent: this, dependsOn: [blobService] },
      );
    }
    if (network !== undefined) {
      newBlobPrivateEndpoint(
        name,
        { ...at, accountId: account.id, vnetId: network.vnet.id, subnetId: network.endpoints.id },
        this,
      );
    }

    const container = new BlobContainer(
      `${name}-results`,
      {
        resourceGroupName,
        accountName: account.name,
        containerName,
        publicAccess: "None",
      },
      { parent: this },
    );
    this.resultsContainerName = container.name;
    this.resultsUri = container.name.apply((c) => resultsUri(c, prefix));

    const identity = new UserAssignedIdentity(
      `${name}-runner`,
      { resourceGroupName, location, tags },
      { parent: this },
    );
    this.identityClientId = identity.clientId;

    this.oidcIssuerUrl = this.cluster.oidcIssuerProfile.apply(
      (p) => p?.issuerURL,
    ) as pulumi.Output<string>;
    new FederatedIdentityCredential(
      `${name}-runner-federation`,
      {
        resourceGroupName,
        resourceName: identity.name,
        issuer: this.oidcIssuerUrl,
        subject: federatedSubject(args.namespace, args.runnerServiceAccountName),
        audiences: [WORKLOAD_IDENTITY_AUDIENCE],
      },
      { parent: this },
    );

    // Scoped to the results container, not the account: the runner can touch nothing else.
    new RoleAssignment(
      `${name}-results-writer`,
      {
        principalId: identity.principalId,
        principalType: "ServicePrincipal",
        roleDefinitionId: client.subscriptionId.apply((s) =>
          roleDefinitionId(s, STORAGE_BLOB_DATA_CONTRIBUTOR_ROLE_ID),
        ),
        scope: container.id,
      },
      { parent: this },
    );

    const credentials = listManagedClusterUserCredentialsOutput(
      {
        resourceGroupName,
        resourceName: this.cluster.name,
        ...(access.entraId ? { format: "exec" } : {}),
      },
      { parent: this },
    );
    this.kubeconfig = pulumi.secret(
      credentials.kubeconfigs.apply((k) =>
        kubeconfigFromCredentials(k, { azureCliLogin: access.entraId }),
      ),
    );
    this.provider = new k8s.Provider(
      `${name}-k8s`,
      { kubeconfig: this.kubeconfig },
      // The worker pool must exist before workloads that select it are deployed, and the
      // deployer's admin role before the program talks to the API server.
      { parent: this, dependsOn: [this.workerPool, ...admins] },
    );

    this.registerOutputs({
      resourceGroupName: this.resourceGroupName,
      kubeconfig: this.kubeconfig,
      registryLoginServer: this.registryLoginServer,
      storageAccountName: this.storageAccountName,
      resultsContainerName: this.resultsContainerName,
      resultsUri: this.resultsUri,
      identityClientId: this.identityClientId,
      oidcIssuerUrl: this.oidcIssuerUrl,
    });
  }
}
