/**
 * The runner: a ServiceAccount that may only read pods and events (to see OOM kills and
 * evictions), and one Kubernetes Job per `jobs.<name>` entry that runs
 * `python -m dask_workspace run` against the workspace's scheduler.
 */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import type * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { RESULTS_DIR, resultsKind } from "../config-results.js";
import type { JobConfig, WorkspaceConfig } from "../types.js";
import { daskConfigEnv, daskConfigMount, daskConfigVolume } from "./daskconfig.js";
import { jobNames, recommendedLabels, selectorLabels, type WorkspaceNames } from "./labels.js";
import { type NodePlacement, placementFields } from "./placement.js";
import {
  SCRATCH_DIR,
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
  scratchVolume,
  scratchVolumeMount,
  withEphemeralStorage,
} from "./security.js";
import { tlsVolumeMounts, tlsVolumes } from "./tls.js";

/** Where the study ConfigMap is mounted in the runner container. */
export const STUDY_DIR = "/study";
/** Where the runner writes its summary JSON (scratch; the runner also logs it whole, as one line). */
export const SUMMARY_PATH = `${SCRATCH_DIR}/summary.json`;

/** A ConfigMap key: `[-._a-zA-Z0-9]+`. */
const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]+$/;

/**
 * The study's file name inside the ConfigMap and `STUDY_DIR`: its own base name when that is a
 * valid ConfigMap key, else `study<ext>` (the extension tells the runner YAML from JSON).
 */
export function studyFileName(studyPath: string): string {
  const base = posix.basename(studyPath.replaceAll("\\", "/"));
  if (CONFIGMAP_KEY.test(base) && base !== "." && base !== "..") {
    return base;
  }
  const ext = posix.extname(base);
  return `study${CONFIGMAP_KEY.test(ext) ? ext : ".yaml"}`;
}

/** The runner command for one job, per the runner contract (docs/runner.md). */
export function runnerCommand(
  job: JobConfig,
  opts: { schedulerAddress: string; studyFile: string; summaryPath: string },
): string[] {
  return [
    "python",
    "-m",
    "dask_workspace",
    "run",
    opts.studyFile,
    "--scheduler",
    opts.schedulerAddress,
    "--results",
    job.results,
    "--mode",
    job.mode,
    "--window",
    String(job.window),
    "--batch-size",
    String(job.batchSize),
    "--chunking",
    job.chunking,
    ...(job.chunkSeconds !== undefined ? ["--chunk-seconds", String(job.chunkSeconds)] : []),
    "--summary",
    opts.summaryPath,
  ];
}

/**
 * With `runner.ephemeral: true` only: a writable emptyDir mount for a results URI that is a local
 * absolute path outside the scratch dir (the root filesystem is read-only). Such results live only
 * as long as the pod. URIs with a scheme, relative paths (the working directory is the scratch
 * dir) and paths under it need nothing. Without `ephemeral`, local results are on the results
 * volume (`resultsClaim`).
 */
export function localResultsMountPath(results: string): string | undefined {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(results) || !results.startsWith("/")) {
    return undefined;
  }
  const normalized = posix.normalize(results);
  if (normalized === SCRATCH_DIR || normalized.startsWith(`${SCRATCH_DIR}/`)) {
    return undefined;
  }
  return normalized;
}

/**
 * The runner's RBAC rules: read-only, pods and events only. The runner watches its workers' pods
 * for `OOMKilled` terminations and reads events to explain a dying cluster; it never needs to
 * change anything, so a compromised study gets no write access to the cluster.
 */
export function runnerRoleRules(): k8s.types.input.rbac.v1.PolicyRule[] {
  return [{ apiGroups: [""], resources: ["pods", "events"], verbs: ["get", "list", "watch"] }];
}

export interface RunnerContext {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
  schedulerAddress: string;
  placement?: NodePlacement;
  /** Annotations on the ServiceAccount (workload identity: `azure.workload.identity/client-id`). */
  serviceAccountAnnotations?: Record<string, pulumi.Input<string>>;
  /** Extra labels on Job pods (workload identity: `azure.workload.identity/use: "true"`). */
  jobPodLabels?: Record<string, string>;
  /** Container image; default `cfg.images.runner`. */
  image?: pulumi.Input<string>;
  /** Extra container environment, e.g. `AZURE_STORAGE_ACCOUNT_NAME`. */
  env?: Record<string, pulumi.Input<string>>;
}

export function runnerServiceAccount(ctx: RunnerContext): k8s.types.input.core.v1.ServiceAccount {
  const { cfg, instance } = ctx;
  const annotations = ctx.serviceAccountAnnotations ?? {};
  return {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: {
      name: cfg.runner.serviceAccountName,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "runner", cfg.images.runner),
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    },
  };
}

export function runnerRole(ctx: RunnerContext): k8s.types.input.rbac.v1.Role {
  const { cfg, instance, names } = ctx;
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: {
      name: names.runner,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "runner", cfg.images.runner),
    },
    rules: runnerRoleRules(),
  };
}

export function runnerRoleBinding(ctx: RunnerContext): k8s.types.input.rbac.v1.RoleBinding {
  const { cfg, instance, names } = ctx;
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: {
      name: names.runner,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "runner", cfg.images.runner),
    },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: names.runner },
    subjects: [
      { kind: "ServiceAccount", name: cfg.runner.serviceAccountName, namespace: cfg.namespace },
    ],
  };
}

/** Where secrets named by `runner.resultsSecret` are mounted (files, e.g. a key file). */
export const RESULTS_SECRET_DIR = "/var/run/secrets/dask-workspace/results";

/** The ConfigMap key of bundle file `i` (in sorted order): `f0000`, `f0001`, ... */
export function bundleKey(i: number): string {
  return `f${String(i).padStart(4, "0")}`;
}

/**
 * The study in the runner pod: the ConfigMap's contents and the volume's `items`, which lay the
 * bundle out as the study folder under `STUDY_DIR`, and the study file's path there. Without a
 * bundle (or when the bundle leaves the study file out), the study file travels in `data`.
 */
export function studyLayout(job: JobConfig): {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
  items?: Array<{ key: string; path: string }>;
  studyFile: string;
} {
  const bundle = job.bundle;
  if (bundle === undefined) {
    const file = studyFileName(job.studyPath);
    return { data: { [file]: job.studyText }, studyFile: `${STUDY_DIR}/${file}` };
  }
  const base = posix.basename(job.studyPath.replaceAll("\\", "/"));
  const binaryData: Record<string, string> = {};
  const items = bundle.files.map((f, i) => {
    binaryData[bundleKey(i)] = f.base64;
    return { key: bundleKey(i), path: f.path };
  });
  if (bundle.files.some((f) => f.path === base)) {
    return { binaryData, items, studyFile: `${STUDY_DIR}/${base}` };
  }
  const key = studyFileName(job.studyPath);
  return {
    data: { [key]: job.studyText },
    binaryData,
    items: [...items, { key, path: key }],
    studyFile: `${STUDY_DIR}/${key}`,
  };
}

/**
 * The study bundle (study file and its folder), shipped to the runner as a ConfigMap: the runner
 * image knows no studies. `bundleSizeProblem` has already refused a bundle too large for one.
 */
export function studyConfigMap(
  ctx: RunnerContext,
  job: JobConfig,
): k8s.types.input.core.v1.ConfigMap {
  const { cfg, instance } = ctx;
  const layout = studyLayout(job);
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: jobNames(instance, job.name).study,
      namespace: cfg.namespace,
      labels: { ...recommendedLabels(instance, "runner", cfg.images.runner), ...jobLabel(job) },
    },
    ...(layout.data !== undefined ? { data: layout.data } : {}),
    ...(layout.binaryData !== undefined ? { binaryData: layout.binaryData } : {}),
  };
}

/** Whether any runner Job keeps its results on the results volume (then the claim is created). */
export function needsResultsVolume(cfg: WorkspaceConfig): boolean {
  return !cfg.runner.ephemeral && cfg.jobs.some((j) => resultsKind(j.results).kind === "volume");
}

/**
 * The results PersistentVolumeClaim: mounted at `/results` in every runner Job, so results outlive
 * the pod and a re-run resumes. `index.ts` gives it (and the namespace) Pulumi's `retainOnDelete`
 * when `runner.resultsVolume.retainOnDelete`, so removing a job or the workspace keeps them.
 */
export function resultsClaim(ctx: RunnerContext): k8s.types.input.core.v1.PersistentVolumeClaim {
  const { cfg, instance, names } = ctx;
  const v = cfg.runner.resultsVolume;
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: {
      name: names.results,
      namespace: cfg.namespace,
      labels: recommendedLabels(instance, "results", cfg.images.runner),
      // Pulumi would otherwise wait for the claim to be Bound, which a WaitForFirstConsumer
      // StorageClass (kind, AKS) only does once a runner pod uses it: the Jobs depend on it.
      annotations: { "pulumi.com/skipAwait": "true" },
    },
    spec: {
      accessModes: [v.accessMode],
      resources: { requests: { storage: v.size.quantity } },
      ...(v.storageClass !== undefined ? { storageClassName: v.storageClass } : {}),
    },
  };
}

/** The results volume and mount of one runner Job, per where its results go. */
function resultsStorage(
  ctx: RunnerContext,
  job: JobConfig,
): { volumes: k8s.types.input.core.v1.Volume[]; mounts: k8s.types.input.core.v1.VolumeMount[] } {
  const { cfg } = ctx;
  const volumes: k8s.types.input.core.v1.Volume[] = [];
  const mounts: k8s.types.input.core.v1.VolumeMount[] = [];
  if (needsResultsVolume(cfg)) {
    // Every Job mounts the claim, so `kubectl cp` from any runner pod reaches every job's results.
    volumes.push({ name: "results", persistentVolumeClaim: { claimName: ctx.names.results } });
    mounts.push({ name: "results", mountPath: RESULTS_DIR });
  } else {
    // runner.ephemeral: validation warned that these results die with the pod.
    const local = localResultsMountPath(job.results);
    if (local !== undefined) {
      // Sized like the results volume it stands in for; counted in the pod's ephemeral storage.
      volumes.push({
        name: "results",
        emptyDir: { sizeLimit: cfg.runner.resultsVolume.size.quantity },
      });
      mounts.push({ name: "results", mountPath: local });
    }
  }
  if (cfg.runner.resultsSecret !== undefined) {
    volumes.push({ name: "results-secret", secret: { secretName: cfg.runner.resultsSecret } });
    mounts.push({ name: "results-secret", mountPath: RESULTS_SECRET_DIR, readOnly: true });
  }
  return { volumes, mounts };
}

/**
 * Pod-template annotations that change with the study text and with the bundle (the study's
 * code). The Job only names the study's ConfigMap, so without them an edited study or model would
 * update the ConfigMap and never run: with them, the Job's (immutable) template changes and
 * `pulumi up` replaces the Job, which runs the new code.
 */
export function studyChecksum(job: JobConfig): Record<string, string> {
  return {
    "dask-workspace/study-sha256": createHash("sha256").update(job.studyText).digest("hex"),
    ...(job.bundle !== undefined ? { "dask-workspace/bundle-sha256": job.bundle.hash } : {}),
  };
}

function jobLabel(job: JobConfig): Record<string, string> {
  return { "dask-workspace/job": job.name };
}

/**
 * One runner Job. `pulumi.com/skipAwait` because a study runs for hours and `pulumi up` must not
 * block on it; `backoffLimit` bounds retries of a crashing runner (each retry resumes from the
 * results manifest), `activeDeadlineSeconds` bounds the whole run, and the TTL cleans up after.
 */
export function runnerJob(ctx: RunnerContext, job: JobConfig): k8s.types.input.batch.v1.Job {
  const { cfg, instance } = ctx;
  const names = jobNames(instance, job.name);
  const layout = studyLayout(job);
  const storage = resultsStorage(ctx, job);
  const podLabels = {
    ...recommendedLabels(instance, "runner", cfg.images.runner),
    ...jobLabel(job),
    ...(ctx.jobPodLabels ?? {}),
  };
  const resources = { cpu: cfg.runner.cpu, memory: cfg.runner.memory.quantity };
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: names.job,
      namespace: cfg.namespace,
      labels: { ...recommendedLabels(instance, "runner", cfg.images.runner), ...jobLabel(job) },
      annotations: { "pulumi.com/skipAwait": "true" },
    },
    spec: {
      backoffLimit: job.backoffLimit,
      ttlSecondsAfterFinished: job.ttlSecondsAfterFinished,
      activeDeadlineSeconds: job.activeDeadlineSeconds,
      template: {
        metadata: { labels: podLabels, annotations: studyChecksum(job) },
        spec: {
          restartPolicy: "Never",
          serviceAccountName: cfg.runner.serviceAccountName,
          // The runner reads pods and events through the API (see `runnerRoleRules`).
          automountServiceAccountToken: true,
          securityContext: restrictedPodSecurityContext(),
          ...placementFields(ctx.placement),
          containers: [
            {
              name: "runner",
              image: ctx.image ?? cfg.images.runner,
              imagePullPolicy: cfg.images.pullPolicy,
              workingDir: SCRATCH_DIR,
              command: runnerCommand(job, {
                schedulerAddress: ctx.schedulerAddress,
                studyFile: layout.studyFile,
                summaryPath: SUMMARY_PATH,
              }),
              env: [
                ...daskConfigEnv(),
                { name: "HOME", value: SCRATCH_DIR },
                { name: "PYTHONUNBUFFERED", value: "1" },
                // The runner watches this workspace's worker pods for OOMKilled (its Role allows
                // get/list/watch on pods). Select by instance too, so two workspaces sharing a
                // namespace never count each other's kills.
                {
                  name: "DASK_WORKSPACE__RUNNER__KUBERNETES__WORKER_SELECTOR",
                  value: workerPodSelector(instance),
                },
                ...Object.entries(ctx.env ?? {}).map(([name, value]) => ({ name, value })),
              ],
              // Object store credentials: every key of the Secret as a variable (AWS_ACCESS_KEY_ID,
              // AZURE_STORAGE_CONNECTION_STRING, ...); files stay readable under RESULTS_SECRET_DIR.
              ...(cfg.runner.resultsSecret !== undefined
                ? { envFrom: [{ secretRef: { name: cfg.runner.resultsSecret } }] }
                : {}),
              resources: withEphemeralStorage(resources, cfg.hardening.storage.runner),
              securityContext: restrictedContainerSecurityContext(),
              volumeMounts: [
                daskConfigMount(),
                scratchVolumeMount(),
                { name: "study", mountPath: STUDY_DIR, readOnly: true },
                ...storage.mounts,
                ...tlsVolumeMounts(cfg),
              ],
            },
          ],
          volumes: [
            daskConfigVolume(ctx.names.daskConfig),
            scratchVolume(cfg.hardening.storage.runner),
            {
              name: "study",
              configMap: {
                name: names.study,
                ...(layout.items !== undefined ? { items: layout.items } : {}),
              },
            },
            ...storage.volumes,
            ...tlsVolumes(cfg, instance, ctx.names),
          ],
        },
      },
    },
  };
}

/** The label selector of one workspace's worker pods, as the runner's pod watcher takes it. */
export function workerPodSelector(instance: string): string {
  return Object.entries(selectorLabels(instance, "worker"))
    .map(([key, value]) => `${key}=${value}`)
    .join(",");
}
