/**
 * The Pulumi program: stack config → (target) → DaskWorkspace.
 *
 * `pulumi up` runs this file (Pulumi.yaml `main`), and so does `npm run render` under Pulumi's
 * mock runtime. Everything target-specific is decided in `workspaceTarget`, which returns the
 * Kubernetes provider and the workspace placement for the target; the workspace itself is the
 * same on every target.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { loadConfig } from "./config.js";
import type { WorkspaceConfig } from "./types.js";
import { DaskWorkspace, type DaskWorkspaceArgs } from "./workspace/index.js";

/** What a target contributes to the workspace: where its objects go and how pods are placed. */
type WorkspaceTarget = Omit<DaskWorkspaceArgs, "config">;

/**
 * Target `kubernetes`: an existing cluster. An explicit provider only when the stack names a
 * kubeconfig or context; otherwise Pulumi's default provider, which uses the current kubeconfig
 * context exactly like `kubectl`.
 */
function kubernetesTarget(cfg: WorkspaceConfig): WorkspaceTarget {
  if (cfg.kubeconfig === undefined && cfg.context === undefined) {
    return {};
  }
  const provider = new k8s.Provider("kubernetes", {
    // A path or the file's contents; the provider accepts both.
    ...(cfg.kubeconfig === undefined ? {} : { kubeconfig: cfg.kubeconfig }),
    ...(cfg.context === undefined ? {} : { context: cfg.context }),
  });
  return { provider };
}

function workspaceTarget(cfg: WorkspaceConfig): WorkspaceTarget {
  switch (cfg.target) {
    case "kubernetes":
      return kubernetesTarget(cfg);
    case "azure":
      // The AksCluster component (infra/azure/) provides the provider and node placement.
      throw new pulumi.RunError(
        "target: azure is not available in this version yet; use target: kubernetes with an existing cluster",
      );
  }
}

const config = loadConfig();
const workspace = new DaskWorkspace("dask", { config, ...workspaceTarget(config) });

/** The namespace of every workspace object. */
export const namespace = workspace.namespace;
/** `tcp://...`: pass to `Client(...)` from inside the cluster, or port-forward it. */
export const schedulerAddress = workspace.schedulerAddress;
/** The dashboard port on the scheduler Service (`kubectl port-forward svc/dask-scheduler ...`). */
export const dashboardPort = workspace.dashboardPort;
