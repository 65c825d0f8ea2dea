import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  GiB,
  MiB,
  MIN_MEMORY_PER_PROCESS_BYTES,
  formatQuantity,
  headroomPlan,
  minHeadroom,
  parseCpuMillis,
  parseQuantity,
  QuantityError,
} from "../infra/memory.js";

describe("parseQuantity", () => {
  it.each([
    ["1", 1],
    ["1024", 1024],
    ["1Ki", 1024],
    ["1Mi", MiB],
    ["4Gi", 4 * GiB],
    ["1.5Gi", 1610612736],
    ["0.5Ki", 512],
    [".5Mi", 524288],
    ["3584Mi", 3584 * MiB],
    ["1Ti", 1024 * GiB],
    ["4G", 4_000_000_000],
    ["4M", 4_000_000],
    ["1k", 1000],
    ["1e3", 1000],
    ["1E3", 1000],
    ["1.5e3", 1500],
    ["1000m", 1],
    ["2000000m", 2000],
    ["+1Mi", MiB],
    ["-1Gi", -GiB],
  ] as Array<[string, number]>)("%s = %d bytes", (q, bytes) => {
    expect(parseQuantity(q)).toBe(bytes);
  });

  it("is exact where floating point is not: 1.1Gi and 0.3Ki are not whole bytes, 1.25Gi is", () => {
    // 1.1 × 2^30 in floating point is 1181116006.4000001; the exact value is not a whole byte.
    expect(() => parseQuantity("1.1Gi")).toThrow(
      /1181116006\.4 bytes, not a whole number of bytes/,
    );
    expect(() => parseQuantity("0.3Ki")).toThrow(/307\.2 bytes/);
    expect(parseQuantity("1.25Gi")).toBe(1342177280);
    expect(parseQuantity("0.75Mi")).toBe(786432);
    expect(() => parseQuantity("0.7Mi")).toThrow(
      '"0.7Mi" is 734003.2 bytes, not a whole number of bytes; round it to a whole unit, e.g. 717Ki',
    );
  });

  it("is case-sensitive: 500m is half a byte, not 500 MB, and says what was meant", () => {
    expect(() => parseQuantity("500m")).toThrow(
      '"500m" is 0.5 bytes, not a whole number of bytes (Kubernetes "m" means milli, not mega); did you mean 500Mi?',
    );
    expect(parseQuantity("4G")).not.toBe(parseQuantity("4Gi"));
    expect(parseQuantity("4Gi") - parseQuantity("4G")).toBe(294967296);
  });

  it.each([
    ["4GiB", "4Gi"],
    ["4GB", "4Gi"],
    ["4gb", "4Gi"],
    ["4 GiB", "4Gi"],
    ["4 Gi", "4Gi"],
    ["4g", "4Gi"],
    ["4gi", "4Gi"],
    ["512MiB", "512Mi"],
    ["512MB", "512Mi"],
    ["1.5GiB", "1.5Gi"],
    ["4K", "4Ki"],
    ["4KB", "4Ki"],
    ["100B", "100"],
  ])("rejects the Dask spelling %s: did you mean %s?", (q, hint) => {
    expect(() => parseQuantity(q)).toThrow(QuantityError);
    expect(() => parseQuantity(q)).toThrow(
      `${JSON.stringify(q)} is not a Kubernetes quantity (units are case-sensitive, no "B", no spaces); did you mean ${hint}?`,
    );
  });

  it.each(["", "abc", "Gi", "1.5.5Gi", "4Xi", "1e", "--1", "1 2"])(
    "rejects %j with the syntax it expects",
    (q) => {
      expect(() => parseQuantity(q)).toThrow(
        /is not a Kubernetes quantity; use a number with a Kubernetes suffix/,
      );
    },
  );

  it("rejects sizes beyond exact integers", () => {
    expect(() => parseQuantity("2E")).toThrow('"2E" is too large to be a memory size');
    expect(() => parseQuantity("1e400")).toThrow(/not a Kubernetes quantity/);
  });

  it("agrees with exact BigInt arithmetic for any decimal with a binary suffix", () => {
    const suffixes: Array<[string, bigint]> = [
      ["Ki", 1n << 10n],
      ["Mi", 1n << 20n],
      ["Gi", 1n << 30n],
    ];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4096 }),
        fc.integer({ min: 0, max: 999 }),
        fc.constantFrom(...suffixes),
        (whole, frac, [suffix, unit]) => {
          const digits = String(frac).padStart(3, "0");
          const text = `${whole}.${digits}${suffix}`;
          const num = (BigInt(whole) * 1000n + BigInt(frac)) * unit;
          if (num % 1000n === 0n) expect(parseQuantity(text)).toBe(Number(num / 1000n));
          else expect(() => parseQuantity(text)).toThrow(/not a whole number of bytes/);
        },
      ),
    );
  });
});

describe("formatQuantity", () => {
  it.each([
    [24 * GiB, "24Gi"],
    [3584 * MiB, "3584Mi"],
    [1536 * 1024, "1536Ki"],
    [1000, "1000"],
    [1, "1"],
    [0, "0"],
    [-GiB, "-1Gi"],
    [2 * 1024 * GiB, "2Ti"],
  ])("%d bytes → %s", (bytes, text) => {
    expect(formatQuantity(bytes)).toBe(text);
  });

  it("round-trips every exact byte count through parseQuantity", () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 50), max: 2 ** 50 }), (b) => {
        expect(parseQuantity(formatQuantity(b))).toBe(b);
      }),
    );
  });

  it("refuses non-integers", () => {
    expect(() => formatQuantity(1.5)).toThrow(RangeError);
  });
});

describe("parseCpuMillis", () => {
  it.each([
    ["2", 2000],
    ["0.5", 500],
    ["1500m", 1500],
    ["250m", 250],
    ["1.25", 1250],
  ])("%s = %d millicores", (q, m) => expect(parseCpuMillis(q)).toBe(m));

  it("rejects sub-millicore, zero, negative and non-quantities", () => {
    expect(() => parseCpuMillis("0.0005")).toThrow("finer than one millicore");
    expect(() => parseCpuMillis("0")).toThrow("must be positive");
    expect(() => parseCpuMillis("-1")).toThrow("must be positive");
    expect(() => parseCpuMillis("2 cores")).toThrow("is not a Kubernetes CPU quantity");
  });
});

describe("minHeadroom", () => {
  it("is the measured nanny overhead plus per-process overshoot, in whole MiB", () => {
    expect([1, 2, 4, 6, 8].map((n) => formatQuantity(minHeadroom(n)))).toEqual([
      "224Mi",
      "321Mi",
      "515Mi",
      "709Mi",
      "903Mi",
    ]);
  });

  it("grows with nprocs and is never below the measured 74 MiB host overhead", () => {
    for (let n = 1; n < 64; n++) {
      expect(minHeadroom(n + 1)).toBeGreaterThan(minHeadroom(n));
      expect(minHeadroom(n)).toBeGreaterThan(74 * MiB);
      expect(minHeadroom(n) % MiB).toBe(0);
    }
  });
});

describe("headroomPlan", () => {
  it("derives memoryPerProcess from podMemory − minimum headroom, rounded down to MiB", () => {
    const r = headroomPlan({
      nprocs: 6,
      podMemory: 24 * GiB,
      memoryPerProcess: { kind: "derived" },
    });
    expect(r).toEqual({
      ok: true,
      plan: {
        memoryPerProcess: 3977 * MiB,
        headroom: 24 * GiB - 6 * 3977 * MiB,
        required: 709 * MiB,
      },
    });
  });

  it("uses a user headroom above the minimum", () => {
    const r = headroomPlan({
      nprocs: 2,
      podMemory: 8 * GiB,
      memoryPerProcess: { kind: "derived" },
      headroom: GiB,
    });
    expect(r).toEqual({
      ok: true,
      plan: { memoryPerProcess: 3584 * MiB, headroom: GiB, required: GiB },
    });
  });

  it("rejects zero headroom (6 × 4Gi in 24Gi) with the largest safe limit", () => {
    const r = headroomPlan({
      nprocs: 6,
      podMemory: 24 * GiB,
      memoryPerProcess: { kind: "bytes", bytes: 4 * GiB },
    });
    expect(r).toEqual({
      ok: false,
      problems: [
        {
          path: "workers.memoryPerProcess",
          message:
            "6 × 4Gi = 24Gi leaves 0 of podMemory 24Gi for the nanny; use at most 3977Mi per process or raise podMemory to at least 25285Mi",
        },
      ],
    });
  });

  it("rejects a limit larger than the pod (12Gi in a 4Gi pod)", () => {
    const r = headroomPlan({
      nprocs: 1,
      podMemory: 4 * GiB,
      memoryPerProcess: { kind: "bytes", bytes: 12 * GiB },
    });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems[0]!.message).toBe(
      "1 × 12Gi = 12Gi exceeds podMemory 4Gi by 8Gi, leaving nothing for the nanny; use at most 3872Mi per process or raise podMemory to at least 12512Mi",
    );
  });

  it("rejects auto even with one process, and fractions with several", () => {
    const auto = headroomPlan({
      nprocs: 1,
      podMemory: 4 * GiB,
      memoryPerProcess: { kind: "auto" },
    });
    expect(!auto.ok && auto.problems[0]!.message).toBe(
      '"auto" divides the pod limit 4Gi among 1 process and leaves nothing for the nanny host process; remove the key to derive 3872Mi from podMemory − headroom, or set a quantity of at most 3872Mi',
    );
    const frac = headroomPlan({
      nprocs: 2,
      podMemory: 4 * GiB,
      memoryPerProcess: { kind: "fraction", fraction: 0.4 },
    });
    expect(frac.ok).toBe(false);
    // A fraction with one process is a plain share of the pod and is checked like a quantity.
    const one = headroomPlan({
      nprocs: 1,
      podMemory: 4 * GiB,
      memoryPerProcess: { kind: "fraction", fraction: 0.9 },
    });
    expect(one.ok && one.plan.memoryPerProcess).toBe(3686 * MiB);
  });

  it("rejects a pod too small for even the minimum per-process limit", () => {
    const r = headroomPlan({ nprocs: 4, podMemory: GiB, memoryPerProcess: { kind: "derived" } });
    expect(!r.ok && r.problems).toEqual([
      {
        path: "workers.podMemory",
        message:
          "1Gi leaves 127Mi per process for 4 processes after 515Mi headroom, below the 256Mi a worker process needs; raise podMemory to at least 1539Mi or lower workers.nprocs",
      },
    ]);
  });

  it("always satisfies nprocs × limit + headroom = podMemory and headroom ≥ minimum", () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 32 }),
        fc.integer({ min: 1, max: 256 * 1024 }).map((mi) => mi * MiB + 0),
        fc.option(
          fc.integer({ min: 1, max: 64 * 1024 }).map((mi) => mi * MiB),
          { nil: undefined },
        ),
        fc.option(fc.integer({ min: 1, max: 4 * GiB }), { nil: undefined }),
        (nprocs, podMemory, limit, headroom) => {
          const r = headroomPlan({
            nprocs,
            podMemory,
            memoryPerProcess:
              limit === undefined ? { kind: "derived" } : { kind: "bytes", bytes: limit },
            headroom,
          });
          if (!r.ok) return;
          accepted++;
          const { memoryPerProcess, headroom: h } = r.plan;
          expect(nprocs * memoryPerProcess + h).toBe(podMemory);
          expect(h).toBeGreaterThanOrEqual(minHeadroom(nprocs));
          expect(h).toBeGreaterThanOrEqual(headroom ?? 0);
          expect(memoryPerProcess).toBeGreaterThanOrEqual(MIN_MEMORY_PER_PROCESS_BYTES);
        },
      ),
      { numRuns: 2000 },
    );
    expect(accepted).toBeGreaterThan(200);
  });
});
