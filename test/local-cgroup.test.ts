import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Cgroup,
  cgroupPids,
  createCgroup,
  enterCgroupArgv,
  limitWrites,
  locateMemoryCgroup,
  locateOwnMemoryCgroup,
  type MemoryCgroupLocation,
  parseCgroupMounts,
  parseOomKillCount,
  parseProcCgroup,
  pidAlive,
  readOomKills,
  readPeakMemory,
  removeCgroup,
  removeStaleRunCgroups,
  runCgroupName,
  staleRunCgroups,
} from "../infra/local/cgroup.js";

const MI = 1024 * 1024;

// A hybrid host like this one: v1 controllers plus an empty unified tree.
const HYBRID_PROC = `9:name=systemd:/
4:memory:/process_api/abc
1:cpu:/
0::/
`;
const HYBRID_MOUNTS = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
// A pure v2 host (current Kubernetes nodes, recent distributions).
const V2_PROC = "0::/user.slice/user-1000.slice/session-2.scope\n";
const V2_MOUNTS = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

describe("locating this process's memory cgroup (pure)", () => {
  it("parses /proc/self/cgroup lines, including paths with colons and the v2 line", () => {
    const entries = parseProcCgroup("4:memory:/a:b\n0::/x\n2:cpu,cpuacct:/\ngarbage\n");
    expect(entries).toEqual([
      { hierarchyId: 4, controllers: ["memory"], path: "/a:b" },
      { hierarchyId: 0, controllers: [], path: "/x" },
      { hierarchyId: 2, controllers: ["cpu", "cpuacct"], path: "/" },
    ]);
  });

  it("parses cgroup mounts from mountinfo and unescapes octal paths", () => {
    const mounts = parseCgroupMounts(
      "1 0 0:1 / /my\\040cg rw - cgroup cgroup rw,memory\n2 0 0:2 / /proc rw - proc proc rw\n",
    );
    expect(mounts).toEqual([
      { fsType: "cgroup", root: "/", mountPoint: "/my cg", superOptions: ["rw", "memory"] },
    ]);
  });

  it("prefers the v1 memory hierarchy on hybrid hosts", () => {
    const r = locateMemoryCgroup(HYBRID_PROC, HYBRID_MOUNTS, () => "");
    expect(r).toEqual({
      ok: true,
      location: { version: "v1", dir: "/sys/fs/cgroup/memory/process_api/abc" },
    });
  });

  it("strips the mount root when the hierarchy is mounted from a sub-tree (containers)", () => {
    const r = locateMemoryCgroup(
      "5:memory:/docker/c1/sub\n",
      "9 1 0:3 /docker/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
    );
    expect(r).toEqual({ ok: true, location: { version: "v1", dir: "/sys/fs/cgroup/memory/sub" } });
  });

  it("uses the unified hierarchy on v2 hosts when it offers the memory controller", () => {
    const dirs: string[] = [];
    const r = locateMemoryCgroup(V2_PROC, V2_MOUNTS, (dir) => {
      dirs.push(dir);
      return "cpuset cpu io memory pids";
    });
    const dir = "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope";
    expect(r).toEqual({ ok: true, location: { version: "v2", dir } });
    expect(dirs).toEqual([dir]);
  });

  it("explains why when no memory controller is usable", () => {
    const noMem = locateMemoryCgroup(V2_PROC, V2_MOUNTS, () => "cpu pids");
    expect(noMem).toEqual({ ok: false, reason: expect.stringContaining("memory controller") });
    const noMount = locateMemoryCgroup(HYBRID_PROC, "");
    expect(noMount).toEqual({ ok: false, reason: expect.stringContaining("not mounted") });
    expect(locateMemoryCgroup("", "")).toEqual({ ok: false, reason: expect.any(String) });
  });
});

describe("cgroup decisions (pure)", () => {
  it("writes the v1 memory limit before the memsw limit, both to the pod limit", () => {
    expect(limitWrites("v1", 1024 * MI)).toEqual([
      { file: "memory.limit_in_bytes", value: String(1024 * MI), optional: false },
      { file: "memory.memsw.limit_in_bytes", value: String(1024 * MI), optional: true },
    ]);
  });

  it("on v2 sets memory.max, forbids swap and groups OOM kills like Kubernetes >= 1.28", () => {
    expect(limitWrites("v2", 512 * MI).map((w) => [w.file, w.value])).toEqual([
      ["memory.max", String(512 * MI)],
      ["memory.swap.max", "0"],
      ["memory.oom.group", "1"],
    ]);
  });

  it("rejects limits that are not positive whole bytes", () => {
    expect(() => limitWrites("v1", 0)).toThrow(/positive integer/);
    expect(() => limitWrites("v1", 1.5)).toThrow(/positive integer/);
  });

  it("reads the oom_kill counter from v1 oom_control and v2 memory.events text", () => {
    expect(parseOomKillCount("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")).toBe(3);
    expect(parseOomKillCount("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 1\n")).toBe(
      2,
    );
    expect(parseOomKillCount("oom_kill_disable 0\nunder_oom 0\n")).toBe(0);
  });

  it("finds run cgroups of dead launchers only", () => {
    const alive = new Set([100]);
    const names = [runCgroupName(100), runCgroupName(200), "other", `${runCgroupName(300)}x`];
    expect(staleRunCgroups(names, (pid) => alive.has(pid))).toEqual([runCgroupName(200)]);
  });
});

describe("v2 cgroup setup writes (a directory standing in for cgroupfs; this host has no v2 memory)", () => {
  let fake: string;
  beforeAll(() => {
    fake = fs.mkdtempSync(path.join(os.tmpdir(), "fake-cgroup2-"));
  });
  afterAll(() => fs.rmSync(fake, { recursive: true, force: true }));

  it("delegates memory to children, then limits the child", () => {
    fs.writeFileSync(path.join(fake, "cgroup.subtree_control"), "");
    const loc: MemoryCgroupLocation = { version: "v2", dir: fake };
    // Optional files (swap, oom.group) are absent here, so they are skipped as on kernels without them.
    expect(() => createCgroup(loc, "pod", 256 * MI)).not.toThrow();
    expect(fs.readFileSync(path.join(fake, "cgroup.subtree_control"), "utf8")).toBe("+memory");
    expect(fs.readFileSync(path.join(fake, "pod", "memory.max"), "utf8")).toBe(String(256 * MI));
  });
});

describe.runIf(locateOwnMemoryCgroup().ok)("real memory cgroups on this machine", () => {
  const found = locateOwnMemoryCgroup();
  const own = (found.ok ? found.location : undefined) as MemoryCgroupLocation;
  let run: Cgroup;

  beforeAll(() => {
    run = createCgroup(own, `${runCgroupName(process.pid)}-test`);
  });
  afterAll(async () => {
    await removeCgroup(run);
  });

  const runIn = (cg: Cgroup, script: string) => {
    const [cmd, ...args] = enterCgroupArgv(cg, ["python3", "-c", script]);
    return spawnSync(cmd, args, { encoding: "utf8" });
  };

  it("enforces the pod limit: the kernel OOM-kills an allocation past it and counts it", () => {
    const pod = createCgroup(run, "pod-oom", 64 * MI);
    expect(readOomKills(pod)).toBe(0);
    // b"x" * n writes every page, so the memory is really charged to the cgroup.
    const r = runIn(pod, "b = b'x' * (256 << 20); print('survived')");
    expect(r.signal).toBe("SIGKILL");
    expect(r.stdout).not.toContain("survived");
    expect(readOomKills(pod)).toBe(1);
  });

  it("lets a process within the limit finish, counting no OOM kill and its peak memory", () => {
    const pod = createCgroup(run, "pod-ok", 256 * MI);
    const r = runIn(pod, "b = b'x' * (64 << 20); print('survived')");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("survived");
    expect(readOomKills(pod)).toBe(0);
    expect(readPeakMemory(pod)).toBeGreaterThan(64 * MI);
  });

  it("puts children of the wrapped process in the cgroup too", () => {
    const pod = createCgroup(run, "pod-tree", 256 * MI);
    const script =
      "import subprocess; print(subprocess.check_output(['cat', '/proc/self/cgroup'], text=True))";
    const r = runIn(pod, script);
    const rel = pod.dir.replace(/^\/sys\/fs\/cgroup\/memory/, "");
    expect(r.stdout).toContain(`memory:${rel}`);
  });

  it("removes a cgroup whose processes are still running by killing them first", async () => {
    const pod = createCgroup(run, "pod-busy", 128 * MI);
    const { spawn } = await import("node:child_process");
    const argv = enterCgroupArgv(pod, ["sleep", "300"]);
    const child = spawn(argv[0], argv.slice(1), { stdio: "ignore" });
    const exited = new Promise((r) => child.on("exit", r));
    for (let i = 0; i < 100 && cgroupPids(pod).length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(cgroupPids(pod)).toEqual([child.pid]);
    await removeCgroup(pod);
    await exited;
    expect(fs.existsSync(pod.dir)).toBe(false);
    expect(pidAlive(child.pid!)).toBe(false);
  });

  it("cleans up run cgroups left by a dead launcher", async () => {
    // A pid that is certainly dead: a process we started and waited for.
    const dead = spawnSync("true").pid;
    const stale = createCgroup(own, runCgroupName(dead));
    createCgroup(stale, "local-worker-0", 64 * MI);
    const removed = await removeStaleRunCgroups(own);
    expect(removed).toContain(runCgroupName(dead));
    expect(fs.existsSync(stale.dir)).toBe(false);
    expect(fs.existsSync(run.dir)).toBe(true);
  });
});
