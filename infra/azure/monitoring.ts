/**
 * The monitoring half of the AKS security baseline (docs/azure.md, "Security baseline"): a Log
 * Analytics workspace, the control-plane audit logs sent to it, and the opt-in Container Insights
 * and Azure Monitor managed Prometheus pipelines. Each function creates its resources as children
 * of `parent` (the AksCluster), with names derived from the component's.
 *
 * The data collection rules follow the shape of Microsoft's ARM templates for enabling these
 * add-ons ("Enable monitoring for Kubernetes clusters", Microsoft Learn): the cluster flag alone
 * only deploys the agents, and without a rule and its association they send nothing anywhere.
 */
import { AzureMonitorWorkspace } from "@pulumi/azure-native/monitor/azureMonitorWorkspace.js";
import { DataCollectionEndpoint } from "@pulumi/azure-native/monitor/dataCollectionEndpoint.js";
import { DataCollectionRule } from "@pulumi/azure-native/monitor/dataCollectionRule.js";
import { DataCollectionRuleAssociation } from "@pulumi/azure-native/monitor/dataCollectionRuleAssociation.js";
import { DiagnosticSetting } from "@pulumi/azure-native/monitor/diagnosticSetting.js";
import { Workspace } from "@pulumi/azure-native/operationalinsights/workspace.js";
import * as pulumi from "@pulumi/pulumi";
import type { AzureConfig } from "../types.js";
import { auditLogCategories } from "./security.js";

interface Placement {
  resourceGroupName: pulumi.Input<string>;
  location: string;
  tags: Record<string, string>;
}

/** The Container Insights stream that carries logs, inventory and performance data. */
export const CONTAINER_INSIGHTS_STREAM = "Microsoft-ContainerInsights-Group-Default";
/** The Prometheus metrics stream of the managed Prometheus agent. */
export const PROMETHEUS_STREAM = "Microsoft-PrometheusMetrics";

/** The workspace audit logs, Defender and Container Insights report to. */
export function newLogAnalyticsWorkspace(
  name: string,
  args: Placement & { monitoring: AzureConfig["monitoring"] },
  parent: pulumi.Resource,
): Workspace {
  const m = args.monitoring;
  return new Workspace(
    `${name}-logs`,
    {
      resourceGroupName: args.resourceGroupName,
      location: args.location,
      tags: args.tags,
      sku: { name: "PerGB2018" },
      retentionInDays: m.retentionDays,
      ...(m.dailyQuotaGb !== undefined
        ? { workspaceCapping: { dailyQuotaGb: m.dailyQuotaGb } }
        : {}),
    },
    { parent },
  );
}

/**
 * Control-plane audit logs into resource-specific tables (`AKSAuditAdmin` / `AKSAudit`), the mode
 * Microsoft recommends: smaller rows than the legacy `AzureDiagnostics` table, and those tables
 * can be switched to the cheaper Basic logs plan.
 */
export function newAuditDiagnostics(
  name: string,
  args: {
    clusterId: pulumi.Input<string>;
    workspaceId: pulumi.Input<string>;
    level: AzureConfig["monitoring"]["auditLogs"];
  },
  parent: pulumi.Resource,
): DiagnosticSetting {
  return new DiagnosticSetting(
    `${name}-audit`,
    {
      name: "control-plane-audit",
      resourceUri: args.clusterId,
      workspaceId: args.workspaceId,
      logAnalyticsDestinationType: "Dedicated",
      logs: auditLogCategories(args.level).map((category) => ({ category, enabled: true })),
    },
    { parent },
  );
}

/** The cluster's `addonProfiles.omsagent` for Container Insights with Entra ID (managed identity) auth. */
export function containerInsightsAddon(workspaceId: pulumi.Input<string>): {
  enabled: true;
  config: { logAnalyticsWorkspaceResourceID: pulumi.Input<string>; useAADAuth: string };
} {
  return {
    enabled: true,
    config: { logAnalyticsWorkspaceResourceID: workspaceId, useAADAuth: "true" },
  };
}

/** The data collection rule that routes Container Insights data to the workspace, and its link. */
export function newContainerInsights(
  name: string,
  args: Placement & { workspaceId: pulumi.Input<string>; clusterId: pulumi.Input<string> },
  parent: pulumi.Resource,
): { rule: DataCollectionRule; association: DataCollectionRuleAssociation } {
  const rule = new DataCollectionRule(
    `${name}-insights-dcr`,
    {
      resourceGroupName: args.resourceGroupName,
      location: args.location,
      tags: args.tags,
      kind: "Linux",
      dataSources: {
        extensions: [
          {
            name: "ContainerInsightsExtension",
            extensionName: "ContainerInsights",
            streams: [CONTAINER_INSIGHTS_STREAM],
            extensionSettings: {
              dataCollectionSettings: {
                interval: "1m",
                namespaceFilteringMode: "Off",
                enableContainerLogV2: true,
              },
            },
          },
        ],
      },
      destinations: {
        logAnalytics: [{ name: "ciworkspace", workspaceResourceId: args.workspaceId }],
      },
      dataFlows: [{ streams: [CONTAINER_INSIGHTS_STREAM], destinations: ["ciworkspace"] }],
    },
    { parent },
  );
  const association = new DataCollectionRuleAssociation(
    `${name}-insights-dcra`,
    {
      associationName: "ContainerInsightsExtension",
      resourceUri: args.clusterId,
      dataCollectionRuleId: rule.id,
    },
    { parent },
  );
  return { rule, association };
}

/**
 * Azure Monitor managed Prometheus: an Azure Monitor workspace, a data collection endpoint and
 * rule forwarding the agent's metrics to it, and the rule's and endpoint's associations with the
 * cluster (the endpoint association must be named `configurationAccessEndpoint`).
 */
export function newManagedPrometheus(
  name: string,
  args: Placement & { clusterId: pulumi.Input<string> },
  parent: pulumi.Resource,
): { workspace: AzureMonitorWorkspace; rule: DataCollectionRule } {
  const workspace = new AzureMonitorWorkspace(
    `${name}-prometheus`,
    { resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags },
    { parent },
  );
  const endpoint = new DataCollectionEndpoint(
    `${name}-prometheus-dce`,
    {
      resourceGroupName: args.resourceGroupName,
      location: args.location,
      tags: args.tags,
      kind: "Linux",
    },
    { parent },
  );
  const rule = new DataCollectionRule(
    `${name}-prometheus-dcr`,
    {
      resourceGroupName: args.resourceGroupName,
      location: args.location,
      tags: args.tags,
      kind: "Linux",
      dataCollectionEndpointId: endpoint.id,
      dataSources: {
        prometheusForwarder: [
          { name: "PrometheusDataSource", streams: [PROMETHEUS_STREAM], labelIncludeFilter: {} },
        ],
      },
      destinations: {
        monitoringAccounts: [{ name: "MonitoringAccount1", accountResourceId: workspace.id }],
      },
      dataFlows: [{ streams: [PROMETHEUS_STREAM], destinations: ["MonitoringAccount1"] }],
    },
    { parent },
  );
  new DataCollectionRuleAssociation(
    `${name}-prometheus-dcra`,
    {
      associationName: "prometheus",
      resourceUri: args.clusterId,
      dataCollectionRuleId: rule.id,
    },
    { parent },
  );
  new DataCollectionRuleAssociation(
    `${name}-prometheus-dcea`,
    {
      associationName: "configurationAccessEndpoint",
      resourceUri: args.clusterId,
      dataCollectionEndpointId: endpoint.id,
    },
    { parent },
  );
  return { workspace, rule };
}
