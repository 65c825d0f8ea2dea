/**
 * Memory cgroups for the local launcher: each worker "pod" runs inside its own memory cgroup whose
 * limit is `workers.podMemory`, so the kernel enforces the pod limit exactly as the kubelet does in
 * a cluster (same OOM killer, same counter). Without this, a local run could never show the
 * zero-headroom failure the users hit (docs/why.md, failure 1).
 *
 * Layout: a run cgroup `<own cgroup>/dask-workspace-local-<launcher pid>/` holds one child per pod
 * (limited) and a `control` child (unlimited) for the scheduler and the runner. Creating it as a
 * child of the cgroup this process already sits in needs no privileges beyond write access to that
 * directory (true in containers and delegated systemd scopes) and never touches other cgroups.
 *
 * Both hierarchies are supported:
 * - cgroup v1: the `memory` controller's own mount; `memory.limit_in_bytes`, plus
 *   `memory.memsw.limit_in_bytes` when swap accounting exists (otherwise swap could hide an
 *   overshoot that a Kubernetes node, which runs without swap, would kill); OOM kills are counted
 *   by the `oom_kill` line of `memory.oom_control`.
 * - cgroup v2: the unified hierarchy; `memory.max`, `memory.swap.max = 0`, and
 *   `memory.oom.group = 1` (what the kubelet sets since Kubernetes 1.28: one OOM kills the whole
 *   container); OOM kills are the `oom_kill` line of `memory.events`.
 *
 * Decisions (which hierarchy, which path, which files to write, which leftovers are stale) are pure
 * functions; the rest is thin file I/O.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export type CgroupVersion = "v1" | "v2";

/** Where this process's memory cgroup is. */
export interface MemoryCgroupLocation {
  version: CgroupVersion;
  /** Absolute directory of the cgroup this process sits in, e.g. `/sys/fs/cgroup/memory/a/b`. */
  dir: string;
}

/** The result of looking for a usable memory cgroup: a location, or why there is none. */
export type LocateResult =
  { ok: true; location: MemoryCgroupLocation } | { ok: false; reason: string };

/** One line of `/proc/<pid>/cgroup`: `hierarchy-id:controller-list:path`. */
export interface ProcCgroupEntry {
  hierarchyId: number;
  /** Controllers bound to the hierarchy (`[]` for the v2 unified line `0::/path`). */
  controllers: string[];
  path: string;
}

/** One cgroup mount from `/proc/self/mountinfo`. */
export interface CgroupMount {
  fsType: "cgroup" | "cgroup2";
  /** Root of the mount inside the hierarchy (`/` unless the mount is a bind of a sub-tree). */
  root: string;
  mountPoint: string;
  /** Super options: for v1 they name the controllers (`rw,memory`). */
  superOptions: string[];
}

/** Parses `/proc/self/cgroup`. Lines that do not parse are ignored (the format is kernel-stable). */
export function parseProcCgroup(text: string): ProcCgroupEntry[] {
  const entries: ProcCgroupEntry[] = [];
  for (const line of text.split("\n")) {
    // The path may itself contain ':' so split only on the first two.
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    entries.push({
      hierarchyId: Number(m[1]),
      controllers: m[2] === "" ? [] : m[2].split(","),
      path: m[3],
    });
  }
  return entries;
}

/** Undoes the octal escapes (`\040` for a space) that mountinfo uses in paths. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses the cgroup and cgroup2 mounts out of `/proc/self/mountinfo`. */
export function parseCgroupMounts(mountInfo: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountInfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const before = line.slice(0, sep).split(" ");
    const after = line.slice(sep + 3).split(" ");
    const fsType = after[0];
    if (fsType !== "cgroup" && fsType !== "cgroup2") continue;
    if (before.length < 5) continue;
    mounts.push({
      fsType,
      root: unescapeMountPath(before[3]),
      mountPoint: unescapeMountPath(before[4]),
      superOptions: (after[2] ?? "").split(","),
    });
  }
  return mounts;
}

/** Joins a mount point and a cgroup path, removing the mount's own root from the cgroup path. */
function cgroupDir(mount: CgroupMount, cgPath: string): string | undefined {
  const root = mount.root === "/" ? "" : mount.root.replace(/\/$/, "");
  if (root !== "" && cgPath !== root && !cgPath.startsWith(`${root}/`)) return undefined;
  const rel = cgPath.slice(root.length).replace(/^\/+/, "");
  return rel === "" ? mount.mountPoint : path.join(mount.mountPoint, rel);
}

/**
 * Decides which memory cgroup this process sits in, from `/proc/self/cgroup` and
 * `/proc/self/mountinfo`. A v1 `memory` hierarchy wins when present: the memory controller can be
 * bound to only one hierarchy, so when v1 has it the unified (v2) tree has no memory control at all
 * (a hybrid layout like this machine's). `v2Controllers` is the content of the v2 cgroup's
 * `cgroup.controllers` file (undefined when unreadable): v2 is usable only when it lists `memory`.
 */
export function locateMemoryCgroup(
  procCgroup: string,
  mountInfo: string,
  v2Controllers?: (dir: string) => string | undefined,
): LocateResult {
  const entries = parseProcCgroup(procCgroup);
  const mounts = parseCgroupMounts(mountInfo);
  const v1Entry = entries.find((e) => e.hierarchyId !== 0 && e.controllers.includes("memory"));
  if (v1Entry) {
    const mount = mounts.find((m) => m.fsType === "cgroup" && m.superOptions.includes("memory"));
    if (!mount) {
      return {
        ok: false,
        reason: "the cgroup v1 memory hierarchy is not mounted in this namespace",
      };
    }
    const dir = cgroupDir(mount, v1Entry.path);
    if (dir === undefined) {
      return {
        ok: false,
        reason: `this process's memory cgroup ${v1Entry.path} is outside the mounted tree ${mount.root}`,
      };
    }
    return { ok: true, location: { version: "v1", dir } };
  }
  const v2Entry = entries.find((e) => e.hierarchyId === 0 && e.controllers.length === 0);
  const v2Mount = mounts.find((m) => m.fsType === "cgroup2");
  if (v2Entry && v2Mount) {
    const dir = cgroupDir(v2Mount, v2Entry.path);
    if (dir === undefined) {
      return {
        ok: false,
        reason: `this process's cgroup ${v2Entry.path} is outside the mounted tree`,
      };
    }
    const controllers = v2Controllers?.(dir);
    if (controllers === undefined || !controllers.split(/\s+/).includes("memory")) {
      return { ok: false, reason: `the memory controller is not available in cgroup v2 at ${dir}` };
    }
    return { ok: true, location: { version: "v2", dir } };
  }
  return { ok: false, reason: "no memory cgroup found in /proc/self/cgroup" };
}

/** A file write that sets up a cgroup, in order. */
export interface CgroupWrite {
  file: string;
  value: string;
  /** Optional files are skipped when absent (e.g. no swap accounting). */
  optional: boolean;
}

/**
 * The writes that give a fresh pod cgroup a hard memory limit of `limitBytes` with swap excluded.
 * Order matters on v1: the kernel refuses a memsw limit below the memory limit, and a new cgroup
 * starts unlimited, so the memory limit goes first.
 */
export function limitWrites(version: CgroupVersion, limitBytes: number): CgroupWrite[] {
  if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0) {
    throw new RangeError(
      `cgroup memory limit must be a positive integer of bytes, got ${limitBytes}`,
    );
  }
  const bytes = String(limitBytes);
  if (version === "v1") {
    return [
      { file: "memory.limit_in_bytes", value: bytes, optional: false },
      { file: "memory.memsw.limit_in_bytes", value: bytes, optional: true },
    ];
  }
  return [
    { file: "memory.max", value: bytes, optional: false },
    { file: "memory.swap.max", value: "0", optional: true },
    // Kubernetes >= 1.28 on cgroup v2 kills the whole container on OOM; do the same locally.
    { file: "memory.oom.group", value: "1", optional: true },
  ];
}

/** The file that counts OOM kills for a cgroup of this version. */
export function oomCounterFile(version: CgroupVersion): string {
  return version === "v1" ? "memory.oom_control" : "memory.events";
}

/** Reads the `oom_kill N` line of `memory.oom_control` (v1) or `memory.events` (v2); 0 if absent. */
export function parseOomKillCount(text: string): number {
  const m = /^oom_kill\s+(\d+)\s*$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Prefix of run cgroups; the launcher's pid follows, so leftovers of dead launchers can be found. */
export const RUN_CGROUP_PREFIX = "dask-workspace-local-";

/** The run cgroup name for a launcher pid. */
export function runCgroupName(launcherPid: number): string {
  return `${RUN_CGROUP_PREFIX}${launcherPid}`;
}

/**
 * Of the child cgroup names found next to a new run, those left behind by launchers that are no
 * longer alive (a launcher killed by SIGKILL cannot tear down). Safe to remove: their pid is dead.
 */
export function staleRunCgroups(names: string[], isAlive: (pid: number) => boolean): string[] {
  return names.filter((n) => {
    const m = new RegExp(`^${RUN_CGROUP_PREFIX}(\\d+)$`).exec(n);
    return m !== null && !isAlive(Number(m[1]));
  });
}

/** Validates a child cgroup name: one path component, nothing the kernel or a shell would mangle. */
export function checkCgroupName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new RangeError(`invalid cgroup name ${JSON.stringify(name)}: use letters, digits, . _ -`);
  }
  return name;
}

/** A cgroup this launcher created. */
export interface Cgroup {
  version: CgroupVersion;
  /** Absolute directory. */
  dir: string;
  /** Hard memory limit in bytes, or undefined for an unlimited (accounting only) cgroup. */
  limitBytes?: number;
}

/** Reads a file, or undefined when it does not exist or cannot be read. */
function readMaybe(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/** Finds this process's memory cgroup on this machine (reads /proc/self). */
export function locateOwnMemoryCgroup(): LocateResult {
  const procCgroup = readMaybe("/proc/self/cgroup");
  const mountInfo = readMaybe("/proc/self/mountinfo");
  if (procCgroup === undefined || mountInfo === undefined) {
    return { ok: false, reason: "/proc/self/cgroup is not readable (not Linux?)" };
  }
  return locateMemoryCgroup(procCgroup, mountInfo, (dir) =>
    readMaybe(path.join(dir, "cgroup.controllers")),
  );
}

/**
 * Creates `<parent>/<name>` with an optional hard memory limit. On v2 the parent must delegate the
 * memory controller to its children: this enables it in the parent's `cgroup.subtree_control`,
 * which the kernel refuses (EBUSY) when the parent has processes of its own (the "no internal
 * processes" rule); the error then explains that.
 */
export function createCgroup(
  parent: MemoryCgroupLocation | Cgroup,
  name: string,
  limitBytes?: number,
): Cgroup {
  const dir = path.join(parent.dir, checkCgroupName(name));
  if (parent.version === "v2") {
    const control = path.join(parent.dir, "cgroup.subtree_control");
    const enabled = readMaybe(control) ?? "";
    if (!enabled.split(/\s+/).includes("memory")) {
      try {
        fs.writeFileSync(control, "+memory");
      } catch (err) {
        throw new Error(
          `cannot enable the memory controller for children of ${parent.dir} ` +
            `(${(err as NodeJS.ErrnoException).code ?? String(err)}; on cgroup v2 a cgroup with ` +
            `processes of its own cannot delegate memory control)`,
        );
      }
    }
  }
  fs.mkdirSync(dir);
  const cg: Cgroup = { version: parent.version, dir, limitBytes };
  try {
    if (limitBytes !== undefined) {
      for (const w of limitWrites(parent.version, limitBytes)) {
        const file = path.join(dir, w.file);
        if (w.optional && !fs.existsSync(file)) continue;
        fs.writeFileSync(file, w.value);
      }
      const readBack = Number(
        readMaybe(path.join(dir, parent.version === "v1" ? "memory.limit_in_bytes" : "memory.max")),
      );
      // v1 rounds limits to whole pages; anything else means the write did not take effect.
      if (!(readBack <= limitBytes && readBack > limitBytes - 4096 * 16)) {
        throw new Error(`memory limit ${limitBytes} did not take effect (reads back ${readBack})`);
      }
    }
  } catch (err) {
    fs.rmdirSync(dir);
    throw err;
  }
  return cg;
}

/** Pids currently in the cgroup (its own processes, not those of child cgroups). */
export function cgroupPids(cg: Cgroup): number[] {
  const text = readMaybe(path.join(cg.dir, "cgroup.procs")) ?? "";
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(Number);
}

/** Kernel OOM kills counted by this cgroup (v2: including descendants). */
export function readOomKills(cg: Cgroup): number {
  const text = readMaybe(path.join(cg.dir, oomCounterFile(cg.version)));
  if (text === undefined) throw new Error(`cannot read the OOM counter of cgroup ${cg.dir}`);
  return parseOomKillCount(text);
}

/** Peak memory charged to the cgroup in bytes (v1 max_usage_in_bytes, v2 memory.peak if present). */
export function readPeakMemory(cg: Cgroup): number | undefined {
  const file = cg.version === "v1" ? "memory.max_usage_in_bytes" : "memory.peak";
  const text = readMaybe(path.join(cg.dir, file));
  return text === undefined ? undefined : Number(text.trim());
}

/**
 * Resets the peak-memory counter (v1 `memory.max_usage_in_bytes`, v2 `memory.peak` on kernels
 * that allow it), so a benchmark can measure one run at a time. False when it cannot.
 */
export function resetPeakMemory(cg: Cgroup): boolean {
  const file = cg.version === "v1" ? "memory.max_usage_in_bytes" : "memory.peak";
  try {
    fs.writeFileSync(path.join(cg.dir, file), "0");
    return true;
  } catch {
    return false;
  }
}

/** The `sh` program that moves itself into a cgroup and then becomes the real command. */
export const ENTER_CGROUP_SCRIPT = 'echo $$ > "$1" && shift && exec "$@"';

/**
 * Wraps argv so the process joins the cgroup before it execs the command: every child it forks is
 * then born inside the cgroup, and nothing runs outside the limit even briefly.
 */
export function enterCgroupArgv(cg: Cgroup, argv: string[]): string[] {
  return ["sh", "-c", ENTER_CGROUP_SCRIPT, "sh", path.join(cg.dir, "cgroup.procs"), ...argv];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends SIGKILL to every process in the cgroup (and its child cgroups). */
export function killCgroupProcesses(cg: Cgroup): number {
  let killed = 0;
  const killFile = path.join(cg.dir, "cgroup.kill");
  if (cg.version === "v2" && fs.existsSync(killFile)) {
    try {
      fs.writeFileSync(killFile, "1");
      return cgroupPids(cg).length;
    } catch {
      // fall through to per-pid kills
    }
  }
  for (const child of childCgroups(cg)) killed += killCgroupProcesses(child);
  for (const pid of cgroupPids(cg)) {
    try {
      process.kill(pid, "SIGKILL");
      killed += 1;
    } catch {
      // already gone
    }
  }
  return killed;
}

/** Direct child cgroups (sub-directories). */
function childCgroups(cg: Cgroup): Cgroup[] {
  let names: fs.Dirent[];
  try {
    names = fs.readdirSync(cg.dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return names
    .filter((d) => d.isDirectory())
    .map((d) => ({ version: cg.version, dir: path.join(cg.dir, d.name) }));
}

/**
 * Removes a cgroup and its children: kills whatever still runs inside (a cgroup with processes
 * cannot be removed), waits for the kernel to let go of the dead processes, then rmdir's bottom-up.
 * Returns when the directory is gone; throws if it is still there after `timeoutMs`.
 */
export async function removeCgroup(cg: Cgroup, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!fs.existsSync(cg.dir)) return;
    for (const child of childCgroups(cg)) {
      await removeCgroup(child, Math.max(0, deadline - Date.now()));
    }
    killCgroupProcesses(cg);
    try {
      fs.rmdirSync(cg.dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (Date.now() > deadline) {
        throw new Error(
          `cannot remove cgroup ${cg.dir} (${code}); pids: ${cgroupPids(cg).join(" ")}`,
        );
      }
      // EBUSY: killed processes are still exiting (a process that is being OOM-killed or is in
      // uninterruptible sleep takes a moment).
      await sleep(50);
    }
  }
}

/**
 * True when a process with this pid is alive (signal 0 probes without sending anything). A zombie
 * (dead, not yet reaped by its parent) counts as dead.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const stat = readMaybe(`/proc/${pid}/stat`);
  if (stat === undefined) return true; // no /proc: trust the signal probe
  const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  return state !== "Z" && state !== "X";
}

/** Removes run cgroups left by launchers that died without tearing down (e.g. SIGKILL). */
export async function removeStaleRunCgroups(parent: MemoryCgroupLocation): Promise<string[]> {
  let names: string[];
  try {
    names = fs.readdirSync(parent.dir);
  } catch {
    return [];
  }
  const stale = staleRunCgroups(names, pidAlive);
  for (const n of stale) {
    await removeCgroup({ version: parent.version, dir: path.join(parent.dir, n) });
  }
  return stale;
}
