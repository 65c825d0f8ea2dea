/**
 * Workspace configs for tests, built through the real `parseWorkspaceConfig` (so they have
 * exactly the shape the program gets), from raw stack-config objects.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseWorkspaceConfig } from "../../infra/config.js";
import type { WorkspaceConfig } from "../../infra/types.js";

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** A study file inside the project, as a stack config would name it (relative to the root). */
export const TEST_STUDY = "test/helpers/study.yaml";

/** A static (no HPA) workspace with lifetime recycling and one job. */
export const STATIC_RAW: Record<string, unknown> = {
  target: "kubernetes",
  namespace: "sims",
  images: { dask: "registry.example/dask:2026.8.0", runner: "registry.example/runner:2026.8.0" },
  workers: {
    replicas: 3,
    nprocs: 4,
    threadsPerProcess: 1,
    podMemory: "16Gi",
    memoryPerProcess: "3584Mi",
    cpu: "4",
    lifetime: { duration: "1h", stagger: "5m", restart: true },
    saturation: 1.25,
    retireTimeoutSeconds: 120,
  },
  autoscaling: { enabled: false },
  jobs: {
    calibration: {
      study: TEST_STUDY,
      results: "az://results/calibration",
      mode: "window",
      window: 8,
      backoffLimit: 2,
      ttlSecondsAfterFinished: 3600,
      activeDeadlineSeconds: 7200,
    },
  },
};

/** The same workspace with the HPA owning the worker count. */
export const AUTOSCALED_RAW: Record<string, unknown> = {
  ...STATIC_RAW,
  workers: { ...(STATIC_RAW.workers as object), saturation: "inf" },
  autoscaling: {
    enabled: true,
    minReplicas: 2,
    maxReplicas: 10,
    targetCpuUtilization: 70,
    scaleDown: { stabilizationWindowSeconds: 900, podsPerPeriod: 1, periodSeconds: 240 },
  },
};

export function workspaceConfig(raw: Record<string, unknown>, stack = "test"): WorkspaceConfig {
  const result = parseWorkspaceConfig(raw, { baseDir: PROJECT_ROOT, stack });
  if (!result.ok) {
    throw new Error(
      `test config invalid:\n${result.problems.map((p) => `${p.path}: ${p.message}`).join("\n")}`,
    );
  }
  return result.config;
}
