/**
 * Plausible values for the Azure resources and functions `AksCluster` uses, for evaluating the
 * program offline under `pulumi.runtime.setMocks` (the tests and `npm run render`).
 *
 * Azure computes some outputs the program feeds back as inputs (the kubelet identity that gets
 * AcrPull, the OIDC issuer the runner's identity trusts, the container id a role is scoped to).
 * Echoing inputs alone would leave those inputs empty; these functions fill them with values of
 * the right shape, derived deterministically from the logical names, so renders are stable.
 */
import { createHash } from "node:crypto";
import { stringify } from "yaml";

/** The subscription and tenant every offline id uses. */
export const MOCK_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000";
export const MOCK_TENANT_ID = "11111111-1111-1111-1111-111111111111";

/** A stable, GUID-shaped string derived from `seed`. */
export function mockGuid(seed: string): string {
  const h = createHash("sha256").update(seed).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** The input naming a resource explicitly, per type (azure-native auto-names it otherwise). */
const NAME_INPUT: Record<string, string> = {
  "azure-native:resources:ResourceGroup": "resourceGroupName",
  "azure-native:containerservice:ManagedCluster": "resourceName",
  "azure-native:containerservice:AgentPool": "agentPoolName",
  "azure-native:containerregistry:Registry": "registryName",
  "azure-native:storage:StorageAccount": "accountName",
  "azure-native:storage:BlobContainer": "containerName",
  "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
  "azure-native:managedidentity:FederatedIdentityCredential":
    "federatedIdentityCredentialResourceName",
  "azure-native:authorization:RoleAssignment": "roleAssignmentName",
  "azure-native:containerservice:MaintenanceConfiguration": "configName",
  "azure-native:operationalinsights:Workspace": "workspaceName",
  "azure-native:monitor:DiagnosticSetting": "name",
  "azure-native:monitor:DataCollectionRule": "dataCollectionRuleName",
  "azure-native:monitor:DataCollectionEndpoint": "dataCollectionEndpointName",
  "azure-native:monitor:DataCollectionRuleAssociation": "associationName",
  "azure-native:monitor:AzureMonitorWorkspace": "azureMonitorWorkspaceName",
  "azure-native:storage:BlobServiceProperties": "blobServicesName",
  "azure-native:storage:ManagementPolicy": "managementPolicyName",
  "azure-native:network:VirtualNetwork": "virtualNetworkName",
  "azure-native:network:Subnet": "subnetName",
  "azure-native:network:PrivateEndpoint": "privateEndpointName",
  "azure-native:network:PrivateDnsZoneGroup": "privateDnsZoneGroupName",
  "azure-native:privatedns:PrivateZone": "privateZoneName",
  "azure-native:privatedns:VirtualNetworkLink": "virtualNetworkLinkName",
};

type Inputs = Record<string, unknown>;

function str(v: unknown, fallback: string): string {
  return typeof v === "string" && v !== "" ? v : fallback;
}

/** ARM resource id of a mocked resource. */
function armId(type: string, name: string, inputs: Inputs): string {
  const rg = `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/${str(inputs["resourceGroupName"], "rg")}`;
  switch (type) {
    case "azure-native:resources:ResourceGroup":
      return `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/${name}`;
    case "azure-native:containerservice:ManagedCluster":
      return `${rg}/providers/Microsoft.ContainerService/managedClusters/${name}`;
    case "azure-native:containerservice:AgentPool":
      return `${rg}/providers/Microsoft.ContainerService/managedClusters/${str(inputs["resourceName"], "aks")}/agentPools/${name}`;
    case "azure-native:containerregistry:Registry":
      return `${rg}/providers/Microsoft.ContainerRegistry/registries/${name}`;
    case "azure-native:storage:StorageAccount":
      return `${rg}/providers/Microsoft.Storage/storageAccounts/${name}`;
    case "azure-native:storage:BlobContainer":
      return `${rg}/providers/Microsoft.Storage/storageAccounts/${str(inputs["accountName"], "account")}/blobServices/default/containers/${name}`;
    case "azure-native:managedidentity:UserAssignedIdentity":
      return `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
    case "azure-native:managedidentity:FederatedIdentityCredential":
      return `${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${str(inputs["resourceName"], "identity")}/federatedIdentityCredentials/${name}`;
    case "azure-native:authorization:RoleAssignment":
      return `${str(inputs["scope"], "")}/providers/Microsoft.Authorization/roleAssignments/${name}`;
    case "azure-native:operationalinsights:Workspace":
      return `${rg}/providers/Microsoft.OperationalInsights/workspaces/${name}`;
    case "azure-native:monitor:AzureMonitorWorkspace":
      return `${rg}/providers/Microsoft.Monitor/accounts/${name}`;
    case "azure-native:monitor:DataCollectionRule":
      return `${rg}/providers/Microsoft.Insights/dataCollectionRules/${name}`;
    case "azure-native:monitor:DataCollectionEndpoint":
      return `${rg}/providers/Microsoft.Insights/dataCollectionEndpoints/${name}`;
    case "azure-native:monitor:DiagnosticSetting":
      return `${str(inputs["resourceUri"], "")}/providers/Microsoft.Insights/diagnosticSettings/${name}`;
    case "azure-native:monitor:DataCollectionRuleAssociation":
      return `${str(inputs["resourceUri"], "")}/providers/Microsoft.Insights/dataCollectionRuleAssociations/${name}`;
    case "azure-native:network:VirtualNetwork":
      return `${rg}/providers/Microsoft.Network/virtualNetworks/${name}`;
    case "azure-native:network:Subnet":
      return `${rg}/providers/Microsoft.Network/virtualNetworks/${str(inputs["virtualNetworkName"], "vnet")}/subnets/${name}`;
    case "azure-native:network:PrivateEndpoint":
      return `${rg}/providers/Microsoft.Network/privateEndpoints/${name}`;
    case "azure-native:privatedns:PrivateZone":
      return `${rg}/providers/Microsoft.Network/privateDnsZones/${name}`;
    default:
      return `${rg}/providers/${type}/${name}`;
  }
}

/**
 * The state a mocked Azure resource reports: its inputs, its name and id, and the computed
 * outputs the program reads. `undefined` for types that are not azure-native.
 */
export function azureMockResource(
  type: string,
  logicalName: string,
  inputs: Inputs,
): { id: string; state: Inputs } | undefined {
  if (!type.startsWith("azure-native:")) return undefined;
  const nameKey = NAME_INPUT[type];
  const name =
    type === "azure-native:authorization:RoleAssignment"
      ? str(inputs["roleAssignmentName"], mockGuid(logicalName))
      : str(nameKey === undefined ? undefined : inputs[nameKey], logicalName);
  const id = armId(type, name, inputs);
  const state: Inputs = { ...inputs, name, id };
  switch (type) {
    case "azure-native:containerservice:ManagedCluster":
      state["identityProfile"] = {
        kubeletidentity: {
          clientId: mockGuid(`${logicalName}/kubelet/client`),
          objectId: mockGuid(`${logicalName}/kubelet/object`),
          resourceId: `/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/MC_${name}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}-agentpool`,
        },
      };
      state["oidcIssuerProfile"] = {
        enabled: true,
        issuerURL: `https://${str(inputs["location"], "westeurope")}.oic.prod-aks.azure.com/${MOCK_TENANT_ID}/${mockGuid(`${logicalName}/oidc`)}/`,
      };
      state["identity"] = {
        type: "SystemAssigned",
        principalId: mockGuid(`${logicalName}/identity/principal`),
        tenantId: MOCK_TENANT_ID,
      };
      state["fqdn"] =
        `${str(inputs["dnsPrefix"], name)}.hcp.${str(inputs["location"], "westeurope")}.azmk8s.io`;
      break;
    case "azure-native:containerregistry:Registry":
      state["loginServer"] = `${name}.azurecr.io`;
      break;
    case "azure-native:managedidentity:UserAssignedIdentity":
      state["clientId"] = mockGuid(`${logicalName}/client`);
      state["principalId"] = mockGuid(`${logicalName}/principal`);
      state["tenantId"] = MOCK_TENANT_ID;
      break;
  }
  return { id, state };
}

/** A kubeconfig of the shape AKS returns: client certificate, or kubelogin exec with Entra ID. */
export function mockKubeconfig(clusterName: string, format: string | undefined): string {
  const user =
    format === "exec"
      ? {
          exec: {
            apiVersion: "client.authentication.k8s.io/v1beta1",
            command: "kubelogin",
            args: [
              "get-token",
              "--environment",
              "AzurePublicCloud",
              "--server-id",
              "6dae42f8-4368-4678-94ff-3960e28e3630",
              "--client-id",
              "80faf920-1908-4b52-b5ef-a8e7bedfc67a",
              "--tenant-id",
              MOCK_TENANT_ID,
              "--login",
              "devicecode",
            ],
            interactiveMode: "IfRequired",
          },
        }
      : { "client-certificate-data": "bW9jaw==", "client-key-data": "bW9jaw==", token: "mock" };
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: clusterName,
        cluster: {
          "certificate-authority-data": "bW9jaw==",
          server: `https://${clusterName}.hcp.westeurope.azmk8s.io:443`,
        },
      },
    ],
    contexts: [
      { name: clusterName, context: { cluster: clusterName, user: `clusterUser_${clusterName}` } },
    ],
    "current-context": clusterName,
    users: [{ name: `clusterUser_${clusterName}`, user }],
  });
}

/** Results of the Azure functions `AksCluster` calls; `undefined` for any other token. */
export function azureMockCall(token: string, inputs: Inputs): Inputs | undefined {
  switch (token) {
    case "azure-native:authorization:getClientConfig":
      return {
        clientId: mockGuid("client"),
        objectId: mockGuid("object"),
        subscriptionId: MOCK_SUBSCRIPTION_ID,
        tenantId: MOCK_TENANT_ID,
      };
    case "azure-native:containerservice:listManagedClusterUserCredentials": {
      const cluster = str(inputs["resourceName"], "aks");
      const format = typeof inputs["format"] === "string" ? inputs["format"] : undefined;
      const value = Buffer.from(mockKubeconfig(cluster, format), "utf8").toString("base64");
      return { kubeconfigs: [{ name: "clusterUser", value }] };
    }
    default:
      return undefined;
  }
}
