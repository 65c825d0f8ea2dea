/**
 * Memory quantities and worker-pod headroom: pure functions, exact integer arithmetic.
 *
 * Why this module is strict:
 * - Kubernetes quantities are case-sensitive (`500m` is half a byte, `4G` is 4×10^9 bytes and
 *   `4Gi` is 4×2^30), while Dask's `parse_bytes` is case-insensitive (`500m` = 500 MB). The same
 *   string must never mean two things, so only Kubernetes syntax is accepted, Dask spellings are
 *   rejected with a hint, and `dask worker --memory-limit` is rendered as an exact byte count.
 * - Parsing uses BigInt rationals, so `1.1Gi` is computed exactly and a value that is not a whole
 *   number of bytes is rejected instead of being silently rounded by one parser and not another.
 * - A worker pod runs the nanny host process (`dask worker`) plus `nprocs` worker processes in one
 *   memory cgroup. The nanny only restarts a worker process when *that process* passes
 *   `terminate × memoryPerProcess`; the kernel kills the whole pod when the *sum* passes the pod
 *   limit. So `nprocs × memoryPerProcess` must leave measured headroom for the host process and
 *   for what processes allocate between two nanny checks.
 */
import type { Bytes } from "./types.js";
import type { Problem } from "./errors.js";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** A string is not a usable Kubernetes memory quantity; `message` says why and how to fix it. */
export class QuantityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QuantityError";
  }
}

const BINARY_SUFFIXES: Record<string, bigint> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};

/** Decimal SI suffixes as powers of ten (`m` is milli, not mega). */
const DECIMAL_EXPONENTS: Record<string, number> = {
  m: -3,
  "": 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};

/** An exact rational number num/den (den > 0). */
interface Rational {
  num: bigint;
  den: bigint;
}

const NUMBER_RE = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$/;
const EXPONENT_RE = /^[eE]([+-]?\d+)$/;

/**
 * Parses Kubernetes quantity syntax (`<signedNumber><suffix>`: binary `Ki Mi Gi Ti Pi Ei`,
 * decimal `m "" k M G T P E`, or an exponent `e3`/`E3`) into an exact rational.
 * Returns undefined when the text is not in that grammar.
 */
function parseRational(text: string): Rational | undefined {
  const m = NUMBER_RE.exec(text);
  if (m === null) return undefined;
  const [, sign, digits, suffix] = m as unknown as [string, string, string, string];
  const [intPart, fracPart = ""] = digits.split(".");
  let num = BigInt((intPart ?? "") + fracPart || "0");
  let den = 10n ** BigInt(fracPart.length);
  if (sign === "-") num = -num;
  const binary = BINARY_SUFFIXES[suffix];
  let exponent: number | undefined;
  if (binary !== undefined) {
    num *= binary;
  } else if (suffix in DECIMAL_EXPONENTS) {
    exponent = DECIMAL_EXPONENTS[suffix];
  } else {
    const e = EXPONENT_RE.exec(suffix);
    if (e === null) return undefined;
    exponent = Number(e[1]);
    // Kubernetes caps exponents far below this; the cap keeps BigInt powers cheap.
    if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > 64) return undefined;
  }
  if (exponent !== undefined) {
    if (exponent >= 0) num *= 10n ** BigInt(exponent);
    else den *= 10n ** BigInt(-exponent);
  }
  return { num, den };
}

/** Dask / human unit spellings (lower-cased) and the Kubernetes binary suffix meant by them. */
const DASK_UNITS: Record<string, string> = {
  b: "",
  byte: "",
  bytes: "",
  k: "Ki",
  kb: "Ki",
  kib: "Ki",
  ki: "Ki",
  m: "Mi",
  mb: "Mi",
  mib: "Mi",
  mi: "Mi",
  g: "Gi",
  gb: "Gi",
  gib: "Gi",
  gi: "Gi",
  t: "Ti",
  tb: "Ti",
  tib: "Ti",
  ti: "Ti",
  p: "Pi",
  pb: "Pi",
  pib: "Pi",
  pi: "Pi",
};

/**
 * The Kubernetes spelling a user probably meant by a Dask-style or mis-cased quantity
 * (`4GiB`, `4GB`, `4gb`, `4 GiB`, `4g` → `4Gi`; `500m` → `500Mi`), or undefined.
 */
export function suggestQuantity(text: string): string | undefined {
  const m = /^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*([A-Za-z]+)\s*$/.exec(text);
  if (m === null) return undefined;
  const [, number, unit] = m as unknown as [string, string, string];
  const suffix = DASK_UNITS[unit.toLowerCase()];
  return suffix === undefined ? undefined : `${number}${suffix}`;
}

const SYNTAX_HELP =
  "use a number with a Kubernetes suffix: Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000), e.g. 4Gi or 3584Mi";

/**
 * Parses a Kubernetes memory quantity into an exact whole number of bytes.
 *
 * Case-sensitive and exact: `1.5Gi` = 1610612736, `4G` = 4000000000, `1e3` = 1000. Rejects
 * anything that is not a whole number of bytes (`500m` is half a byte: Kubernetes' `m` is milli)
 * and Dask spellings with a hint (`4GiB` → `did you mean 4Gi?`). Signs are accepted so that
 * callers can say "must be positive" with the number; callers check the range.
 *
 * @throws QuantityError with a message that says what to write instead.
 */
export function parseQuantity(q: string): Bytes {
  const text = q;
  const r = parseRational(text);
  if (r === undefined) {
    const hint = suggestQuantity(text);
    if (hint !== undefined && parseRational(hint) !== undefined) {
      throw new QuantityError(
        `${JSON.stringify(text)} is not a Kubernetes quantity (units are case-sensitive, no "B", no spaces); did you mean ${hint}?`,
      );
    }
    throw new QuantityError(`${JSON.stringify(text)} is not a Kubernetes quantity; ${SYNTAX_HELP}`);
  }
  if (r.num % r.den !== 0n) {
    const milli = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)m$/.test(text);
    const hint = milli ? `${text.slice(0, -1)}Mi` : undefined;
    const approx = Number(r.num) / Number(r.den);
    const rounded =
      approx >= MiB ? `${Math.ceil(approx / MiB)}Mi` : `${Math.ceil(Math.max(approx, 1) / KiB)}Ki`;
    throw new QuantityError(
      `${JSON.stringify(text)} is ${exactDecimal(r)} bytes, not a whole number of bytes` +
        (hint !== undefined
          ? ` (Kubernetes "m" means milli, not mega); did you mean ${hint}?`
          : `; round it to a whole unit, e.g. ${rounded}`),
    );
  }
  const value = r.num / r.den;
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new QuantityError(`${JSON.stringify(text)} is too large to be a memory size`);
  }
  return Number(value);
}

/** The exact decimal expansion of a rational whose denominator is a power of ten. */
function exactDecimal(r: Rational): string {
  const sign = r.num < 0n ? "-" : "";
  const num = r.num < 0n ? -r.num : r.num;
  const digits = r.den.toString().length - 1;
  const whole = num / r.den;
  const frac = (num % r.den).toString().padStart(digits, "0").replace(/0+$/, "");
  return `${sign}${whole}${frac === "" ? "" : `.${frac}`}`;
}

/** Binary units for formatting, largest first (Pi and up exceed what a pod will ever have). */
const FORMAT_UNITS: ReadonlyArray<[string, number]> = [
  ["Ti", 1024 * GiB],
  ["Gi", GiB],
  ["Mi", MiB],
  ["Ki", KiB],
];

/**
 * Canonical Kubernetes quantity for an exact byte count: the largest binary unit that divides
 * it exactly (`24Gi`, `3584Mi`, `1536Ki`), else plain bytes. `parseQuantity(formatQuantity(b))`
 * is always `b`.
 */
export function formatQuantity(bytes: Bytes): string {
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`not an exact byte count: ${bytes}`);
  if (bytes === 0) return "0";
  const sign = bytes < 0 ? "-" : "";
  const abs = Math.abs(bytes);
  for (const [suffix, size] of FORMAT_UNITS) {
    if (abs % size === 0) return `${sign}${abs / size}${suffix}`;
  }
  return `${sign}${abs}`;
}

/** Rounds down to a whole MiB (derived per-process limits are whole MiB so they read well). */
export function floorMiB(bytes: Bytes): Bytes {
  return Math.floor(bytes / MiB) * MiB;
}

/** Rounds up to a whole MiB (suggested pod sizes). */
export function ceilMiB(bytes: Bytes): Bytes {
  return Math.ceil(bytes / MiB) * MiB;
}

/**
 * Parses a Kubernetes CPU quantity (`"2"`, `"1500m"`, `"0.5"`) into whole millicores.
 * @throws QuantityError when it is not a positive whole number of millicores.
 */
export function parseCpuMillis(q: string): number {
  const r = parseRational(q);
  if (r === undefined) {
    throw new QuantityError(
      `${JSON.stringify(q)} is not a Kubernetes CPU quantity; use cores ("2", "0.5") or millicores ("1500m")`,
    );
  }
  const millis = r.num * 1000n;
  if (millis % r.den !== 0n) {
    throw new QuantityError(
      `${JSON.stringify(q)} is finer than one millicore; round it to whole millicores`,
    );
  }
  const value = Number(millis / r.den);
  if (value <= 0) throw new QuantityError(`${JSON.stringify(q)} must be positive`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Headroom
// ---------------------------------------------------------------------------------------------

/**
 * Minimum headroom, from a measurement of the real process tree of
 * `dask worker ADDR --nworkers N --nthreads 1 --memory-limit 4294967296 --name measure`
 * (distributed 2026.8.0, Python 3.11.7, psutil 7.2.2, this repo's .venv; 2-core Linux VM), made by
 *
 *     .venv/bin/python scripts/measure-nanny.py      # N = 1, 2, 4, 8; idle workers; max of 5 s
 *
 * MiB    N  host RSS  host USS  host PSS  helpers  helpers RSS  overhead RSS  overhead PSS  idle worker RSS
 *        1      59.6      41.5      43.5        1         12.1          71.7          49.8             79.6
 *        2      60.0      41.8      43.6        1         12.1          72.1          49.8             79.5
 *        4      60.5      42.4      43.9        1         12.1          72.7          50.0             79.8
 *        8      61.5      43.3      44.4        1         12.1          73.7          50.4             79.5
 *
 * "host" is the `dask worker` process holding the N Nanny objects; "helpers" is the rest of the
 * tree minus the worker processes (multiprocessing's resource tracker); overhead = host +
 * helpers, what the headroom must hold before any overshoot. It hardly grows with N (~0.3 MiB
 * per Nanny). The same run measured the fastest RSS growth of one process (numpy `np.ones`,
 * first touch of fresh pages): 898 MiB/s, i.e. 90 MiB per 100 ms nanny tick.
 *
 * The minimum is therefore:
 * - {@link NANNY_HOST_BASE_BYTES} 128 MiB: the measured 74 MiB overhead × ~1.75, because the
 *   host's heap grows over a long run (comm buffers, logs, worker restarts) and a production image
 *   may import more than this venv;
 * - {@link NANNY_HOST_PER_PROCESS_BYTES} 1 MiB per extra process (measured ~0.3 MiB);
 * - {@link OVERSHOOT_PER_PROCESS_BYTES} 96 MiB per process: one full tick at the measured rate.
 *   Every process of a pod runs similar tasks, so they can overshoot together. The `1 − terminate`
 *   share of each limit (5% by default) is a second buffer that grows with the limit, but it is 0
 *   when terminate is 1 and only 51 MiB for a 1Gi limit, so it is not counted on.
 * Resulting minimum: 1 → 224Mi, 2 → 321Mi, 4 → 515Mi, 6 → 709Mi, 8 → 903Mi.
 */
export const NANNY_HOST_BASE_BYTES: Bytes = 128 * MiB;
/** Measured growth of the nanny host process tree per extra worker process, rounded up. */
export const NANNY_HOST_PER_PROCESS_BYTES: Bytes = 1 * MiB;
/**
 * Per-tick overshoot allowance per worker process. The nanny samples each process's RSS every
 * 100 ms (`distributed.worker.memory.monitor-interval`) and restarts it above
 * `terminate × memoryPerProcess`; between two samples a process can grow by about this much
 * (measured: 90 MiB per tick, rounded up).
 */
export const OVERSHOOT_PER_PROCESS_BYTES: Bytes = 96 * MiB;

/** Minimum headroom for one worker process (the smallest pod). */
export const DEFAULT_MIN_HEADROOM_BYTES: Bytes = minHeadroom(1);

/**
 * The least headroom a worker pod with `nprocs` worker processes may have: the measured nanny
 * host process tree plus per-process overshoot allowance, rounded up to a whole MiB.
 */
export function minHeadroom(nprocs: number): Bytes {
  return ceilMiB(
    NANNY_HOST_BASE_BYTES +
      NANNY_HOST_PER_PROCESS_BYTES * Math.max(0, nprocs - 1) +
      OVERSHOOT_PER_PROCESS_BYTES * nprocs,
  );
}

/**
 * The smallest per-process memory limit accepted. An idle worker process already holds 80 MiB RSS
 * (measured, see above): under a limit much below 256 MiB it would pass the spill (0.7) and
 * pause (0.8) thresholds before it runs a single task.
 */
export const MIN_MEMORY_PER_PROCESS_BYTES: Bytes = 256 * MiB;

/** How the per-process memory limit was given in the stack config. */
export type MemoryLimitSpec =
  /** Absent: derived from podMemory − headroom. */
  | { kind: "derived" }
  /** A Kubernetes quantity, already in bytes. */
  | { kind: "bytes"; bytes: Bytes }
  /** Dask's `auto`: the cgroup limit divided by nprocs. */
  | { kind: "auto" }
  /** A Dask fraction 0 < f ≤ 1 of the (pod) memory limit, per process. */
  | { kind: "fraction"; fraction: number };

export interface HeadroomInput {
  /** Worker processes per pod. */
  nprocs: number;
  /** Pod memory limit, bytes. */
  podMemory: Bytes;
  memoryPerProcess: MemoryLimitSpec;
  /** Headroom the user asked for (a minimum to keep), bytes; the measured minimum when absent. */
  headroom?: Bytes;
}

export interface HeadroomPlan {
  /** The `--memory-limit` of each worker process, bytes. */
  memoryPerProcess: Bytes;
  /** podMemory − nprocs × memoryPerProcess, exactly. */
  headroom: Bytes;
  /** The least headroom allowed for this nprocs (measured minimum or the user's, if larger). */
  required: Bytes;
}

export type HeadroomResult = { ok: true; plan: HeadroomPlan } | { ok: false; problems: Problem[] };

const q = formatQuantity;

/**
 * Problems with an explicit `workers.headroom` on its own (it needs only nprocs, so it is checked
 * even when podMemory is invalid): headroom ≤ 0, or below {@link minHeadroom}.
 */
export function headroomSettingProblems(nprocs: number, headroom: Bytes | undefined): Problem[] {
  if (headroom === undefined) return [];
  const minimum = minHeadroom(nprocs);
  if (headroom <= 0) {
    return [
      {
        path: "workers.headroom",
        message: `${q(headroom)} is not positive; the nanny host process and per-tick overshoot need at least ${q(minimum)} for ${procs(nprocs)}; remove the key to use that minimum`,
      },
    ];
  }
  if (headroom < minimum) {
    return [
      {
        path: "workers.headroom",
        message: `${q(headroom)} is below the minimum ${q(minimum)} for ${procs(nprocs)} (measured nanny host process + per-tick overshoot); remove the key to use the minimum or set at least ${q(minimum)}`,
      },
    ];
  }
  return [];
}

/**
 * Decides each worker process's memory limit and checks the pod's headroom.
 *
 * - `memoryPerProcess` absent: `(podMemory − headroom) / nprocs`, rounded down to a whole MiB,
 *   where headroom defaults to {@link minHeadroom}. Rounding down only adds headroom.
 * - `memoryPerProcess` given: headroom = podMemory − nprocs × memoryPerProcess must be > 0 and
 *   at least the required headroom (the measured minimum, or `headroom` if that is larger).
 * - `auto`, and fractions when nprocs > 1, are rejected: Dask gives the processes the whole
 *   limit between them and leaves nothing for the nanny host process.
 *
 * The result always satisfies `nprocs × memoryPerProcess + headroom = podMemory` and
 * `headroom ≥ minHeadroom(nprocs)`.
 */
export function headroomPlan(input: HeadroomInput): HeadroomResult {
  const { nprocs, podMemory } = input;
  const minimum = minHeadroom(nprocs);
  const problems: Problem[] = headroomSettingProblems(nprocs, input.headroom);
  const required = Math.max(minimum, input.headroom ?? minimum);
  const largest = floorMiB((podMemory - required) / nprocs);
  const podFor = (perProcess: Bytes): string => q(ceilMiB(nprocs * perProcess + required));
  const fix =
    largest >= MIN_MEMORY_PER_PROCESS_BYTES
      ? `use at most ${q(largest)} per process or raise podMemory`
      : `raise podMemory`;

  const spec = input.memoryPerProcess;
  if (spec.kind === "auto" || (spec.kind === "fraction" && nprocs > 1)) {
    const what =
      spec.kind === "auto"
        ? `"auto" divides the pod limit ${q(podMemory)} among ${procs(nprocs)}`
        : `${spec.fraction} gives each of the ${procs(nprocs)} that share of the pod limit ${q(podMemory)}`;
    problems.push({
      path: "workers.memoryPerProcess",
      message:
        `${what} and leaves nothing for the nanny host process; ` +
        (largest >= MIN_MEMORY_PER_PROCESS_BYTES
          ? `remove the key to derive ${q(largest)} from podMemory − headroom, or set a quantity of at most ${q(largest)}`
          : `remove the key and raise podMemory to at least ${podFor(MIN_MEMORY_PER_PROCESS_BYTES)}`),
    });
    return { ok: false, problems };
  }

  let perProcess: Bytes;
  if (spec.kind === "derived") {
    perProcess = largest;
    if (perProcess < MIN_MEMORY_PER_PROCESS_BYTES) {
      problems.push({
        path: "workers.podMemory",
        message: `${q(podMemory)} leaves ${perProcess > 0 ? q(perProcess) : "nothing"} per process for ${procs(nprocs)} after ${q(required)} headroom, below the ${q(MIN_MEMORY_PER_PROCESS_BYTES)} a worker process needs; raise podMemory to at least ${podFor(MIN_MEMORY_PER_PROCESS_BYTES)} or lower workers.nprocs`,
      });
    }
  } else {
    perProcess =
      spec.kind === "bytes" ? spec.bytes : Math.floor((spec.fraction * podMemory) / MiB) * MiB;
    const given = spec.kind === "bytes" ? q(spec.bytes) : `${spec.fraction} × ${q(podMemory)}`;
    const headroom = podMemory - nprocs * perProcess;
    const product = `${nprocs} × ${given} = ${q(nprocs * perProcess)}`;
    if (perProcess < MIN_MEMORY_PER_PROCESS_BYTES) {
      problems.push({
        path: "workers.memoryPerProcess",
        message: `${given} is below the ${q(MIN_MEMORY_PER_PROCESS_BYTES)} a worker process needs (an idle worker process already holds about 80Mi); set at least ${q(MIN_MEMORY_PER_PROCESS_BYTES)}`,
      });
    } else if (headroom <= 0) {
      const leaves =
        headroom === 0
          ? `leaves 0 of podMemory ${q(podMemory)} for the nanny`
          : `exceeds podMemory ${q(podMemory)} by ${q(-headroom)}, leaving nothing for the nanny`;
      problems.push({
        path: "workers.memoryPerProcess",
        message: `${product} ${leaves}; ${fix} to at least ${podFor(perProcess)}`,
      });
    } else if (headroom < required) {
      problems.push({
        path: "workers.memoryPerProcess",
        message: `${product} leaves ${q(headroom)} of podMemory ${q(podMemory)} for the nanny, below the required ${q(required)} for ${procs(nprocs)}; ${fix} to at least ${podFor(perProcess)}`,
      });
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    plan: { memoryPerProcess: perProcess, headroom: podMemory - nprocs * perProcess, required },
  };
}

function procs(n: number): string {
  return n === 1 ? "1 process" : `${n} processes`;
}
