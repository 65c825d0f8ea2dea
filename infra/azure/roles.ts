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
