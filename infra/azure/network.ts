/**
 * `azure.storage.privateEndpoint: true`: a virtual network the node pools join, and a private
 * endpoint for the results account's blobs in it, resolved through a private DNS zone linked to
 * that network. Pods then reach `<account>.blob.core.windows.net` at a private address, and the
 * account's public endpoint can be closed (docs/azure.md, "Security baseline").
 *
 * Why a network of our own: without one, AKS puts the nodes in a network it manages and names
 * only after the cluster exists, so there is nothing to attach an endpoint or a DNS link to. And
 * storage IP rules cannot stand in: Azure ignores them for traffic from the same region.
 */
import { PrivateDnsZoneGroup } from "@pulumi/azure-native/network/privateDnsZoneGroup.js";
import { PrivateEndpoint } from "@pulumi/azure-native/network/privateEndpoint.js";
import { Subnet } from "@pulumi/azure-native/network/subnet.js";
import { VirtualNetwork } from "@pulumi/azure-native/network/virtualNetwork.js";
import { PrivateZone } from "@pulumi/azure-native/privatedns/privateZone.js";
import { VirtualNetworkLink } from "@pulumi/azure-native/privatedns/virtualNetworkLink.js";
import * as pulumi from "@pulumi/pulumi";
import { BLOB_PRIVATE_DNS_ZONE, VNET_PLAN } from "./security.js";

interface Placement {
  resourceGroupName: pulumi.Input<string>;
  location: string;
  tags: Record<string, string>;
}

/** The virtual network and its two subnets (see `VNET_PLAN`). */
export function newPrivateNetwork(
  name: string,
  args: Placement,
  parent: pulumi.Resource,
): { vnet: VirtualNetwork; nodes: Subnet; endpoints: Subnet } {
  const vnet = new VirtualNetwork(
    `${name}-vnet`,
    {
      resourceGroupName: args.resourceGroupName,
      location: args.location,
      tags: args.tags,
      addressSpace: { addressPrefixes: [VNET_PLAN.addressSpace] },
    },
    // Subnets are their own resources below; the network must not try to own them too.
    { parent, ignoreChanges: ["subnets"] },
  );
  const nodes = new Subnet(
    `${name}-nodes`,
    {
      resourceGroupName: args.resourceGroupName,
      virtualNetworkName: vnet.name,
      addressPrefix: VNET_PLAN.nodes,
    },
    { parent },
  );
  const endpoints = new Subnet(
    `${name}-endpoints`,
    {
      resourceGroupName: args.resourceGroupName,
      virtualNetworkName: vnet.name,
      addressPrefix: VNET_PLAN.endpoints,
      privateEndpointNetworkPolicies: "Enabled",
    },
    // Azure updates one subnet of a network at a time.
    { parent, dependsOn: [nodes] },
  );
  return { vnet, nodes, endpoints };
}

/** The blob private endpoint of `accountId`, its DNS zone, the zone's link and record group. */
export function newBlobPrivateEndpoint(
  name: string,
  args: Placement & {
    accountId: pulumi.Input<string>;
    vnetId: pulumi.Input<string>;
    subnetId: pulumi.Input<string>;
  },
  parent: pulumi.Resource,
): { endpoint: PrivateEndpoint; zone: PrivateZone } {
  const zone = new PrivateZone(
    `${name}-blob-dns`,
    {
      resourceGroupName: args.resourceGroupName,
      privateZoneName: BLOB_PRIVATE_DNS_ZONE,
      location: "global",
      tags: args.tags,
    },
    { parent },
  );
  new VirtualNetworkLink(
    `${name}-blob-dns-link`,
    {
      resourceGroupName: args.resourceGroupName,
      privateZoneName: zone.name,
      location: "global",
      virtualNetwork: { id: args.vnetId },
      registrationEnabled: false,
      tags: args.tags,
    },
    { parent },
  );
  const endpoint = new PrivateEndpoint(
    `${name}-blob-pe`,
    {
      resourceGroupName: args.resourceGroupName,
      location: args.location,
      tags: args.tags,
      subnet: { id: args.subnetId },
      privateLinkServiceConnections: [
        { name: "blob", privateLinkServiceId: args.accountId, groupIds: ["blob"] },
      ],
    },
    { parent },
  );
  new PrivateDnsZoneGroup(
    `${name}-blob-pe-dns`,
    {
      resourceGroupName: args.resourceGroupName,
      privateEndpointName: endpoint.name,
      privateDnsZoneGroupName: "default",
      privateDnsZoneConfigs: [{ name: "blob", privateDnsZoneId: zone.id }],
    },
    { parent },
  );
  return { endpoint, zone };
}
