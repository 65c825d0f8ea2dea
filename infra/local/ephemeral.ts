/**
 * `npm run local`'s version of the worker pods' ephemeral-storage limit (docs/security.md).
 *
 * On Kubernetes a worker pod's `/tmp` emptyDir has a `sizeLimit` (`workers.spillStorage`, by
 * default 2 × podMemory) and the kubelet evicts the pod when its spill files grow past it. Locally
 * each pod gets its own scratch directory (`dask worker --local-directory`), and a watch measures
 * it the way the kubelet does (allocated blocks, every few seconds) and evicts the pod (stops its
 * process tree) past the same limit, so a study that would fill a node's disk on the cluster
 * fails the same way on a laptop instead of filling the laptop's disk.
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** A pod's scratch (spill) directory inside the run's temporary directory. */
export function podScratchDir(runTmpDir: string, pod: string): string {
  return path.join(runTmpDir, "pods", pod);
}

/** Bytes allocated on disk under `dir` (like `du`; files that vanish while walking are skipped). */
export function dirUsageBytes(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += dirUsageBytes(p);
    else {
      try {
        const st = fs.lstatSync(p);
        total += st.blocks * 512;
      } catch {
        // removed meanwhile (a worker unspilling)
      }
    }
  }
  return total;
}

/**
 * The warning when the run's filesystem cannot hold every pod's spill limit at once (the local
 * counterpart of the Azure OS-disk check); undefined when it can.
 */
export function spillSpaceWarning(opts: {
  freeBytes: number;
  pods: number;
  limitBytes: number;
  dir: string;
}): string | undefined {
  const needed = opts.pods * opts.limitBytes;
  if (needed <= opts.freeBytes) return undefined;
  const gi = (b: number) => `${(b / 1024 ** 3).toFixed(1)}Gi`;
  return (
    `${opts.pods} pod(s) × workers.spillStorage ${gi(opts.limitBytes)} = ${gi(needed)} is more than ` +
    `the ${gi(opts.freeBytes)} free under ${opts.dir}; a study that spills that much fills this disk ` +
    `first: lower workers.spillStorage or free some space`
  );
}

/** Polls a directory's usage and calls `onExceeded` once when it passes `limitBytes`. */
export class SpillWatch {
  private timer?: NodeJS.Timeout;
  private fired = false;

  constructor(
    private readonly opts: {
      dir: string;
      limitBytes: number;
      intervalMs?: number;
      onExceeded: (usedBytes: number) => void;
    },
  ) {}

  start(): this {
    this.timer = setInterval(() => this.check(), this.opts.intervalMs ?? 2_000);
    this.timer.unref();
    return this;
  }

  /** One measurement; true (and `onExceeded` called, once) when over the limit. */
  check(): boolean {
    if (this.fired) return true;
    const used = dirUsageBytes(this.opts.dir);
    if (used <= this.opts.limitBytes) return false;
    this.fired = true;
    this.stop();
    this.opts.onExceeded(used);
    return true;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
