import { describe, expect, it } from "vitest";
import {
  DAEMONSET_ALLOWANCE,
  VM_SIZES,
  WORKER_POOL_MAX_PODS,
  aksNodeCapacity,
  azureFitProblems,
  cpuMillisOf,
  evictionThresholdBytes,
  fitPod,
  kubeReservedCpuMillis,
  kubeReservedMemoryBytes,
  lookupVmSize,
  roundCpuDown,
  roundMemoryDown,
  sameFamily,
} from "../infra/azure/vm-sizes.js";
import { azureConfig } from "./azure-fixtures.js";

const Mi = 1024 ** 2;
const Gi = 1024 ** 3;

describe("VM size table", () => {
  it.each([
    ["Standard_D2s_v5", 2, 8],
    ["Standard_D4s_v5", 4, 16],
    ["Standard_D64s_v5", 64, 256],
    ["Standard_D8ds_v5", 8, 32],
    ["Standard_D16as_v5", 16, 64],
    ["Standard_E2s_v5", 2, 16],
    ["Standard_E20s_v5", 20, 160],
    ["Standard_E64s_v5", 64, 512],
    ["Standard_E96ds_v5", 96, 672],
    ["Standard_F2s_v2", 2, 4],
    ["Standard_F72s_v2", 72, 144],
  ])("%s has %i vCPUs and %i GiB", (name, vcpus, memoryGiB) => {
    expect(lookupVmSize(name)).toEqual({ name, vcpus, memoryGiB });
  });

  it("covers D2s_v5..D64s_v5, E2s_v5..E64s_v5 and F2s_v2..F72s_v2", () => {
    const names = new Set(VM_SIZES.map((s) => s.name));
    for (const n of [2, 4, 8, 16, 32, 48, 64]) expect(names).toContain(`Standard_D${n}s_v5`);
    for (const n of [2, 4, 8, 16, 20, 32, 48, 64]) expect(names).toContain(`Standard_E${n}s_v5`);
    for (const n of [2, 4, 8, 16, 32, 48, 64, 72]) expect(names).toContain(`Standard_F${n}s_v2`);
    expect(names.size).toBe(VM_SIZES.length); // no duplicates
  });

  it("looks sizes up case-insensitively, as Azure does", () => {
    expect(lookupVmSize("standard_d4S_V5")?.name).toBe("Standard_D4s_v5");
    expect(lookupVmSize("Standard_D3s_v5")).toBeUndefined();
  });

  it("lists a family smallest first and keeps families apart", () => {
    expect(sameFamily("Standard_D4s_v5").map((s) => s.name)).toEqual([
      "Standard_D2s_v5",
      "Standard_D4s_v5",
      "Standard_D8s_v5",
      "Standard_D16s_v5",
      "Standard_D32s_v5",
      "Standard_D48s_v5",
      "Standard_D64s_v5",
      "Standard_D96s_v5",
    ]);
    expect(sameFamily("Standard_D4ds_v5").every((s) => s.name.endsWith("ds_v5"))).toBe(true);
    expect(sameFamily("Standard_NC6")).toEqual([]);
  });
});

describe("AKS reservations (Microsoft Learn, node resource reservations)", () => {
  it.each([
    [1, 60],
    [2, 100],
    [4, 140],
    [8, 180],
    [16, 260],
    [32, 420],
    [64, 740],
  ])("kube-reserved CPU for %i cores is the documented %i m", (cores, millis) => {
    expect(kubeReservedCpuMillis(cores)).toBe(millis);
  });

  it("continues the table's line between and beyond its points", () => {
    expect(kubeReservedCpuMillis(20)).toBe(300);
    expect(kubeReservedCpuMillis(48)).toBe(580);
    expect(kubeReservedCpuMillis(72)).toBe(820);
  });

  it.each([
    // The page's own examples (AKS ≥ 1.29): 8 GB with 30 pods reserves 20×30+50 = 650;
    // 4 GB with 70 pods reserves 25% = 1 GB because 20×70+50 = 1450 is more.
    [8 * Gi, 30, undefined, 650 * Mi],
    [4 * Gi, 70, undefined, 1 * Gi],
    [16 * Gi, 30, "1.30", 650 * Mi],
    [16 * Gi, 250, "1.31.2", 4 * Gi],
    // Before 1.29: 25% of 4 + 20% of the next 4 + 10% of the next 8 (16 GiB → 2.6 GiB);
    // the page's 7 GB example: 25% of 4 + 20% of 3 = 1.6 GB.
    [16 * Gi, 30, "1.28", Math.ceil(2.6 * Gi)],
    [7 * Gi, 30, "1.28.9", Math.ceil(1.6 * Gi)],
    [
      256 * Gi,
      30,
      "1.27",
      Math.ceil(0.25 * 4 * Gi + 0.2 * 4 * Gi + 0.1 * 8 * Gi + 0.06 * 112 * Gi + 0.02 * 128 * Gi),
    ],
  ])(
    "kube-reserved memory of %i bytes, %i max pods, version %s",
    (memory, maxPods, version, expected) => {
      expect(kubeReservedMemoryBytes(memory, { maxPods, kubernetesVersion: version })).toBe(
        expected,
      );
    },
  );

  it("uses the 100Mi eviction threshold from 1.29 and 750Mi before", () => {
    expect(evictionThresholdBytes(undefined)).toBe(100 * Mi);
    expect(evictionThresholdBytes("1.29")).toBe(100 * Mi);
    expect(evictionThresholdBytes("1.28.5")).toBe(750 * Mi);
  });

  it("computes a Standard_D4s_v5 worker node's room for one pod", () => {
    const c = aksNodeCapacity(lookupVmSize("Standard_D4s_v5")!, { maxPods: WORKER_POOL_MAX_PODS });
    expect(c.allocatableCpuMillis).toBe(4000 - 140);
    expect(c.allocatableMemoryBytes).toBe(16 * Gi - 650 * Mi - 100 * Mi);
    expect(c.podCpuMillis).toBe(4000 - 140 - DAEMONSET_ALLOWANCE.cpuMillis);
    expect(c.podMemoryBytes).toBe(16 * Gi - 650 * Mi - 100 * Mi - DAEMONSET_ALLOWANCE.memoryBytes);
  });
});

describe("quantity suggestions", () => {
  it.each([
    [14.27 * Gi, "14Gi"],
    [4 * Gi, "4Gi"],
    [3.9 * Gi, "3968Mi"],
    [2 * Gi + 100 * Mi, "2Gi"],
  ])("rounds %i bytes down to %s", (bytes, q) => expect(roundMemoryDown(bytes)).toBe(q));

  it.each([
    [3460, "3400m"],
    [2000, "2"],
    [1999, "1900m"],
  ])("rounds %i m down to %s", (m, q) => expect(roundCpuDown(m)).toBe(q));

  it.each([
    ["2", 2000],
    ["1500m", 1500],
    ["0.5", 500],
    ["two", NaN],
  ])("reads CPU %s as %d m", (q, m) => expect(cpuMillisOf(q)).toBe(m));
});

describe("fitPod", () => {
  const opts = { maxPods: WORKER_POOL_MAX_PODS };
  it("counts how many pods fit on a node", () => {
    const pod = { memoryBytes: 6 * Gi, cpuMillis: 1000, memoryQuantity: "6Gi", cpuQuantity: "1" };
    const fit = fitPod(pod, "Standard_D8s_v5", opts);
    expect(fit.kind).toBe("fits");
    if (fit.kind === "fits") expect(fit.podsPerNode).toBe(5); // 30.2Gi / 6Gi
  });
});

describe("azureFitProblems", () => {
  type Case = {
    name: string;
    config: Parameters<typeof azureConfig>[0];
    problems: { path: string; message: string }[];
    warnings?: RegExp[];
  };
  const cases: Case[] = [
    {
      name: "a 12Gi / 3 CPU pod fits Standard_D4s_v5",
      config: { podMemory: "12Gi", cpu: "3" },
      problems: [],
    },
    {
      name: "exactly the pod room fits (14610Mi on Standard_D4s_v5)",
      config: { podMemory: "14610Mi", cpu: "3" },
      problems: [],
    },
    {
      name: "16Gi on Standard_D4s_v5 is refused with the amount that fits",
      config: { podMemory: "16Gi", cpu: "3" },
      problems: [
        {
          path: "workers.podMemory",
          message:
            "16Gi does not fit Standard_D4s_v5 (about 14.2Gi allocatable); use Standard_D8s_v5 or podMemory ≤ 14Gi",
        },
      ],
    },
    {
      name: "1Mi over the room is refused",
      config: { podMemory: "14611Mi", cpu: "3" },
      problems: [
        {
          path: "workers.podMemory",
          message:
            "14611Mi does not fit Standard_D4s_v5 (about 14.2Gi allocatable); use Standard_D8s_v5 or podMemory ≤ 14Gi",
        },
      ],
    },
    {
      name: "4 CPUs on a 4-vCPU VM are refused",
      config: { podMemory: "12Gi", cpu: "4" },
      problems: [
        {
          path: "workers.cpu",
          message:
            "4 does not fit Standard_D4s_v5 (about 3.46 CPU allocatable); use Standard_D8s_v5 or cpu ≤ 3400m",
        },
      ],
    },
    {
      name: "memory and CPU both too big: both reported, the suggestion fits both",
      config: {
        podMemory: "40Gi",
        cpu: "10",
        azure: { workerPool: { vmSize: "Standard_E4s_v5" } },
      },
      problems: [
        {
          path: "workers.podMemory",
          message:
            "40Gi does not fit Standard_E4s_v5 (about 30.2Gi allocatable); use Standard_E16s_v5 or podMemory ≤ 30Gi",
        },
        {
          path: "workers.cpu",
          message:
            "10 does not fit Standard_E4s_v5 (about 3.46 CPU allocatable); use Standard_E16s_v5 or cpu ≤ 3400m",
        },
      ],
    },
    {
      name: "too big for the whole family",
      config: {
        podMemory: "400Gi",
        cpu: "8",
        azure: { workerPool: { vmSize: "Standard_F8s_v2" } },
      },
      problems: [
        {
          path: "workers.podMemory",
          message:
            "400Gi does not fit Standard_F8s_v2 (about 14.2Gi allocatable); no Standard_F*s_v2 size is large enough: choose another azure.workerPool.vmSize or podMemory ≤ 14Gi",
        },
        {
          path: "workers.cpu",
          message:
            "8 does not fit Standard_F8s_v2 (about 7.42 CPU allocatable); no Standard_F*s_v2 size is large enough: choose another azure.workerPool.vmSize or cpu ≤ 7400m",
        },
      ],
    },
    {
      name: "a pre-1.29 cluster reserves more (16 GiB node: 2.6Gi kube-reserved + 750Mi)",
      config: { podMemory: "12Gi", cpu: "3", azure: { kubernetesVersion: "1.28" } },
      problems: [
        {
          path: "workers.podMemory",
          message:
            "12Gi does not fit Standard_D4s_v5 (about 11.6Gi allocatable); use Standard_D8s_v5 or podMemory ≤ 11Gi",
        },
      ],
    },
    {
      name: "an unknown size is a warning, not a failure",
      config: { podMemory: "64Gi", azure: { workerPool: { vmSize: "Standard_NC24ads_A100_v4" } } },
      problems: [],
      warnings: [
        /^azure\.workerPool\.vmSize: Standard_NC24ads_A100_v4 is not in the VM size table/,
      ],
    },
    {
      name: "the scheduler must fit the system pool",
      config: { schedulerMemory: "8Gi", schedulerCpu: "500m" },
      problems: [
        {
          path: "scheduler.memory",
          message:
            "8Gi does not fit Standard_D2s_v5 (about 4.9Gi allocatable); use Standard_D4s_v5 or memory ≤ 4Gi",
        },
      ],
    },
    {
      name: "more worker pods than the pool's nodes can hold is a warning",
      config: { podMemory: "12Gi", autoscaling: { enabled: true, maxReplicas: 8 } },
      problems: [],
      warnings: [
        /^azure\.workerPool\.maxCount: 5 × Standard_D4s_v5 hold 5 worker pods \(1 per node\) but the workspace may run 8; raise maxCount to 8/,
      ],
    },
    {
      name: "a job writing to another container than the runner's is refused",
      config: {
        runnerResults: "az://results/runs",
        jobs: { sir: "az://results/runs/sir", other: "az://elsewhere/x", local: "/tmp/out" },
      },
      problems: [
        {
          path: "jobs.other.results",
          message:
            'container "elsewhere" is not the workspace\'s results container "results", the only one the runner\'s identity may write to; use az://results/... or change runner.results',
        },
      ],
    },
    {
      name: "target kubernetes: nothing to check",
      config: { target: "kubernetes", podMemory: "512Gi" },
      problems: [],
    },
  ];

  it.each(cases)("$name", ({ config, problems, warnings }) => {
    const result = azureFitProblems(azureConfig(config));
    expect(result.problems).toEqual(problems);
    expect(result.warnings).toHaveLength(warnings?.length ?? 0);
    (warnings ?? []).forEach((w, i) => expect(result.warnings[i]).toMatch(w));
  });
});
