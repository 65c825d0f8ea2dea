/**
 * infra/config.ts: the stack-config schema, its exact messages, defaults, stack files, and
 * loadConfig under Pulumi's runtime (RunError, no stack trace).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import fc from "fast-check";
import { parse as parseYaml } from "yaml";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  didYouMean,
  findProjectRoot,
  formatProblems,
  parseWorkspaceConfig,
  readStackConfigFile,
  StackConfigSchema,
  type ParseResult,
} from "../infra/config.js";
import { MiB, GiB, minHeadroom } from "../infra/memory.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const FIXTURES = path.join(ROOT, "test", "fixtures", "config");
const STUDY = "test/fixtures/config/study.yaml";

function parse(raw: Record<string, unknown>): ParseResult {
  return parseWorkspaceConfig(raw, { baseDir: ROOT, stack: "test" });
}
function problemsOf(raw: Record<string, unknown>): string[] {
  const r = parse(raw);
  if (r.ok) throw new Error(`accepted: ${JSON.stringify(raw)}`);
  return r.problems.map((p) => `${p.path}: ${p.message}`);
}
function configOf(raw: Record<string, unknown>) {
  const r = parse(raw);
  if (!r.ok) throw new Error(formatProblems(r.problems));
  return r;
}

describe("bad configs: every problem with its exact message", () => {
  it.each<[string, Record<string, unknown>, string[]]>([
    [
      "zero headroom: 6 × 4Gi in a 24Gi pod",
      { workers: { nprocs: 6, podMemory: "24Gi", memoryPerProcess: "4Gi" } },
      [
        "workers.memoryPerProcess: 6 × 4Gi = 24Gi leaves 0 of podMemory 24Gi for the nanny; use at most 3977Mi per process or raise podMemory to at least 25285Mi",
      ],
    ],
    [
      "negative headroom: 4 × 5Gi in 16Gi",
      { workers: { nprocs: 4, podMemory: "16Gi", memoryPerProcess: "5Gi" } },
      [
        "workers.memoryPerProcess: 4 × 5Gi = 20Gi exceeds podMemory 16Gi by 4Gi, leaving nothing for the nanny; use at most 3967Mi per process or raise podMemory to at least 20995Mi",
      ],
    ],
    [
      "a 12Gi limit in a 4Gi pod",
      { workers: { nprocs: 1, podMemory: "4Gi", memoryPerProcess: "12Gi" } },
      [
        "workers.memoryPerProcess: 1 × 12Gi = 12Gi exceeds podMemory 4Gi by 8Gi, leaving nothing for the nanny; use at most 3872Mi per process or raise podMemory to at least 12512Mi",
      ],
    ],
    [
      "token headroom left by memoryPerProcess",
      { workers: { nprocs: 6, podMemory: "24Gi", memoryPerProcess: "4090Mi" } },
      [
        "workers.memoryPerProcess: 6 × 4090Mi = 24540Mi leaves 36Mi of podMemory 24Gi for the nanny, below the required 709Mi for 6 processes; use at most 3977Mi per process or raise podMemory to at least 25249Mi",
      ],
    ],
    [
      "token headroom set explicitly",
      { workers: { nprocs: 6, podMemory: "24Gi", headroom: "1Mi" } },
      [
        "workers.headroom: 1Mi is below the minimum 709Mi for 6 processes (measured nanny host process + per-tick overshoot); remove the key to use the minimum or set at least 709Mi",
      ],
    ],
    [
      "negative headroom set explicitly",
      { workers: { nprocs: 6, podMemory: "24Gi", headroom: "-2Gi" } },
      [
        "workers.headroom: -2Gi is not positive; the nanny host process and per-tick overshoot need at least 709Mi for 6 processes; remove the key to use that minimum",
      ],
    ],
    [
      "zero headroom set explicitly",
      { workers: { nprocs: 2, headroom: 0 } },
      [
        "workers.headroom: 0 is not positive; the nanny host process and per-tick overshoot need at least 321Mi for 2 processes; remove the key to use that minimum",
      ],
    ],
    [
      "Dask spelling 4GiB",
      { workers: { podMemory: "4GiB" } },
      [
        'workers.podMemory: "4GiB" is not a Kubernetes quantity (units are case-sensitive, no "B", no spaces); did you mean 4Gi?',
      ],
    ],
    [
      "Dask spelling 4GB for memoryPerProcess and 256MB for headroom",
      { workers: { memoryPerProcess: "4GB", headroom: "512 MiB" } },
      [
        'workers.memoryPerProcess: "4GB" is not a Kubernetes quantity (units are case-sensitive, no "B", no spaces); did you mean 4Gi?',
        'workers.headroom: "512 MiB" is not a Kubernetes quantity (units are case-sensitive, no "B", no spaces); did you mean 512Mi?',
      ],
    ],
    [
      "500m is half a byte",
      { scheduler: { memory: "500m" } },
      [
        'scheduler.memory: "500m" is 0.5 bytes, not a whole number of bytes (Kubernetes "m" means milli, not mega); did you mean 500Mi?',
      ],
    ],
    [
      "thresholds out of order",
      { workers: { memoryThresholds: { target: 0.7, spill: 0.6, pause: 0.8, terminate: 0.8 } } },
      [
        "workers.memoryThresholds: out of order (target 0.7 > spill 0.6, pause 0.8 ≥ terminate 0.8); they must satisfy target ≤ spill ≤ pause < terminate ≤ 1, e.g. Dask's defaults 0.6 ≤ 0.7 ≤ 0.8 < 0.95",
      ],
    ],
    [
      "a threshold above 1",
      { workers: { memoryThresholds: { terminate: 1.2 } } },
      ["workers.memoryThresholds.terminate: 1.2 is out of range: must be ≤ 1"],
    ],
    [
      "minReplicas > maxReplicas",
      { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } },
      [
        "autoscaling.minReplicas: 5 is greater than maxReplicas 2; lower minReplicas or raise maxReplicas to at least 5",
      ],
    ],
    [
      "saturation 0",
      { workers: { saturation: 0 } },
      [
        'workers.saturation: 0 must be > 0 (or "inf" to turn queuing off); 1.0 hands each worker one task per thread, Dask\'s default is 1.1',
      ],
    ],
    [
      "saturation as a word",
      { workers: { saturation: "infinite" } },
      [
        'workers.saturation: "infinite" is not a valid saturation; use a number > 0 (e.g. 1.0) or "inf"',
      ],
    ],
    [
      "auto with nprocs 2",
      { workers: { nprocs: 2, memoryPerProcess: "auto" } },
      [
        'workers.memoryPerProcess: "auto" divides the pod limit 4Gi among 2 processes and leaves nothing for the nanny host process; remove the key to derive 1887Mi from podMemory − headroom, or set a quantity of at most 1887Mi',
      ],
    ],
    [
      "a fraction with nprocs 2",
      { workers: { nprocs: 2, memoryPerProcess: 0.5 } },
      [
        "workers.memoryPerProcess: 0.5 gives each of the 2 processes that share of the pod limit 4Gi and leaves nothing for the nanny host process; remove the key to derive 1887Mi from podMemory − headroom, or set a quantity of at most 1887Mi",
      ],
    ],
    [
      "typos, with did-you-mean hints",
      { workerz: {}, workers: { nproc: 2, podmemory: "1Gi", xyz: 1 } },
      [
        "workers.nproc: unknown key; did you mean workers.nprocs?",
        "workers.podmemory: unknown key; did you mean workers.podMemory?",
        "workers.xyz: unknown key; known keys of workers: replicas, nprocs, threadsPerProcess, podMemory, memoryPerProcess, headroom, cpu, lifetime, memoryThresholds, saturation, allowedFailures, mallocTrimThreshold, retireTimeoutSeconds, spillStorage",
        "workerz: unknown key; did you mean workers?",
      ],
    ],
    [
      "a wrong enum value",
      { target: "aks", runner: { mode: "windowed" } },
      [
        'runner.mode: "windowed" is not one of "window", "batch"; did you mean "window"?',
        'target: "aks" is not one of "azure", "kubernetes"',
      ],
    ],
    [
      "azure target without azure settings",
      { target: "azure" },
      ["azure: is required when target is azure; set at least azure.location (e.g. westeurope)"],
    ],
    [
      "jobs: missing study, unreadable study, bad names",
      {
        jobs: {
          Bad_Name: { study: STUDY },
          a: {},
          b: { study: "test/fixtures/config/list-study.yaml" },
          c: { study: "missing.yaml" },
        },
      },
      [
        "jobs.a.study: is required (a string)",
        `jobs.Bad_Name: job name "Bad_Name" is used in resource names: use at most 40 lower-case letters, digits and '-', starting and ending with a letter or digit`,
        "jobs.b.study: test/fixtures/config/list-study.yaml must hold a mapping (name, model, parameters, ...), got a list",
        `jobs.c.study: missing.yaml not found (paths are relative to the project root ${ROOT})`,
      ],
    ],
    [
      "results URIs",
      { runner: { results: "ftp://bucket/x" }, jobs: { a: { study: STUDY, results: "az://A/x" } } },
      [
        'runner.results: "ftp://bucket/x": use a path (on target kubernetes, under /results) or an object store URI: az://<container>/<prefix>, s3://<bucket>/<prefix> or gs://<bucket>/<prefix>',
        `jobs.a.results: "az://A/x": "A" is not an Azure Blob container name (3-63 lower-case letters, digits and single '-'); use az://<container>/<prefix>`,
      ],
    ],
    [
      "credentials in a results URI",
      {
        runner: { results: "s3://AKIA:hunter2@bucket/x" },
        jobs: { a: { study: STUDY, results: "az://results/x?sv=2024&sig=abc" } },
      },
      [
        'runner.results: "s3://AKIA:hunter2@bucket/x" carries credentials; never put them in the stack config: store them in a Kubernetes Secret and name it in runner.resultsSecret',
        'jobs.a.results: "az://results/x?sv=2024&sig=abc" carries a token in its query string; never put credentials in the stack config: store them in a Kubernetes Secret and name it in runner.resultsSecret',
      ],
    ],
    [
      "results that would die with the pod",
      {
        runner: { results: "out" },
        jobs: { a: { study: STUDY }, b: { study: STUDY, results: "/data/b" } },
      },
      [
        'runner.results: "out/a" (job a) would be an emptyDir that dies with the runner pod, so a re-run could not resume; use a path under /results (the workspace\'s results volume), an object store URI (az://, s3://, gs://), or set runner.ephemeral: true to accept losing them',
        'jobs.b.results: "/data/b" (job b) would be an emptyDir that dies with the runner pod, so a re-run could not resume; use a path under /results (the workspace\'s results volume), an object store URI (az://, s3://, gs://), or set runner.ephemeral: true to accept losing them',
      ],
    ],
    [
      "lifetime stagger not below duration, and a non-duration",
      { workers: { lifetime: { duration: "1h", stagger: "2h" } }, runner: { window: 0 } },
      [
        'runner.window: 0 is not a window size: use "auto" or a whole number of groups ≥ 1',
        "workers.lifetime.stagger: 7200s is not shorter than lifetime.duration 3600s; Dask picks each lifetime in duration ± stagger, so keep stagger well below duration (e.g. a tenth)",
      ],
    ],
    [
      "same port twice, bad CPU, bad namespace",
      {
        namespace: "My_NS",
        scheduler: { port: 8786, dashboardPort: 8786 },
        workers: { cpu: "2 cores" },
      },
      [
        `namespace: "My_NS" is not a DNS label: use lower-case letters, digits and '-', starting and ending with a letter or digit`,
        'workers.cpu: "2 cores" is not a Kubernetes CPU quantity; use cores ("2", "0.5") or millicores ("1500m")',
        "scheduler.dashboardPort: 8786 is also scheduler.port; use two different ports (defaults 8786 and 8787)",
      ],
    ],
    [
      "a section that is not a mapping",
      { workers: "big" },
      ['workers: expected a mapping, got "big"'],
    ],
  ])("%s", (_name, raw, expected) => {
    expect(problemsOf(raw).sort()).toEqual([...expected].sort());
  });

  it("reports several problems of different kinds at once", () => {
    expect(
      problemsOf({
        workers: {
          nprocs: 6,
          podMemory: "24GiB",
          headroom: "1Mi",
          saturation: 0,
          memoryThresholds: { spill: 0.9 },
        },
        autoscaling: { minReplicas: 3, maxReplicas: 1 },
        jobs: { sir: { study: "nope.yaml", mod: "batch" } },
        targett: "kubernetes",
      }),
    ).toEqual([
      'workers.podMemory: "24GiB" is not a Kubernetes quantity (units are case-sensitive, no "B", no spaces); did you mean 24Gi?',
      "workers.memoryThresholds: out of order (spill 0.9 > pause 0.8); they must satisfy target ≤ spill ≤ pause < terminate ≤ 1, e.g. Dask's defaults 0.6 ≤ 0.7 ≤ 0.8 < 0.95",
      'workers.saturation: 0 must be > 0 (or "inf" to turn queuing off); 1.0 hands each worker one task per thread, Dask\'s default is 1.1',
      "workers.headroom: 1Mi is below the minimum 709Mi for 6 processes (measured nanny host process + per-tick overshoot); remove the key to use the minimum or set at least 709Mi",
      "autoscaling.minReplicas: 3 is greater than maxReplicas 1; lower minReplicas or raise maxReplicas to at least 3",
      "jobs.sir.mod: unknown key; did you mean jobs.sir.mode?",
      "targett: unknown key; did you mean target?",
      `jobs.sir.study: nope.yaml not found (paths are relative to the project root ${ROOT})`,
    ]);
  });

  it("rejects a chunking that is not auto/off and a chunk duration that is not positive", () => {
    expect(
      problemsOf({
        runner: { chunking: "sometimes", chunkSeconds: 0 },
        jobs: { sir: { study: STUDY, chunkSeconds: 7200 } },
      }),
    ).toEqual([
      'runner.chunking: "sometimes" is not one of "auto", "off"',
      "runner.chunkSeconds: 0 is not a chunk duration: use seconds > 0 and ≤ 3600, e.g. 0.2 (packed tasks of about 200 ms)",
      "jobs.sir.chunkSeconds: 7200 is not a chunk duration: use seconds > 0 and ≤ 3600, e.g. 0.2 (packed tasks of about 200 ms)",
    ]);
  });

  it("rejects a pod whose derived per-process limit is below what a worker needs", () => {
    expect(problemsOf({ workers: { nprocs: 4, podMemory: "1Gi" } })).toEqual([
      "workers.podMemory: 1Gi leaves 127Mi per process for 4 processes after 515Mi headroom, below the 256Mi a worker process needs; raise podMemory to at least 1539Mi or lower workers.nprocs",
    ]);
  });
});

describe("good configs", () => {
  it("resolves every default from an empty config", () => {
    const r = configOf({});
    expect(r.warnings).toEqual([]);
    expect(r.ok && r.config).toEqual({
      target: "kubernetes",
      namespace: "dask-test",
      images: {
        dask: "dask-workspace/dask:0.1.0",
        runner: "dask-workspace/runner:0.1.0",
        pullPolicy: "IfNotPresent",
      },
      scheduler: {
        port: 8786,
        dashboardPort: 8787,
        cpu: "1",
        memory: { bytes: 2 * GiB, quantity: "2Gi" },
      },
      workers: {
        replicas: 2,
        nprocs: 2,
        threadsPerProcess: 1,
        podMemory: { bytes: 4 * GiB, quantity: "4Gi" },
        memoryPerProcess: { bytes: 1887 * MiB, quantity: "1887Mi" },
        headroom: { bytes: 322 * MiB, quantity: "322Mi" },
        cpu: "2",
        cpuMillis: 2000,
        memoryThresholds: { target: 0.6, spill: 0.7, pause: 0.8, terminate: 0.95 },
        saturation: 1,
        allowedFailures: 3,
        mallocTrimThreshold: 65536,
        retireTimeoutSeconds: 60,
      },
      autoscaling: {
        enabled: false,
        minReplicas: 1,
        maxReplicas: 2,
        targetCpuUtilization: 80,
        scaleDown: { stabilizationWindowSeconds: 600, podsPerPeriod: 1, periodSeconds: 300 },
        mode: "cpu",
        dask: {
          scaleUp: { stabilizationWindowSeconds: 0, podsPerPeriod: 2, periodSeconds: 15 },
          activationProcesses: 0,
          pollingSeconds: 15,
          installKeda: false,
          kedaNamespace: "keda",
        },
      },
      monitoring: { prometheus: false, interval: "30s", prometheusNamespace: "monitoring" },
      runner: {
        serviceAccountName: "dask-runner",
        mode: "window",
        window: "auto",
        batchSize: 200,
        chunking: "auto",
        results: "/results",
        resultsVolume: {
          size: { bytes: 10 * GiB, quantity: "10Gi" },
          accessMode: "ReadWriteOnce",
          retainOnDelete: true,
        },
        ephemeral: false,
        cpu: "1",
        memory: { bytes: GiB, quantity: "1Gi" },
      },
      jobs: [],
      // Spill space 2 × podMemory; /tmp sizeLimit + 256Mi for logs = ephemeral request = limit.
      hardening: {
        storage: {
          worker: {
            scratch: { bytes: 8 * GiB, quantity: "8Gi" },
            ephemeral: { bytes: 8 * GiB + 256 * MiB, quantity: "8448Mi" },
          },
          scheduler: {
            scratch: { bytes: GiB, quantity: "1Gi" },
            ephemeral: { bytes: GiB + 256 * MiB, quantity: "1280Mi" },
          },
          runner: {
            scratch: { bytes: GiB, quantity: "1Gi" },
            ephemeral: { bytes: GiB + 256 * MiB, quantity: "1280Mi" },
          },
        },
        dashboardFrom: [],
        disruptionBudget: true,
        // No job writes to an object store: no objectStore rule.
        egress: {
          restrict: true,
          apiServer: { cidrs: ["0.0.0.0/0"], ports: [443, 6443] },
          extra: [],
        },
      },
      tls: { enabled: false, validityDays: 3650, rotation: 0 },
    });
  });

  it("runner.ephemeral: true allows results that die with the pod, with a warning, and no claim", () => {
    const r = configOf({ runner: { ephemeral: true }, jobs: { a: { study: STUDY } } });
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([
      "runner.results: job a writes its results to /results/a in an emptyDir (runner.ephemeral: true): they are lost when its pod goes, and a re-run cannot resume them",
    ]);
  });

  it('treats Pulumi.yaml\'s empty defaults ("" and {}) as unset', () => {
    const r = configOf({
      namespace: "",
      kubeconfig: "",
      context: "",
      workers: {},
      azure: {},
      jobs: {},
    });
    expect(r.ok && r.config.namespace).toBe("dask-test");
    expect(r.ok && "azure" in r.config).toBe(false);
    expect(r.ok && "kubeconfig" in r.config).toBe(false);
  });

  it("keeps explicit values, including an explicit memoryPerProcess with ample headroom", () => {
    const r = configOf({
      namespace: "sims",
      workers: {
        nprocs: 4,
        threadsPerProcess: 1,
        podMemory: "16Gi",
        memoryPerProcess: "3584Mi",
        cpu: "4",
        saturation: "inf",
        lifetime: { duration: "6h", stagger: "30m" },
      },
      autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 6 },
      runner: { results: "az://results/base", window: 8 },
      jobs: {
        sir: { study: STUDY, mode: "batch", batchSize: 50, chunking: "off", chunkSeconds: 0.5 },
      },
    });
    expect(r.warnings).toEqual([]);
    if (!r.ok) throw new Error("unreachable");
    const w = r.config.workers;
    expect(w.memoryPerProcess).toEqual({ bytes: 3584 * MiB, quantity: "3584Mi" });
    expect(w.headroom).toEqual({ bytes: 2 * GiB, quantity: "2Gi" });
    expect(w.saturation).toBe("inf");
    expect(w.lifetime).toEqual({ duration: "21600s", stagger: "1800s", restart: true });
    expect(r.config.jobs).toEqual([
      {
        name: "sir",
        studyPath: STUDY,
        studyText: fs.readFileSync(path.join(ROOT, STUDY), "utf8"),
        bundle: expect.objectContaining({ hash: expect.stringMatching(/^[0-9a-f]{64}$/) }),
        results: "az://results/base/sir",
        mode: "batch",
        window: 8,
        batchSize: 50,
        chunking: "off",
        chunkSeconds: 0.5,
        backoffLimit: 1,
        ttlSecondsAfterFinished: 86400,
        activeDeadlineSeconds: 86400,
      },
    ]);
  });

  it("accepts decimal SI quantities and renders their bytes exactly", () => {
    const r = configOf({ workers: { nprocs: 1, podMemory: "4G", memoryPerProcess: "3.5G" } });
    expect(r.ok && r.config.workers.podMemory).toEqual({ bytes: 4e9, quantity: "3906250Ki" });
    expect(r.ok && r.config.workers.memoryPerProcess.bytes).toBe(3.5e9);
    expect(r.ok && r.config.workers.headroom.bytes).toBe(5e8);
  });

  it("accepts a fraction with one process as a share of the pod", () => {
    const r = configOf({ workers: { nprocs: 1, podMemory: "8Gi", memoryPerProcess: 0.9 } });
    expect(r.ok && r.config.workers.memoryPerProcess.quantity).toBe("7372Mi");
  });

  it("warns, without failing, when threads oversubscribe the CPU limit", () => {
    const r = configOf({
      workers: { nprocs: 4, threadsPerProcess: 2, cpu: "4", podMemory: "8Gi" },
    });
    expect(r.warnings).toEqual([
      'workers.cpu: 4 processes × 2 threads = 8 threads on a CPU limit of 4; tasks will be throttled, so raise workers.cpu to "8" or lower threadsPerProcess/nprocs',
    ]);
  });

  it("warns when autoscaling bounds exclude replicas and when keys of another target are set", () => {
    const r = configOf({
      workers: { replicas: 10 },
      autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 4 },
      azure: { location: "westeurope" },
    });
    expect(r.warnings).toEqual([
      "workers.replicas: 10 is outside autoscaling 1..4; the HPA owns the replica count and will move it into that range",
      "azure: ignored because target is kubernetes",
    ]);
  });

  it("the local and dev stacks are valid, and the local one fits this machine", () => {
    for (const stack of ["local", "dev"]) {
      const raw = readStackConfigFile(path.join(ROOT, `Pulumi.${stack}.yaml`));
      const r = parseWorkspaceConfig(raw, { baseDir: ROOT, stack });
      expect(r.ok ? [] : r.problems).toEqual([]);
    }
    const local = configOf(readStackConfigFile(path.join(ROOT, "Pulumi.local.yaml")));
    if (!local.ok) throw new Error("unreachable");
    const w = local.config.workers;
    expect(w.replicas * w.podMemory.bytes).toBeLessThanOrEqual(os.totalmem() / 4);
    expect(local.config.jobs.map((j) => j.studyPath)).toEqual(["examples/studies/sir-grid.yaml"]);
  });
});

describe("property: what the schema accepts is safe", () => {
  it("headroom ≥ minimum and nprocs × limit + headroom = podMemory, exactly", () => {
    let accepted = 0;
    const quantity = fc.oneof(
      fc.integer({ min: 1, max: 512 }).map((g) => `${g}Gi`),
      fc.integer({ min: 1, max: 512 * 1024 }).map((m) => `${m}Mi`),
      fc.integer({ min: 1, max: 64 }).map((g) => `${g}G`),
      fc
        .tuple(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 9 }))
        .map(([a, b]) => `${a}.${b}Gi`),
      fc.integer({ min: 1, max: 2 ** 40 }),
    );
    // memoryPerProcess: absent, any quantity, Dask's auto/fraction, or close to the boundary
    // (podMemory − minimum headroom − slack) / nprocs, where off-by-one mistakes would show.
    const limit = (nprocs: number, podMiB: number) =>
      fc.oneof(
        fc.constant(undefined),
        quantity,
        fc.constantFrom("auto", 0.5, 1),
        fc
          .integer({ min: -64, max: 256 })
          .map((slack) => `${Math.floor((podMiB - minHeadroom(nprocs) / MiB - slack) / nprocs)}Mi`),
        fc
          .integer({ min: -(2 * MiB), max: 2 * MiB })
          .map((slack) => Math.floor((podMiB * MiB - minHeadroom(nprocs) - slack) / nprocs)),
      );
    const workersArb = fc
      .tuple(fc.integer({ min: 1, max: 32 }), fc.integer({ min: 64, max: 512 * 1024 }))
      .chain(([nprocs, podMiB]) =>
        fc.record({
          nprocs: fc.constant(nprocs),
          podMemory: fc.oneof(fc.constant(`${podMiB}Mi`), quantity),
          memoryPerProcess: limit(nprocs, podMiB),
          headroom: fc.option(quantity, { nil: undefined, freq: 2 }),
        }),
      );
    fc.assert(
      fc.property(workersArb, ({ nprocs, podMemory, memoryPerProcess, headroom }) => {
        const workers: Record<string, unknown> = { nprocs, podMemory, cpu: String(nprocs) };
        if (memoryPerProcess !== undefined) workers["memoryPerProcess"] = memoryPerProcess;
        if (headroom !== undefined) workers["headroom"] = headroom;
        const r = parse({ workers });
        if (!r.ok) {
          // A rejection always names a workers key and says what to do.
          for (const p of r.problems) {
            expect(p.path).toMatch(/^workers\.(podMemory|memoryPerProcess|headroom)$/);
          }
          return;
        }
        accepted++;
        const w = r.config.workers;
        expect(w.nprocs * w.memoryPerProcess.bytes + w.headroom.bytes).toBe(w.podMemory.bytes);
        expect(w.headroom.bytes).toBeGreaterThanOrEqual(minHeadroom(nprocs));
        expect(Number.isSafeInteger(w.memoryPerProcess.bytes)).toBe(true);
      }),
      { numRuns: 1500 },
    );
    // Not vacuous: a good share of the generated configs is accepted and checked.
    expect(accepted).toBeGreaterThan(150); // about 300 of 1500 in practice
  });
});

describe("Pulumi.yaml", () => {
  it("declares every schema key, with a description and an empty default that means unset", () => {
    const project = parseYaml(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as {
      name: string;
      config: Record<string, { type: string; description?: string; default?: unknown }>;
    };
    expect(project.name).toBe("dask-workspace");
    const declared = Object.keys(project.config).map((k) => k.replace(/^dask-workspace:/, ""));
    expect(declared.sort()).toEqual(Object.keys(StackConfigSchema.shape).sort());
    for (const [key, decl] of Object.entries(project.config)) {
      expect(decl.description, key).toMatch(/\w{3,}/);
      expect(["string", "object"], key).toContain(decl.type);
      expect(decl.default, key).toBeDefined();
    }
    // The defaults Pulumi injects into every stack must parse to the documented defaults.
    const injected = Object.fromEntries(
      Object.entries(project.config).map(([k, d]) => [
        k.replace(/^dask-workspace:/, ""),
        d.default,
      ]),
    );
    const withDefaults = configOf(injected);
    const empty = configOf({});
    expect(withDefaults.ok && withDefaults.config).toEqual(empty.ok && empty.config);
  });
});

describe("did you mean", () => {
  it("finds close keys, case slips included, and stays quiet for unrelated words", () => {
    expect(didYouMean("nproc", ["nprocs", "replicas"])).toBe("nprocs");
    expect(didYouMean("PODMEMORY", ["podMemory"])).toBe("podMemory");
    expect(didYouMean("completelydifferent", ["nprocs", "replicas"])).toBeUndefined();
  });
});

describe("readStackConfigFile", () => {
  it("returns dask-workspace keys without the prefix, bare keys included, other namespaces ignored", () => {
    expect(readStackConfigFile(path.join(FIXTURES, "stack-good.yaml"))).toEqual({
      target: "kubernetes",
      workers: { nprocs: 2, podMemory: "3Gi" },
      namespace: "from-bare-key",
    });
  });

  it("rejects secure values, unreadable files and invalid YAML with a ConfigError", () => {
    const secure = path.join(FIXTURES, "stack-secure.yaml");
    expect(() => readStackConfigFile(secure)).toThrow(ConfigError);
    expect(() => readStackConfigFile(secure)).toThrow(
      `kubeconfig: is a secret (secure:) value in ${secure}; no dask-workspace key holds a secret, so write it in plain text`,
    );
    const missing = path.join(FIXTURES, "nope.yaml");
    expect(() => readStackConfigFile(missing)).toThrow(
      `cannot read stack config file ${missing}: no such file`,
    );
    expect(() => readStackConfigFile(path.join(FIXTURES, "stack-bad-yaml.yaml"))).toThrow(
      /is not valid YAML/,
    );
  });

  it("treats an empty file or a file without config: as no keys", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stack-"));
    try {
      fs.writeFileSync(path.join(dir, "empty.yaml"), "");
      fs.writeFileSync(path.join(dir, "noconfig.yaml"), "encryptionsalt: abc\n");
      expect(readStackConfigFile(path.join(dir, "empty.yaml"))).toEqual({});
      expect(readStackConfigFile(path.join(dir, "noconfig.yaml"))).toEqual({});
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("finds the project root from a nested directory", () => {
    expect(findProjectRoot(path.join(ROOT, "test", "fixtures"))).toBe(ROOT);
  });
});

describe("loadConfig under the Pulumi runtime", () => {
  let loadConfig: () => unknown;
  const warnings: string[] = [];

  beforeAll(async () => {
    pulumi.runtime.setMocks(
      {
        newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
        call: (args) => {
          throw new Error(`unexpected call ${args.token}`);
        },
      },
      "dask-workspace",
      "unit",
      false,
    );
    // Record instead of printing: the messages are asserted below.
    pulumi.log.warn = async (msg: string) => {
      warnings.push(msg);
    };
    ({ loadConfig } = await import("../infra/config.js"));
  });
  afterEach(() => {
    warnings.length = 0;
  });

  function setConfig(values: Record<string, unknown>) {
    pulumi.runtime.setAllConfig(
      Object.fromEntries(
        Object.entries(values).map(([k, v]) => [
          `dask-workspace:${k}`,
          typeof v === "string" ? v : JSON.stringify(v),
        ]),
      ),
    );
  }

  it("reads structured keys as objects and returns the validated config", () => {
    setConfig({ target: "kubernetes", namespace: "ns1", workers: { nprocs: 3, podMemory: "6Gi" } });
    const cfg = loadConfig() as {
      namespace: string;
      workers: { nprocs: number; memoryPerProcess: { quantity: string } };
    };
    expect(cfg.namespace).toBe("ns1");
    expect(cfg.workers.nprocs).toBe(3);
    expect(cfg.workers.memoryPerProcess.quantity).toBe("1908Mi");
  });

  it("throws a RunError (printed without a stack trace) listing every problem", () => {
    setConfig({
      workers: { nprocs: 6, podMemory: "24Gi", memoryPerProcess: "4Gi" },
      worker: { nprocs: 1 },
    });
    let error: unknown;
    try {
      loadConfig();
    } catch (e) {
      error = e;
    }
    expect(pulumi.RunError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe(
      [
        "invalid stack config (stack unit), 2 problem(s):",
        "workers.memoryPerProcess: 6 × 4Gi = 24Gi leaves 0 of podMemory 24Gi for the nanny; use at most 3977Mi per process or raise podMemory to at least 25285Mi",
        "worker: unknown key; did you mean workers?",
      ].join("\n"),
    );
  });

  it("refuses keys under a misspelt namespace, which Pulumi would silently ignore", () => {
    pulumi.runtime.setAllConfig({
      "dask_workspace:workers": JSON.stringify({ replicas: 9 }),
      "daskworkspace:runner": JSON.stringify({ cpu: "2" }),
      "kubernetes:context": "kind-kind",
    });
    let error: unknown;
    try {
      loadConfig();
    } catch (e) {
      error = e;
    }
    expect(pulumi.RunError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe(
      [
        "invalid stack config (stack unit):",
        'dask_workspace:workers: "dask_workspace:" is not this project\'s namespace, so Pulumi would ignore this key; write it as dask-workspace:workers',
        'daskworkspace:runner: "daskworkspace:" is not this project\'s namespace, so Pulumi would ignore this key; write it as dask-workspace:runner',
      ].join("\n"),
    );
  });

  it("emits warnings through pulumi.log.warn", () => {
    setConfig({ workers: { nprocs: 2, threadsPerProcess: 2, cpu: "1", podMemory: "4Gi" } });
    loadConfig();
    expect(warnings).toEqual([
      'workers.cpu: 2 processes × 2 threads = 4 threads on a CPU limit of 1; tasks will be throttled, so raise workers.cpu to "4" or lower threadsPerProcess/nprocs',
    ]);
  });
});
