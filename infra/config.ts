/**
 * The stack config: the ONLY module that reads `pulumi.Config`.
 *
 * One zod schema ({@link StackConfigSchema}) covers every key of docs/configuration.md "Stack
 * configuration"; {@link parseWorkspaceConfig} validates a raw config object with it, applies the
 * cross-field rules (headroom, threshold order, HPA bounds, ...), reads job study files, resolves
 * every default and returns the typed {@link WorkspaceConfig}. It reports EVERY problem at once,
 * each with its key path, the numbers and a fix. {@link loadConfig} is the Pulumi entry point and
 * throws `pulumi.RunError`, which Pulumi prints without a stack trace.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { closest, distance } from "fastest-levenshtein";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { azureFitProblems } from "./azure/vm-sizes.js";
import {
  AzureSecurityShape,
  azureSecurityChecks,
  azureSecurityIssues,
} from "./config-azure-security.js";
import {
  AUTOSCALING_DASK_KEYS,
  MonitoringSchema,
  resolveAutoscaling,
} from "./config-autoscaling.js";
import { misspeltNamespaceProblems, resultsProblems, resultsUriProblem } from "./config-results.js";
import {
  imageRef,
  NetworkSchema,
  resolveHardening,
  runnerHardeningKeys,
  schedulerHardeningKeys,
  workersHardeningKeys,
} from "./config-security.js";
import { resolveTls, TlsSchema } from "./config-tls.js";
import { ConfigError, formatProblems, type Problem } from "./errors.js";
import {
  formatQuantity,
  headroomPlan,
  headroomSettingProblems,
  parseCpuMillis,
  parseQuantity,
  QuantityError,
  type MemoryLimitSpec,
} from "./memory.js";
import type { JobConfig, Memory, RunnerMode, WorkerLifetime, WorkspaceConfig } from "./types.js";
import { readJobBundle, type StudyBundle } from "./workspace/bundle.js";

export { ConfigError, formatProblems, type Problem } from "./errors.js";

/** The Pulumi project name and config namespace. */
export const PROJECT = "dask-workspace";

export type ParseResult =
  | { ok: true; config: WorkspaceConfig; warnings: string[] }
  | { ok: false; problems: Problem[]; warnings: string[] };

// ---------------------------------------------------------------------------------------------
// Field types
// ---------------------------------------------------------------------------------------------

const EXAMPLE_MEMORY = "e.g. 4Gi or 3584Mi";

/** Turns a quantity string or integer byte count into bytes, or explains why not. */
function memoryBytes(v: unknown): { bytes: number } | { error: string } {
  if (typeof v === "number") {
    if (Number.isSafeInteger(v)) return { bytes: v };
    return {
      error: `${v} is not a whole number of bytes; use a Kubernetes quantity, ${EXAMPLE_MEMORY}`,
    };
  }
  if (typeof v === "string") {
    try {
      return { bytes: parseQuantity(v) };
    } catch (e) {
      if (e instanceof QuantityError) return { error: e.message };
      throw e;
    }
  }
  return { error: `expected a Kubernetes quantity, ${EXAMPLE_MEMORY}; got ${describe(v)}` };
}

const toMemory = (bytes: number): Memory => ({ bytes, quantity: formatQuantity(bytes) });

/**
 * A memory size in Kubernetes quantity syntax (or an integer byte count), parsed exactly.
 * `positive: false` leaves the sign check to the caller (headroom reports it with context).
 */
function memory(opts: { positive: boolean } = { positive: true }) {
  return z.union([z.string(), z.number()]).transform((v, ctx): Memory => {
    const r = memoryBytes(v);
    if ("error" in r) {
      ctx.addIssue({ code: "custom", message: r.error, input: v });
      return z.NEVER;
    }
    if (opts.positive && r.bytes <= 0) {
      ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} must be positive`, input: v });
      return z.NEVER;
    }
    return toMemory(r.bytes);
  });
}

/**
 * `workers.memoryPerProcess`: a quantity, or Dask's `auto` / a fraction 0 < f ≤ 1, which are
 * parsed here so that headroom rules can reject them with a precise message.
 */
const memoryLimit = z.union([z.string(), z.number()]).transform((v, ctx): MemoryLimitSpec => {
  if (v === "auto") return { kind: "auto" };
  if (typeof v === "number" && v > 0 && v <= 1) return { kind: "fraction", fraction: v };
  const r = memoryBytes(v);
  if ("error" in r) {
    ctx.addIssue({ code: "custom", message: r.error, input: v });
    return z.NEVER;
  }
  if (r.bytes <= 0) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} must be positive`, input: v });
    return z.NEVER;
  }
  return { kind: "bytes", bytes: r.bytes };
});

/** A Kubernetes CPU quantity (`"2"`, `"1500m"`, or a YAML number of cores). */
const cpu = z.union([z.string(), z.number()]).transform((v, ctx): string => {
  const text = String(v);
  try {
    parseCpuMillis(text);
    return text;
  } catch (e) {
    if (!(e instanceof QuantityError)) throw e;
    ctx.addIssue({ code: "custom", message: e.message, input: v });
    return z.NEVER;
  }
});

const DURATION_UNITS: Record<string, number> = {
  ms: 0.001,
  s: 1,
  sec: 1,
  second: 1,
  seconds: 1,
  m: 60,
  min: 60,
  minute: 60,
  minutes: 60,
  h: 3600,
  hr: 3600,
  hour: 3600,
  hours: 3600,
  d: 86400,
  day: 86400,
  days: 86400,
  w: 604800,
  week: 604800,
  weeks: 604800,
};

/**
 * A duration (`"1h"`, `"90m"`, `"3600s"`, or a number of seconds), returned in whole seconds.
 * It is rendered as `<seconds>s`, a spelling every Dask version parses the same way.
 */
const duration = z.union([z.string(), z.number()]).transform((v, ctx): number => {
  let seconds: number | undefined;
  if (typeof v === "number") seconds = v;
  else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/.exec(v);
    const unit = m === null ? undefined : DURATION_UNITS[m[2] === "" ? "s" : (m[2] as string)];
    if (m !== null && unit !== undefined) seconds = Number(m[1]) * unit;
  }
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(v)} is not a duration; use a number with a unit: s, m, h or d (e.g. "6h", "30m")`,
      input: v,
    });
    return z.NEVER;
  }
  return Math.round(seconds);
});

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dnsLabel = (max: number) =>
  z
    .string()
    .max(max, { error: (iss) => `${JSON.stringify(iss.input)} is longer than ${max} characters` })
    .regex(DNS_LABEL, {
      error: (iss) =>
        `${JSON.stringify(iss.input)} is not a DNS label: use lower-case letters, digits and '-', starting and ending with a letter or digit`,
    });

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

/** `--window`: "auto" (sized from the cluster) or a whole number of groups ≥ 1. */
const window = z
  .union([z.literal("auto"), z.number()], {
    error: (iss) =>
      `${describe(iss.input)} is not a window size: use "auto" or a whole number of groups ≥ 1`,
  })
  .transform((v, ctx): "auto" | number => {
    if (v !== "auto" && (!Number.isInteger(v) || v < 1)) {
      ctx.addIssue({
        code: "custom",
        message: `${v} is not a window size: use "auto" or a whole number of groups ≥ 1`,
        input: v,
      });
      return z.NEVER;
    }
    return v;
  });
const mode = z.enum(["window", "batch"]);
/** `--chunking`: pack short replicates into Dask tasks (`auto`) or one task per replicate. */
const chunking = z.enum(["auto", "off"]);
/** `--chunk-seconds`: the duration a packed task aims at, in seconds (0 < s ≤ 3600). */
const chunkSeconds = z.number().refine((s) => s > 0 && s <= 3600, {
  error: (iss) =>
    `${describe(iss.input)} is not a chunk duration: use seconds > 0 and ≤ 3600, e.g. 0.2 (packed tasks of about 200 ms)`,
});

/** Results location: a path, or an object store URI (`az://`, `s3://`, `gs://`). */
const resultsUri = z.string().superRefine((v, ctx) => {
  const message = resultsUriProblem(v);
  if (message !== undefined) ctx.addIssue({ code: "custom", message });
});

// ---------------------------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------------------------

/** Dask's defaults for the worker memory thresholds (fractions of `--memory-limit`). */
export const DEFAULT_THRESHOLDS = { target: 0.6, spill: 0.7, pause: 0.8, terminate: 0.95 } as const;

const fraction = z.number().gt(0).lte(1);

const MemoryThresholdsSchema = z
  .strictObject({
    /** Fraction of the limit at which managed memory starts spilling to disk. Default 0.6. */
    target: fraction.default(DEFAULT_THRESHOLDS.target),
    /** Fraction of the limit at which process memory triggers spilling. Default 0.7. */
    spill: fraction.default(DEFAULT_THRESHOLDS.spill),
    /** Fraction at which the worker stops starting new tasks. Default 0.8. */
    pause: fraction.default(DEFAULT_THRESHOLDS.pause),
    /** Fraction at which the nanny restarts the worker process. Default 0.95. */
    terminate: fraction.default(DEFAULT_THRESHOLDS.terminate),
  })
  .superRefine((t, ctx) => {
    const out: string[] = [];
    if (!(t.target <= t.spill)) out.push(`target ${t.target} > spill ${t.spill}`);
    if (!(t.spill <= t.pause)) out.push(`spill ${t.spill} > pause ${t.pause}`);
    if (!(t.pause < t.terminate)) out.push(`pause ${t.pause} ≥ terminate ${t.terminate}`);
    if (out.length > 0) {
      ctx.addIssue({
        code: "custom",
        message: `out of order (${out.join(", ")}); they must satisfy target ≤ spill ≤ pause < terminate ≤ 1, e.g. Dask's defaults 0.6 ≤ 0.7 ≤ 0.8 < 0.95`,
      });
    }
  });

const LifetimeSchema = z.strictObject({
  /** Retire and replace each worker process after about this long (`--lifetime`). Required. */
  duration,
  /** Random spread ± around `duration` (`--lifetime-stagger`). Default: a tenth of `duration`. */
  stagger: duration.optional(),
  /** Start a fresh process after retirement (`--lifetime-restart`). Default true. */
  restart: z.boolean().default(true),
});

/** `inf` (YAML `.inf` or the string "inf") or a positive number. */
const saturation = z
  .union([z.number(), z.literal("inf")], {
    error: (iss) =>
      `${describe(iss.input)} is not a valid saturation; use a number > 0 (e.g. 1.0) or "inf"`,
  })
  .transform((v, ctx): number | "inf" => {
    if (v === "inf" || v === Number.POSITIVE_INFINITY) return "inf";
    if (Number.isNaN(v) || v <= 0) {
      ctx.addIssue({
        code: "custom",
        message: `${v} must be > 0 (or "inf" to turn queuing off); 1.0 hands each worker one task per thread, Dask's default is 1.1`,
        input: v,
      });
      return z.NEVER;
    }
    return v;
  });

const WorkersSchema = z
  .strictObject({
    /** Worker pods; the initial size when autoscaling is on. Default 2. */
    replicas: int(0).default(2),
    /** Worker processes per pod (`--nworkers`). Default 2. */
    nprocs: int(1, 256).default(2),
    /** Threads per process (`--nthreads`). Default 1 (simulations hold the GIL). */
    threadsPerProcess: int(1, 256).default(1),
    /** Pod memory request = limit (Kubernetes quantity). Default 4Gi. */
    podMemory: memory().default({ bytes: 4 * 1024 ** 3, quantity: "4Gi" }),
    /** Per-process `--memory-limit`; derived from podMemory − headroom when absent. */
    memoryPerProcess: memoryLimit.optional(),
    /** Memory kept for the nanny host process and overshoot; the measured minimum when absent. */
    headroom: memory({ positive: false }).optional(),
    /** CPU request = limit; default nprocs × threadsPerProcess cores. */
    cpu: cpu.optional(),
    /** Worker process recycling; off when absent. */
    lifetime: LifetimeSchema.optional(),
    /** Dask memory thresholds, fractions of memoryPerProcess. */
    memoryThresholds: MemoryThresholdsSchema.prefault({}),
    /** `distributed.scheduler.worker-saturation`, set on the scheduler. Default 1.0. */
    saturation: saturation.default(1.0),
    /** `distributed.scheduler.allowed-failures`. Default 3 (Dask's). */
    allowedFailures: int(0, 100).default(3),
    /** `MALLOC_TRIM_THRESHOLD_` in bytes. Default 65536. */
    mallocTrimThreshold: int(0).default(65536),
    /** Seconds the preStop retirement may take. Default 60. */
    retireTimeoutSeconds: int(1, 3600).default(60),
    /** Hardening keys (spillStorage): infra/config-security.ts. */
    ...workersHardeningKeys,
  })
  .superRefine(
    (w, ctx) => {
      // Runs even when other worker keys failed, so headroom is always checked: guard each input.
      const nprocs = w.nprocs;
      const pod = w.podMemory as unknown;
      const spec = w.memoryPerProcess as unknown;
      const head = w.headroom as unknown;
      const report = (problems: Problem[]) => {
        for (const p of problems) {
          ctx.addIssue({ code: "custom", message: p.message, path: [p.path.split(".").pop()!] });
        }
      };
      if (Number.isInteger(nprocs) && nprocs >= 1) {
        if (
          isMemory(pod) &&
          (spec === undefined || isLimitSpec(spec)) &&
          (head === undefined || isMemory(head))
        ) {
          const r = headroomPlan({
            nprocs,
            podMemory: pod.bytes,
            memoryPerProcess: spec ?? { kind: "derived" },
            headroom: head?.bytes,
          });
          if (!r.ok) report(r.problems);
        } else if (isMemory(head)) {
          report(headroomSettingProblems(nprocs, head.bytes));
        }
      }
      const lifetime = w.lifetime as unknown;
      if (isLifetime(lifetime) && lifetime.stagger !== undefined) {
        if (lifetime.stagger >= lifetime.duration) {
          ctx.addIssue({
            code: "custom",
            path: ["lifetime", "stagger"],
            message: `${lifetime.stagger}s is not shorter than lifetime.duration ${lifetime.duration}s; Dask picks each lifetime in duration ± stagger, so keep stagger well below duration (e.g. a tenth)`,
          });
        }
      }
    },
    { when: () => true },
  );

const SchedulerSchema = z.strictObject({
  /** Scheduler comm port. Default 8786. */
  port: int(1024, 65535).default(8786),
  /** Dashboard / HTTP API port. Default 8787. */
  dashboardPort: int(1024, 65535).default(8787),
  /** CPU request = limit. Default "1". */
  cpu: cpu.default("1"),
  /** Memory request = limit. Default 2Gi. */
  memory: memory().default(toMemory(2 * 1024 ** 3)),
  /** Hardening keys (scratchStorage, dashboardFrom, disruptionBudget): infra/config-security.ts. */
  ...schedulerHardeningKeys,
});

const ImagesSchema = z.strictObject({
  /** Scheduler and worker image (images/dask.Dockerfile). */
  dask: imageRef.default("dask-workspace/dask:0.1.0"),
  /** Runner image (images/runner.Dockerfile). */
  runner: imageRef.default("dask-workspace/runner:0.1.0"),
  /** Kubernetes imagePullPolicy. Default IfNotPresent. */
  pullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent"),
});

const AutoscalingSchema = z
  .strictObject({
    /** Scale the worker Deployment (mode: a CPU HPA, or a KEDA ScaledObject). Default false. */
    enabled: z.boolean().default(false),
    /** Fewest worker pods; 0 only in mode dask. Default 0 in mode dask, 1 in mode cpu. */
    minReplicas: int(0).optional(),
    /** Most worker pods. Default max(minReplicas, workers.replicas). */
    maxReplicas: int(1).optional(),
    /** Mode cpu: average CPU utilisation target, percent. Default 80. */
    targetCpuUtilization: int(1, 100).optional(),
    scaleDown: z
      .strictObject({
        /** Seconds of lower load before scaling down. Default 600. */
        stabilizationWindowSeconds: int(0, 3600).default(600),
        /** Pods removed per period at most. Default 1. */
        podsPerPeriod: int(1).default(1),
        /** Period of that rate limit, seconds. Default 300. */
        periodSeconds: int(1, 1800).default(300),
      })
      .prefault({}),
    ...AUTOSCALING_DASK_KEYS, // infra/config-autoscaling.ts
  })
  .superRefine(
    (a, ctx) => {
      if (Number.isInteger(a.minReplicas) && Number.isInteger(a.maxReplicas)) {
        if (a.minReplicas! > a.maxReplicas!) {
          ctx.addIssue({
            code: "custom",
            path: ["minReplicas"],
            message: `${a.minReplicas} is greater than maxReplicas ${a.maxReplicas}; lower minReplicas or raise maxReplicas to at least ${a.minReplicas}`,
          });
        }
      }
    },
    { when: () => true },
  );

const RunnerSchema = z.strictObject({
  /** ServiceAccount of the runner Jobs. Default "dask-runner". */
  serviceAccountName: dnsLabel(63).default("dask-runner"),
  /** `--mode`. Default window. */
  mode: mode.default("window"),
  /** `--window`: "auto" or a number of groups. Default auto. */
  window: window.default("auto"),
  /** `--batch-size` for mode batch, in groups. Default 200. */
  batchSize: int(1).default(200),
  /** `--chunking`: auto (pack replicates shorter than chunkSeconds) or off. Default auto. */
  chunking: chunking.default("auto"),
  /** `--chunk-seconds`: seconds a packed task aims at. Default: the runner's (0.2 s). */
  chunkSeconds: chunkSeconds.optional(),
  /** Results URI base: a path under /results or az://, s3://, gs://; each job writes under <results>/<job>. */
  results: resultsUri.optional(),
  /** The results volume (a PersistentVolumeClaim at /results in every runner Job). */
  resultsVolume: z
    .strictObject({
      /** Requested size. Default 10Gi. */
      size: memory().default(toMemory(10 * 1024 ** 3)),
      /** StorageClass; the cluster's default when absent. */
      storageClass: z.string().min(1).optional(),
      /** ReadWriteOnce (default) or ReadWriteMany (jobs running at once on different nodes). */
      accessMode: z.enum(["ReadWriteOnce", "ReadWriteMany"]).default("ReadWriteOnce"),
      /** Keep the claim (and the namespace) when Pulumi deletes them. Default true. */
      retainOnDelete: z.boolean().default(true),
    })
    .prefault({}),
  /** Secret (in the namespace) whose keys become the runner's environment: object store credentials. */
  resultsSecret: dnsLabel(253).optional(),
  /** Allow results in an emptyDir that dies with the pod (a warning). Default false. */
  ephemeral: z.boolean().default(false),
  /** Runner Job CPU request = limit. Default "1". */
  cpu: cpu.default("1"),
  /** Runner Job memory request = limit. Default 1Gi. */
  memory: memory().default(toMemory(1024 ** 3)),
  /** Hardening keys (scratchStorage): infra/config-security.ts. */
  ...runnerHardeningKeys,
});

const JobSchema = z.strictObject({
  /** Study file (YAML/JSON), relative to the project root. Required. */
  study: z.string().min(1),
  /** Results URI; default `<runner.results>/<job name>`. */
  results: resultsUri.optional(),
  /** Overrides runner.mode. */
  mode: mode.optional(),
  /** Overrides runner.window. */
  window: window.optional(),
  /** Overrides runner.batchSize. */
  batchSize: int(1).optional(),
  /** Overrides runner.chunking. */
  chunking: chunking.optional(),
  /** Overrides runner.chunkSeconds. */
  chunkSeconds: chunkSeconds.optional(),
  /** Job retries; a retry resumes from the results manifest. Default 1. */
  backoffLimit: int(0, 10).default(1),
  /** Seconds a finished Job (and its logs) is kept. Default 86400. */
  ttlSecondsAfterFinished: int(0).default(86400),
  /** Seconds after which a running Job is stopped. Default 86400. */
  activeDeadlineSeconds: int(1).default(86400),
});

const AzureSchema = z
  .strictObject({
    /** Azure region, e.g. westeurope. Required. */
    location: z.string().min(1),
    /** Existing resource group to use; one is created when absent. */
    resourceGroupName: z.string().min(1).optional(),
    /** AKS Kubernetes version, e.g. "1.33"; AKS's default when absent. */
    kubernetesVersion: z
      .string()
      .regex(/^\d+\.\d+(\.\d+)?$/, { error: 'must look like "1.33" or "1.33.2"' })
      .optional(),
    systemPool: z
      .strictObject({
        /** VM size of the system pool. Default Standard_D2s_v5. */
        vmSize: z.string().min(1).default("Standard_D2s_v5"),
        /** Nodes in the system pool. Default 1. */
        count: int(1, 100).default(1),
      })
      .prefault({}),
    workerPool: z
      .strictObject({
        /** VM size of the worker pool. Default Standard_E4s_v5 (4 vCPU, 32 GiB). */
        vmSize: z.string().min(1).default("Standard_E4s_v5"),
        /** Autoscaler minimum. Default 1. */
        minCount: int(0, 1000).default(1),
        /** Autoscaler maximum. Default 3. */
        maxCount: int(1, 1000).default(3),
        /** Spot VMs (cheaper, may be evicted). Default false. */
        spot: z.boolean().default(false),
      })
      .prefault({}),
    /** Container registry SKU. Default Basic. */
    registrySku: z.enum(["Basic", "Standard", "Premium"]).default("Basic"),
    /** Entra ID group object ids made cluster admins (turns on AKS-managed Entra ID). */
    adminGroupObjectIds: z
      .array(
        z
          .string()
          .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, {
            error: "must be an Entra ID object id (a GUID)",
          }),
      )
      .min(1)
      .optional(),
    /** Disable AKS local accounts. Default: true with Entra ID (azure.entraId.enabled). */
    disableLocalAccounts: z.boolean().optional(),
    // Entra ID, API server, upgrades, monitoring, storage: config-azure-security.ts.
    ...AzureSecurityShape,
  })
  .superRefine(
    (a, ctx) => {
      for (const issue of azureSecurityIssues(a)) ctx.addIssue({ code: "custom", ...issue });
      const p = a.workerPool as { minCount?: unknown; maxCount?: unknown } | undefined;
      if (typeof p?.minCount === "number" && typeof p.maxCount === "number") {
        if (p.minCount > p.maxCount) {
          ctx.addIssue({
            code: "custom",
            path: ["workerPool", "minCount"],
            message: `${p.minCount} is greater than maxCount ${p.maxCount}; lower minCount or raise maxCount`,
          });
        }
      }
    },
    { when: () => true },
  );

/**
 * The whole stack config (namespace `dask-workspace`), keys without the prefix. Unknown keys are
 * errors (typos would otherwise be silently ignored) with a "did you mean" hint.
 */
export const StackConfigSchema = z
  .strictObject({
    /** `azure` (AKS is created) or `kubernetes` (an existing cluster). Default kubernetes. */
    target: z.enum(["azure", "kubernetes"]).default("kubernetes"),
    /** Namespace for everything the workspace creates. Default `dask-<stack>`. */
    namespace: dnsLabel(63).optional(),
    /** target kubernetes: kubeconfig path; the current one when absent. */
    kubeconfig: z.string().min(1).optional(),
    /** target kubernetes: kubeconfig context; the current one when absent. */
    context: z.string().min(1).optional(),
    images: ImagesSchema.prefault({}),
    scheduler: SchedulerSchema.prefault({}),
    workers: WorkersSchema.prefault({}),
    autoscaling: AutoscalingSchema.prefault({}),
    /** Prometheus scraping of the scheduler and workers (infra/config-autoscaling.ts). */
    monitoring: MonitoringSchema.prefault({}),
    runner: RunnerSchema.prefault({}),
    /** Runner Jobs by name. */
    jobs: z.record(z.string(), JobSchema).default({}),
    /** Required when target is azure. */
    azure: AzureSchema.optional(),
    /** Egress rules (infra/config-security.ts, docs/security.md). */
    network: NetworkSchema.prefault({}),
    /** Dask TLS (infra/config-tls.ts). */
    tls: TlsSchema.prefault({}),
  })
  .superRefine(
    (c, ctx) => {
      if (c.target === "azure" && c.azure === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["azure"],
          message:
            "is required when target is azure; set at least azure.location (e.g. westeurope)",
        });
      }
      const jobs = c.jobs as unknown;
      if (jobs !== null && typeof jobs === "object") {
        for (const name of Object.keys(jobs)) {
          if (!DNS_LABEL.test(name) || name.length > 40) {
            ctx.addIssue({
              code: "custom",
              path: ["jobs", name],
              message: `job name ${JSON.stringify(name)} is used in resource names: use at most 40 lower-case letters, digits and '-', starting and ending with a letter or digit`,
            });
          }
        }
      }
      const sched = c.scheduler as { port?: unknown; dashboardPort?: unknown } | undefined;
      if (typeof sched?.port === "number" && sched.port === sched.dashboardPort) {
        ctx.addIssue({
          code: "custom",
          path: ["scheduler", "dashboardPort"],
          message: `${sched.port} is also scheduler.port; use two different ports (defaults 8786 and 8787)`,
        });
      }
    },
    { when: () => true },
  );

export type StackConfigInput = z.input<typeof StackConfigSchema>;
type StackConfig = z.output<typeof StackConfigSchema>;

function isMemory(v: unknown): v is Memory {
  return typeof v === "object" && v !== null && typeof (v as Memory).bytes === "number";
}
function isLimitSpec(v: unknown): v is MemoryLimitSpec {
  return typeof v === "object" && v !== null && typeof (v as { kind?: unknown }).kind === "string";
}
function isLifetime(v: unknown): v is { duration: number; stagger?: number } {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as { duration?: unknown }).duration === "number" &&
    ["number", "undefined"].includes(typeof (v as { stagger?: unknown }).stagger)
  );
}

// ---------------------------------------------------------------------------------------------
// Issues → problems
// ---------------------------------------------------------------------------------------------

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return JSON.stringify(v);
}

/** Walks the schema to the object at `segments` and returns its keys (for "did you mean"). */
function knownKeysAt(segments: readonly PropertyKey[]): string[] {
  let s: z.core.$ZodType | undefined = StackConfigSchema;
  for (const seg of [...segments, undefined]) {
    // Unwrap optional / default / prefault / pipe (transform) wrappers.
    for (let i = 0; i < 10 && s !== undefined; i++) {
      const def = s._zod.def as unknown as { innerType?: z.core.$ZodType; in?: z.core.$ZodType };
      const next = def.innerType ?? def.in;
      if (next === undefined) break;
      s = next;
    }
    if (s === undefined) return [];
    const def = s._zod.def as unknown as {
      type: string;
      shape?: Record<string, z.core.$ZodType>;
      valueType?: z.core.$ZodType;
    };
    if (seg === undefined) return def.type === "object" ? Object.keys(def.shape ?? {}) : [];
    if (def.type === "object") s = def.shape?.[String(seg)];
    else if (def.type === "record") s = def.valueType;
    else return [];
  }
  return [];
}

/** `"nproc"` → `did you mean "nprocs"?` when a known key is close. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  if (known.length === 0) return undefined;
  const lower = known.find((k) => k.toLowerCase() === key.toLowerCase());
  if (lower !== undefined) return lower;
  const best = closest(key, [...known]);
  return distance(key, best) <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

function issueToProblems(issue: z.core.$ZodIssue): Problem[] {
  const base = issue.path.map(String);
  const at = (segs: string[]) => segs.join(".");
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case "unrecognized_keys": {
      const known = knownKeysAt(issue.path);
      return issue.keys.map((key) => {
        const hint = didYouMean(key, known);
        return {
          path: at([...base, key]),
          message:
            `unknown key` +
            (hint !== undefined
              ? `; did you mean ${at([...base, hint])}?`
              : `; known keys${base.length > 0 ? ` of ${at(base)}` : ""}: ${known.join(", ")}`),
        };
      });
    }
    case "invalid_type": {
      const expected =
        issue.expected === "int"
          ? "a whole number"
          : issue.expected === "record" || issue.expected === "object"
            ? "a mapping"
            : `a ${issue.expected}`;
      const message =
        input === undefined
          ? `is required (${expected})`
          : `expected ${expected}, got ${describe(input)}`;
      return [{ path: at(base), message }];
    }
    case "invalid_value": {
      const options = issue.values.map((v) => JSON.stringify(v));
      const hint =
        typeof input === "string"
          ? didYouMean(
              input,
              issue.values.filter((v): v is string => typeof v === "string"),
            )
          : undefined;
      return [
        {
          path: at(base),
          message:
            `${describe(input)} is not one of ${options.join(", ")}` +
            (hint !== undefined ? `; did you mean ${JSON.stringify(hint)}?` : ""),
        },
      ];
    }
    case "too_small":
    case "too_big": {
      const limit = issue.code === "too_small" ? issue.minimum : issue.maximum;
      const op =
        issue.code === "too_small" ? (issue.inclusive ? "≥" : ">") : issue.inclusive ? "≤" : "<";
      const what =
        issue.origin === "string"
          ? `is too ${issue.code === "too_small" ? "short" : "long"}: its length must be ${op} ${String(limit)}`
          : issue.origin === "array"
            ? `must have ${op} ${String(limit)} entries`
            : `is out of range: must be ${op} ${String(limit)}`;
      return [{ path: at(base), message: `${describe(input)} ${what}` }];
    }
    case "invalid_union": {
      // Our unions carry their own messages where it matters; name what was given otherwise.
      const message = issue.message.startsWith("Invalid input")
        ? `${describe(input)} is not a valid value`
        : issue.message;
      return [{ path: at(base), message }];
    }
    default:
      return [{ path: at(base), message: issue.message }];
  }
}

// ---------------------------------------------------------------------------------------------
// Defaults and cross-section resolution
// ---------------------------------------------------------------------------------------------

function defaultNamespace(stack: string): string {
  const cleaned = `dask-${stack}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .slice(0, 63)
    .replace(/-+$/, "");
  return cleaned;
}

/** `{ chunkSeconds }` when set: unset leaves the runner's own default (workspace.yaml). */
function chunkSecondsOf(s: number | undefined): { chunkSeconds?: number } {
  return s === undefined ? {} : { chunkSeconds: s };
}

function joinUri(base: string, name: string): string {
  return `${base.replace(/\/+$/, "")}/${name}`;
}

function lifetimeOf(l: StackConfig["workers"]["lifetime"]): WorkerLifetime | undefined {
  if (l === undefined) return undefined;
  const stagger = l.stagger ?? Math.floor(l.duration / 10);
  return { duration: `${l.duration}s`, stagger: `${stagger}s`, restart: l.restart };
}

/** Reads and lightly checks one job's study file (the runner validates its contents fully). */
function readStudy(
  jobName: string,
  study: string,
  baseDir: string,
): { text: string } | { problem: Problem } {
  const key = `jobs.${jobName}.study`;
  const file = path.resolve(baseDir, study);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "not found"
        : code === "EISDIR"
          ? "is a directory"
          : `cannot be read (${code ?? String(e)})`;
    return {
      problem: {
        path: key,
        message: `${study} ${why} (paths are relative to the project root ${baseDir})`,
      },
    };
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    return {
      problem: {
        path: key,
        message: `${study} is not valid YAML or JSON: ${(e as Error).message.split("\n")[0]}`,
      },
    };
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    return {
      problem: {
        path: key,
        message: `${study} must hold a mapping (name, model, parameters, ...), got ${describe(doc)}`,
      },
    };
  }
  return { text };
}

/**
 * Validates a raw stack config (keys without the `dask-workspace:` prefix, values already parsed
 * from YAML/JSON) and resolves every default. Study files are read relative to `opts.baseDir`.
 * Never throws for bad input: every problem is returned at once.
 */
export function parseWorkspaceConfig(
  raw: Record<string, unknown>,
  opts: { baseDir: string; stack: string },
): ParseResult {
  const warnings: string[] = [];
  raw = withoutUnsetKeys(raw);
  const parsed = StackConfigSchema.safeParse(raw, { reportInput: true });
  const problems: Problem[] = parsed.success ? [] : parsed.error.issues.flatMap(issueToProblems);

  // Study files are checked even when other keys are wrong, so every problem shows at once.
  const studies = new Map<string, string>();
  const bundles = new Map<string, StudyBundle>();
  const rawJobs = raw["jobs"];
  if (rawJobs !== null && typeof rawJobs === "object" && !Array.isArray(rawJobs)) {
    for (const [name, job] of Object.entries(rawJobs as Record<string, unknown>)) {
      const study = (job as { study?: unknown } | null)?.study;
      if (typeof study !== "string" || study === "") continue;
      const r = readStudy(name, study, opts.baseDir);
      if ("problem" in r) problems.push(r.problem);
      else studies.set(name, r.text);
      const b = "problem" in r ? undefined : readJobBundle(name, study, opts.baseDir);
      if (b !== undefined && "problem" in b) problems.push(b.problem);
      else if (b !== undefined) bundles.set(name, b.bundle);
    }
  }
  if (!parsed.success || problems.length > 0)
    return { ok: false, problems: dedupe(problems), warnings };

  const c = parsed.data;
  const w = c.workers;
  const plan = headroomPlan({
    nprocs: w.nprocs,
    podMemory: w.podMemory.bytes,
    memoryPerProcess: w.memoryPerProcess ?? { kind: "derived" },
    headroom: w.headroom?.bytes,
  });
  if (!plan.ok) return { ok: false, problems: plan.problems, warnings }; // unreachable: schema ran it
  const cpuText = w.cpu ?? String(w.nprocs * w.threadsPerProcess);
  const cpuMillis = parseCpuMillis(cpuText);
  const threads = w.nprocs * w.threadsPerProcess;
  if (threads * 1000 > cpuMillis) {
    warnings.push(
      `workers.cpu: ${w.nprocs} processes × ${w.threadsPerProcess} threads = ${threads} threads on a CPU limit of ${cpuText}; tasks will be throttled, so raise workers.cpu to "${threads}" or lower threadsPerProcess/nprocs`,
    );
  }

  const scaling = resolveAutoscaling({
    target: c.target,
    autoscaling: c.autoscaling,
    replicas: w.replicas,
    azureWorkerMinCount: c.azure?.workerPool.minCount,
  });
  warnings.push(...scaling.warnings);
  if (scaling.problems.length > 0) return { ok: false, problems: scaling.problems, warnings };
  const { minReplicas, maxReplicas } = scaling.resolved;
  if (c.autoscaling.enabled && (w.replicas < minReplicas || w.replicas > maxReplicas)) {
    warnings.push(
      `workers.replicas: ${w.replicas} is outside autoscaling ${minReplicas}..${maxReplicas}; the HPA owns the replica count and will move it into that range`,
    );
  }
  if (c.target === "kubernetes" && c.azure !== undefined) {
    warnings.push("azure: ignored because target is kubernetes");
  }
  if (c.target === "azure" && (c.kubeconfig !== undefined || c.context !== undefined)) {
    warnings.push(
      "kubeconfig/context: ignored because target is azure (the AKS cluster's credentials are used)",
    );
  }

  const runnerResults = c.runner.results ?? (c.target === "azure" ? "az://results" : "/results");
  const jobs: JobConfig[] = Object.entries(c.jobs).map(([name, j]) => ({
    name,
    studyPath: j.study,
    studyText: studies.get(name) ?? "",
    bundle: bundles.get(name),
    results: j.results ?? joinUri(runnerResults, name),
    mode: (j.mode ?? c.runner.mode) as RunnerMode,
    window: j.window ?? c.runner.window,
    batchSize: j.batchSize ?? c.runner.batchSize,
    chunking: j.chunking ?? c.runner.chunking,
    ...chunkSecondsOf(j.chunkSeconds ?? c.runner.chunkSeconds),
    backoffLimit: j.backoffLimit,
    ttlSecondsAfterFinished: j.ttlSecondsAfterFinished,
    activeDeadlineSeconds: j.activeDeadlineSeconds,
  }));

  const durable = resultsProblems({
    target: c.target,
    jobs: jobs.map((j) => ({ ...j, explicit: c.jobs[j.name]?.results !== undefined })),
    runnerResults,
    ephemeral: c.runner.ephemeral,
    resultsSecret: c.runner.resultsSecret,
  });
  warnings.push(...durable.warnings);
  if (durable.problems.length > 0) return { ok: false, problems: durable.problems, warnings };

  const hardened = resolveHardening({
    ...c,
    workers: { ...w, cpu: cpuText, cpuMillis },
    runner: { ...c.runner, ephemeralResultsBytes: c.runner.resultsVolume.size.bytes },
    jobResults: jobs.map((j) => j.results),
  });
  warnings.push(...hardened.warnings);
  if (hardened.problems.length > 0) return { ok: false, problems: hardened.problems, warnings };
  const tls = resolveTls(c.target, c.tls);
  warnings.push(...tls.warnings);

  const config: WorkspaceConfig = {
    target: c.target,
    namespace: c.namespace ?? defaultNamespace(opts.stack),
    ...(c.kubeconfig !== undefined ? { kubeconfig: c.kubeconfig } : {}),
    ...(c.context !== undefined ? { context: c.context } : {}),
    images: c.images,
    scheduler: {
      port: c.scheduler.port,
      dashboardPort: c.scheduler.dashboardPort,
      cpu: c.scheduler.cpu,
      memory: c.scheduler.memory,
    },
    workers: {
      replicas: w.replicas,
      nprocs: w.nprocs,
      threadsPerProcess: w.threadsPerProcess,
      podMemory: w.podMemory,
      memoryPerProcess: toMemory(plan.plan.memoryPerProcess),
      headroom: toMemory(plan.plan.headroom),
      cpu: cpuText,
      cpuMillis,
      ...(w.lifetime !== undefined ? { lifetime: lifetimeOf(w.lifetime) } : {}),
      memoryThresholds: w.memoryThresholds,
      saturation: w.saturation,
      allowedFailures: w.allowedFailures,
      mallocTrimThreshold: w.mallocTrimThreshold,
      retireTimeoutSeconds: w.retireTimeoutSeconds,
    },
    autoscaling: {
      enabled: c.autoscaling.enabled,
      minReplicas,
      maxReplicas,
      targetCpuUtilization: scaling.resolved.targetCpuUtilization,
      scaleDown: c.autoscaling.scaleDown,
      mode: scaling.resolved.mode,
      dask: scaling.resolved.dask,
    },
    monitoring: c.monitoring,
    runner: {
      serviceAccountName: c.runner.serviceAccountName,
      mode: c.runner.mode,
      window: c.runner.window,
      batchSize: c.runner.batchSize,
      chunking: c.runner.chunking,
      ...chunkSecondsOf(c.runner.chunkSeconds),
      results: runnerResults,
      resultsVolume: c.runner.resultsVolume,
      ...(c.runner.resultsSecret !== undefined ? { resultsSecret: c.runner.resultsSecret } : {}),
      ephemeral: c.runner.ephemeral,
      cpu: c.runner.cpu,
      memory: c.runner.memory,
    },
    jobs,
    hardening: hardened.hardening,
    tls: tls.tls,
    ...(c.target === "azure" && c.azure !== undefined
      ? {
          azure: {
            ...c.azure,
            disableLocalAccounts: c.azure.disableLocalAccounts ?? c.azure.entraId.enabled,
          },
        }
      : {}),
  };

  // Azure: does the worker pod fit the worker VM's allocatable memory and CPU?
  // (infra/azure/vm-sizes.ts, owned by the azure helper; it returns nothing for other targets.)
  const fit = azureFitProblems(config);
  if (config.azure !== undefined) {
    const security = azureSecurityChecks(config.azure);
    fit.problems.push(...security.problems);
    fit.warnings.push(...security.warnings);
  }
  warnings.push(...fit.warnings);
  if (fit.problems.length > 0) return { ok: false, problems: fit.problems, warnings };

  return { ok: true, config, warnings };
}

/**
 * Drops top-level keys set to "" or {}: Pulumi.yaml declares every key with such a default (a
 * declared key without a default would be required by Pulumi), so they mean "not set".
 */
function withoutUnsetKeys(raw: Record<string, unknown>): Record<string, unknown> {
  const known = new Set(Object.keys(StackConfigSchema.shape));
  return Object.fromEntries(
    Object.entries(raw).filter(
      ([k, v]) =>
        // Unknown keys stay, so that a typo is reported even when its value is empty.
        !known.has(k) ||
        !(
          v === "" ||
          (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0)
        ),
    ),
  );
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.path}\u0000${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Stack files and Pulumi
// ---------------------------------------------------------------------------------------------

/**
 * Reads a `Pulumi.<stack>.yaml` (or any path) and returns its `config:` entries of the
 * `dask-workspace` namespace with the prefix stripped (bare keys count as the project's, as in
 * Pulumi). Entries of other namespaces (`kubernetes:context`, ...) are ignored.
 * @throws ConfigError when the file cannot be read or parsed, or holds `secure:` values (no
 *   dask-workspace key is a secret, and render runs without the stack's secrets provider).
 */
export function readStackConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError([
      {
        path: "",
        message: `cannot read stack config file ${file}: ${code === "ENOENT" ? "no such file" : String(code ?? e)}`,
      },
    ]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError([
      { path: "", message: `${file} is not valid YAML: ${(e as Error).message.split("\n")[0]}` },
    ]);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError([
      { path: "", message: `${file} must be a YAML mapping with a config: section` },
    ]);
  }
  const config = (doc as Record<string, unknown>)["config"];
  if (config === undefined || config === null) return {};
  if (typeof config !== "object" || Array.isArray(config)) {
    throw new ConfigError([
      { path: "", message: `${file}: config: must be a mapping of keys to values` },
    ]);
  }
  const out: Record<string, unknown> = {};
  const problems = misspeltNamespaceProblems(Object.keys(config));
  for (const [fullKey, value] of Object.entries(config as Record<string, unknown>)) {
    const colon = fullKey.indexOf(":");
    const ns = colon < 0 ? PROJECT : fullKey.slice(0, colon);
    if (ns !== PROJECT) continue;
    const key = colon < 0 ? fullKey : fullKey.slice(colon + 1);
    if (containsSecure(value)) {
      problems.push({
        path: key,
        message: `is a secret (secure:) value in ${file}; no dask-workspace key holds a secret, so write it in plain text`,
      });
      continue;
    }
    out[key] = value;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

function containsSecure(v: unknown): boolean {
  if (v === null || typeof v !== "object") return false;
  if (!Array.isArray(v) && Object.keys(v).length === 1 && "secure" in v) return true;
  return Object.values(v).some(containsSecure);
}

/** Keys whose values are structured (objects); read with `getObject`. */
const STRUCTURED_KEYS = new Set([
  "images",
  "scheduler",
  "workers",
  "autoscaling",
  "monitoring",
  "runner",
  "jobs",
  "azure",
  "network",
  "tls",
]);

/** The nearest directory at or above `start` that holds Pulumi.yaml (the project root). */
export function findProjectRoot(start: string): string {
  let dir = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(dir, "Pulumi.yaml"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return path.resolve(start);
    dir = parent;
  }
}

/**
 * For the Pulumi program: reads every `dask-workspace:*` key of the stack, validates it, emits
 * warnings with `pulumi.log.warn`, and on problems throws `pulumi.RunError` (printed without a
 * stack trace) listing all of them.
 */
export function loadConfig(): WorkspaceConfig {
  const cfg = new pulumi.Config(PROJECT);
  const raw: Record<string, unknown> = {};
  const prefix = `${PROJECT}:`;
  for (const fullKey of Object.keys(pulumi.runtime.allConfig())) {
    if (!fullKey.startsWith(prefix)) continue;
    const key = fullKey.slice(prefix.length);
    if (STRUCTURED_KEYS.has(key)) {
      try {
        raw[key] = cfg.getObject<unknown>(key);
      } catch {
        raw[key] = cfg.get(key); // not JSON: the schema reports "expected a mapping"
      }
    } else {
      const text = cfg.get(key);
      raw[key] = STRING_KEYS.has(key) ? text : parseMaybeJson(text);
    }
  }
  const stack = pulumi.getStack();
  const misspelt = misspeltNamespaceProblems(Object.keys(pulumi.runtime.allConfig()));
  const result = parseWorkspaceConfig(raw, { baseDir: findProjectRoot(process.cwd()), stack });
  if (misspelt.length > 0) {
    throw new pulumi.RunError(
      `invalid stack config (stack ${stack}):\n${formatProblems([...misspelt, ...(result.ok ? [] : result.problems)])}`,
    );
  }
  for (const w of result.warnings) void pulumi.log.warn(w);
  if (!result.ok) {
    throw new pulumi.RunError(
      `invalid stack config (stack ${stack}), ${result.problems.length} problem(s):\n` +
        formatProblems(result.problems),
    );
  }
  return result.config;
}

const STRING_KEYS = new Set(["target", "namespace", "kubeconfig", "context"]);

function parseMaybeJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
