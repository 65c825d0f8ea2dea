/**
 * Azure built-in role definitions the workspace assigns. Built-in role ids are the same GUIDs in
 * every tenant and subscription.
 *
 * Source: Microsoft Learn, "Azure built-in roles" (Containers and Storage pages),
 * https://learn.microsoft.com/azure/role-based-access-control/built-in-roles — checked against
 * each role's JSON there (`"name"` is the GUID, `"roleName"` the display name).
 */

/** `AcrPull`: "Pull or Get images from a container registry." Given to the kubelet identity. */
export const ACR_PULL_ROLE_ID = "7f951dda-4ed3-4680-a7ca-43fe172d538d";

/**
 * `Storage Blob Data Contributor`: read, write and delete blobs and containers. Given to the
 * runner's workload identity, scoped to the results container only (not the account), so a
 * compromised runner cannot read or delete anything else in the account.
 */
export const STORAGE_BLOB_DATA_CONTRIBUTOR_ROLE_ID = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";

/**
 * The full resource id ARM expects in a role assignment's `roleDefinitionId`:
 * `/subscriptions/<subscription>/providers/Microsoft.Authorization/roleDefinitions/<guid>`.
 */
export function roleDefinitionId(subscriptionId: string, roleId: string): string {
  return `/subscriptions/${subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${roleId}`;
}

/**
 * `Azure Kubernetes Service RBAC Cluster Admin`: every Kubernetes action on every object of the
 * cluster, under Azure RBAC for Kubernetes authorization. Given, on the cluster only, to the
 * deployer (so `pulumi up` can create the workspace's objects) or to the configured admin groups.
 */
export const AKS_RBAC_CLUSTER_ADMIN_ROLE_ID = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b";

/**
 * `Network Contributor`: given to the cluster's identity on the node subnet when the node pools
 * join the virtual network the program creates (AKS manages load balancers and IPs there).
 */
export const NETWORK_CONTRIBUTOR_ROLE_ID = "4d97b98b-1d4f-4787-a291-c67834d212e7";
