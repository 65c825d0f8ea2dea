/**
 * `monitoring.prometheus: true`: a prometheus-operator PodMonitor that scrapes the scheduler's
 * `/metrics` (Dask's own gauges: desired workers, workers by state including paused, memory,
 * tasks) and `/workspace/metrics` (busy and desired pods, memory restarts), and the
 * NetworkPolicy that lets the Prometheus in `monitoring.prometheusNamespace` reach that port.
 * The scheduler sees every worker, so scraping it alone shows the whole workspace; worker
 * processes listen on random ports and are not scraped. docs/autoscaling.md lists what to watch.
 */
import type { WorkspaceConfig } from "../types.js";
import { schedulerHttpIngressPolicy, WORKSPACE_METRICS_PATH } from "./keda.js";
import { recommendedLabels, selectorLabels } from "./labels.js";
import { DASHBOARD_PORT_NAME } from "./scheduler.js";

export function monitoringNames(instance: string): { podMonitor: string; ingress: string } {
  return { podMonitor: `${instance}-scheduler`, ingress: `${instance}-scheduler-prometheus` };
}

export function schedulerPodMonitor(ctx: {
  cfg: WorkspaceConfig;
  instance: string;
}): Record<string, unknown> {
  const { cfg, instance } = ctx;
  const interval = cfg.monitoring?.interval ?? "30s";
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PodMonitor",
    metadata: {
      name: monitoringNames(instance).podMonitor,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "scheduler", cfg.images.dask),
    },
    spec: {
      selector: { matchLabels: selectorLabels(instance, "scheduler") },
      podMetricsEndpoints: [
        { port: DASHBOARD_PORT_NAME, path: "/metrics", interval },
        { port: DASHBOARD_PORT_NAME, path: WORKSPACE_METRICS_PATH, interval },
      ],
    },
  };
}

export function prometheusIngressPolicy(ctx: {
  cfg: WorkspaceConfig;
  instance: string;
}): Record<string, unknown> {
  return schedulerHttpIngressPolicy({
    ...ctx,
    name: monitoringNames(ctx.instance).ingress,
    fromNamespace: ctx.cfg.monitoring?.prometheusNamespace ?? "monitoring",
  });
}
