/**
 * The Dask config ConfigMap and how every Dask container (scheduler, workers, runner) sees it.
 *
 * The YAML comes from `daskConfigYaml` in `infra/dask.ts`, the same text the local launcher
 * writes, so `worker-saturation` reaches the scheduler the same way in both places: as a file in
 * `DASK_CONFIG` that Dask reads when the process starts (setting it in a client does nothing).
 */
import { createHash } from "node:crypto";
import type * as k8s from "@pulumi/kubernetes";
import { DASK_CONFIG_DIR, daskConfigYaml } from "../dask.js";
import type { WorkspaceConfig } from "../types.js";
import { recommendedLabels } from "./labels.js";

/** The file name inside `DASK_CONFIG_DIR`; Dask reads every `*.yaml` there. */
export const DASK_CONFIG_FILE = "dask-workspace.yaml";
const VOLUME = "dask-config";

export function daskConfigMap(
  cfg: WorkspaceConfig,
  opts: { instance: string; name: string },
): k8s.types.input.core.v1.ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: opts.name,
      namespace: cfg.namespace,
      labels: recommendedLabels(opts.instance, "config"),
    },
    data: { [DASK_CONFIG_FILE]: daskConfigYaml(cfg) },
  };
}

/**
 * A pod-template annotation that changes whenever the Dask config text changes. A ConfigMap edit
 * alone does not restart pods, and the scheduler reads its config only at start-up: without this,
 * a new `saturation` would silently not apply until the next unrelated restart.
 */
export function daskConfigChecksum(cfg: WorkspaceConfig): Record<string, string> {
  const digest = createHash("sha256").update(daskConfigYaml(cfg)).digest("hex");
  return { "dask-workspace/dask-config-sha256": digest };
}

export function daskConfigVolume(configMapName: string): k8s.types.input.core.v1.Volume {
  return { name: VOLUME, configMap: { name: configMapName } };
}

export function daskConfigMount(): k8s.types.input.core.v1.VolumeMount {
  return { name: VOLUME, mountPath: DASK_CONFIG_DIR, readOnly: true };
}

/** `DASK_CONFIG` points Dask at the mounted directory (it is searched after the built-in defaults). */
export function daskConfigEnv(): k8s.types.input.core.v1.EnvVar[] {
  return [{ name: "DASK_CONFIG", value: DASK_CONFIG_DIR }];
}
