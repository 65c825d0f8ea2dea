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
import type { AksCluster } from "./azure/aks-cluster.js";
import { loadConfig } from "./config.js";
import { imageTagWarnings } from "./config-security.js";
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

/**
 * Target `azure`: the AksCluster (infra/azure/) is created first; the workspace goes on its
 * provider, with workers and jobs on the worker pool and the runner on workload identity.
 */
async function workspaceTarget(
  cfg: WorkspaceConfig,
): Promise<WorkspaceTarget & { aks?: AksCluster }> {
  switch (cfg.target) {
    case "kubernetes":
      return kubernetesTarget(cfg);
    case "azure": {
      // Loaded only for this target: @pulumi/azure-native alone takes about as long to load as
      // the rest of the program (see bench/program-eval.ts).
      const { azureWorkspaceArgs, newAksCluster } = await import("./azure/target.js");
      const aks = newAksCluster("dask", cfg);
      return { ...azureWorkspaceArgs(cfg, aks), aks };
    }
  }
}

/**
 * `loadConfig()`, with a config error's stack trace dropped before Pulumi's runner sees it. The
 * runner never shows a RunError's stack, but still formats it (for a tracing event) through
 * source-map-support, which with the tsx loader costs about 16 s of CPU: a bad config would be
 * reported after ~18 s instead of ~2.5 s (measured with test/workspace-langhost.test.ts).
 */
function loadConfigOrFail(): WorkspaceConfig {
  try {
    return loadConfig();
  } catch (err) {
    if (pulumi.RunError.isInstance(err)) {
      err.stack = err.message;
    }
    throw err;
  }
}

const config = loadConfigOrFail();
// Images by tag: allowed, but said on every run until pinned by digest (docs/security.md).
for (const w of imageTagWarnings(config.images)) void pulumi.log.warn(w);
const { aks, ...target } = await workspaceTarget(config);
const workspace = new DaskWorkspace("dask", { config, ...target });

/**
 * The stack outputs. One default export rather than named exports: ESM cannot export a name
 * conditionally, and Pulumi warns about every exported `undefined` ("will not show as a stack
 * output") on each run, so the Azure-only outputs are added only for target azure.
 */
interface StackOutputs {
  /** The namespace of every workspace object. */
  namespace: pulumi.Output<string>;
  /**
   * `tcp://...` (`tls://...` with `tls.enabled`): pass to `Client(...)` from inside the cluster,
   * or port-forward it (with TLS, the client needs the certificates of the `dask-tls-*` Secret).
   */
  schedulerAddress: pulumi.Output<string>;
  /** The dashboard port on the scheduler Service (`kubectl port-forward svc/dask-scheduler ...`). */
  dashboardPort: pulumi.Output<number>;
  /** Target azure: the AKS cluster's kubeconfig (secret): `pulumi stack output kubeconfig --show-secrets`. */
  kubeconfig?: pulumi.Output<string>;
  /** Target azure: push images here (`<registry>/dask-workspace/dask:<tag>`, `.../runner:<tag>`). */
  registryLoginServer?: pulumi.Output<string>;
  /** Target azure: `az://<container>/<prefix>`, where runner Jobs write results by default. */
  resultsUri?: pulumi.Output<string>;
  /** Target azure: client id of the runner's workload identity. */
  identityClientId?: pulumi.Output<string>;
}

const outputs: StackOutputs = {
  namespace: workspace.namespace,
  schedulerAddress: workspace.schedulerAddress,
  dashboardPort: workspace.dashboardPort,
  ...(aks === undefined
    ? {}
    : {
        kubeconfig: aks.kubeconfig,
        registryLoginServer: aks.registryLoginServer,
        resultsUri: aks.resultsUri,
        identityClientId: aks.identityClientId,
      }),
};

export default outputs;
