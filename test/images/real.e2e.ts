/**
 * The built images (test/images/build.sh), run as real OCI containers with runc the way a kubelet
 * would run our pods: the user, groups, environment, read-only root filesystem, dropped
 * capabilities, memory limit and exactly the volume mounts of the pod specs that `npm run render`
 * renders for the `local` stack (test/images/oci.ts turns each container into a runc config).
 *
 * Run by test/images/run.sh (`npm run test:images`), which builds the images first and passes
 * their names in IMAGES_*; not part of `npm test` (the builds take minutes).
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

import {
  type ConfigMapData,
  type ImageConfig,
  type PodSpec,
  dockerfileUser,
  findContainer,
  lockPins,
  mountPlan,
  normalizeName,
  ociConfig,
  packageProblems,
  parseUser,
} from "./oci.js";

const ROOT = join(dirname(new URL(import.meta.url).pathname), "..", "..");
const STORE = need("IMAGES_STORE");
const RUNROOT = need("IMAGES_RUNROOT");
const REFS = {
  base: need("IMAGES_BASE"),
  dask: need("IMAGES_DASK"),
  runner: need("IMAGES_RUNNER"),
};
const LOCK = lockPins(readFileSync(join(ROOT, "runner/requirements.lock"), "utf8"));
const WORK = mkdtempSync(join(tmpdir(), "dask-workspace-images-"));
const NAMESPACE = "dask-local";

function need(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error(
      `${name} is not set: run this through test/images/run.sh (npm run test:images)`,
    );
  }
  return v;
}

function buildah(...args: string[]): string {
  const res = spawnSync(
    "buildah",
    ["--root", STORE, "--runroot", RUNROOT, "--storage-driver", "overlay", ...args],
    { encoding: "utf8" },
  );
  if (res.status !== 0) throw new Error(`buildah ${args.join(" ")}: ${res.stderr}`);
  return res.stdout.trim();
}

/** An image unpacked for runc: its working container, root filesystem and config. */
interface Unpacked {
  container: string;
  rootfs: string;
  config: ImageConfig;
}
const unpacked = new Map<string, Unpacked>();
function unpack(ref: string): Unpacked {
  let u = unpacked.get(ref);
  if (u === undefined) {
    const container = buildah("from", "--pull-never", "--quiet", ref);
    const rootfs = buildah("mount", container);
    const config = (
      JSON.parse(buildah("inspect", "--type", "image", ref)) as { OCIv1: { config: ImageConfig } }
    ).OCIv1.config;
    u = { container, rootfs, config };
    unpacked.set(ref, u);
  }
  return u;
}

/** The rendered `local` stack: pod specs by workload name, ConfigMaps by name. */
const pods = new Map<string, PodSpec>();
const configMaps: Record<string, ConfigMapData> = {};

beforeAll(() => {
  const out = join(WORK, "render");
  const res = spawnSync(
    join(ROOT, "node_modules/.bin/tsx"),
    [join(ROOT, "infra/render.ts"), "--stack", "local", "--out", out],
    { cwd: ROOT, encoding: "utf8" },
  );
  expect(res.status, res.stderr).toBe(0);
  const dir = join(out, "kubernetes");
  for (const f of readdirSync(dir)) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, f), "utf8"))) {
      const o = doc.toJS() as {
        kind: string;
        metadata: { name: string };
        spec?: { template?: { spec?: PodSpec } };
      } & ConfigMapData;
      if (o.kind === "ConfigMap") configMaps[o.metadata.name] = o;
      const spec = o.spec?.template?.spec;
      if (spec !== undefined) pods.set(`${o.kind}/${o.metadata.name}`, spec);
    }
  }
});

afterAll(() => {
  for (const u of unpacked.values()) {
    spawnSync("buildah", ["--root", STORE, "--runroot", RUNROOT, "umount", u.container]);
    spawnSync("buildah", ["--root", STORE, "--runroot", RUNROOT, "rm", u.container]);
  }
  rmSync(WORK, { recursive: true, force: true });
});

function pod(key: string): PodSpec {
  const p = pods.get(key);
  if (p === undefined)
    throw new Error(`the local stack renders no ${key} (has ${[...pods.keys()]})`);
  return p;
}

let runs = 0;
/**
 * Runs `args` in container `containerName` of rendered workload `key`, on image `ref`, with runc:
 * the pod's volumes are host directories made the way a kubelet makes them. Returns runc's
 * result and the host directory of each volume.
 */
function runInPod(opts: {
  key: string;
  containerName: string;
  ref: string;
  args: string[];
}): SpawnSyncReturns<string> & { dirs: Record<string, string> } {
  const spec = pod(opts.key);
  const container = findContainer(spec, opts.containerName);
  const image = unpack(opts.ref);
  const id = `dw-images-${process.pid}-${++runs}`;
  const bundle = join(WORK, id);
  const plans = mountPlan(spec, container, configMaps);
  const fsGroup = spec.securityContext?.fsGroup ?? 0;
  const dirs: Record<string, string> = {};
  for (const p of plans) {
    const dir = join(bundle, "volumes", p.volume);
    mkdirSync(dir, { recursive: true });
    for (const [rel, content] of Object.entries(p.files)) {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), content, { mode: 0o644 });
    }
    if (p.kind === "emptyDir") chmodSync(dir, 0o777);
    else if (p.kind === "persistentVolumeClaim") {
      // The fsGroup ownership a kubelet applies to a volume that supports it.
      chownSync(dir, 0, fsGroup);
      chmodSync(dir, 0o2775);
    } else chmodSync(dir, 0o755);
    dirs[p.volume] = dir;
  }
  chmodSync(WORK, 0o755);
  chmodSync(bundle, 0o755);
  const config = ociConfig({
    pod: spec,
    container,
    image: image.config,
    rootfs: image.rootfs,
    args: opts.args,
    mounts: plans,
    sources: dirs,
    podName: `${opts.key.split("/")[1]}-test`,
    namespace: NAMESPACE,
  });
  writeFileSync(join(bundle, "config.json"), JSON.stringify(config, null, 1));
  const res = spawnSync(
    "runc",
    ["--root", join(WORK, "runc-state"), "run", "--bundle", bundle, id],
    {
      encoding: "utf8",
      timeout: 120_000,
    },
  );
  spawnSync("runc", ["--root", join(WORK, "runc-state"), "delete", "--force", id]);
  return Object.assign(res, { dirs });
}

const SCHEDULER = "Deployment/dask-scheduler";
const WORKERS = "Deployment/dask-worker";
const JOB = "Job/dask-job-sir-grid";

describe("the images' user is the pods' user", () => {
  it.each([
    ["dask", [SCHEDULER, WORKERS]],
    ["runner", [JOB]],
  ] as const)("images/%s.Dockerfile", (name, keys) => {
    const user = dockerfileUser(readFileSync(join(ROOT, `images/${name}.Dockerfile`), "utf8"));
    const uid = parseUser(user)?.uid;
    expect(uid, `USER ${user} is numeric`).toBeDefined();
    expect(uid).not.toBe(0);
    expect(unpack(REFS[name]).config.User).toBe(user);
    for (const key of keys) {
      expect(pod(key).securityContext?.runAsUser, key).toBe(uid);
    }
  });
});

describe("the Dask image in the scheduler and worker pods", () => {
  it("runs `dask --version` as the pod's user on a read-only root with the scheduler's mounts", () => {
    const res = runInPod({
      key: SCHEDULER,
      containerName: "scheduler",
      ref: REFS.dask,
      args: ["sh", "-c", "dask --version && id -u && touch /x"],
    });
    expect(res.stdout).toContain(`dask, version ${LOCK.get("dask")}`);
    const uid = pod(SCHEDULER).securityContext?.runAsUser;
    expect(res.stdout).toContain(`\n${uid}\n`);
    // The root filesystem is read-only: the touch fails, so the shell does.
    expect(res.stderr).toContain("Read-only file system");
    expect(res.status).not.toBe(0);
  });

  it("runs `dask --version` and the preStop hook's `dask_workspace retire` in a worker container", () => {
    const res = runInPod({
      key: WORKERS,
      containerName: "worker",
      ref: REFS.dask,
      args: ["sh", "-c", "dask --version && python -m dask_workspace retire --help"],
    });
    expect(res.stderr).toBe("");
    expect(res.status).toBe(0);
    expect(res.stdout).toContain(`dask, version ${LOCK.get("dask")}`);
    expect(res.stdout).toContain("--name-prefix");
  });

  it("writes Dask's scratch space to /tmp, the emptyDir, and nowhere else", () => {
    const res = runInPod({
      key: WORKERS,
      containerName: "worker",
      ref: REFS.dask,
      args: [
        "python",
        "-c",
        "import dask, os, tempfile; d = dask.config.get('temporary-directory') or tempfile.gettempdir(); " +
          "p = os.path.join(d, 'dask-scratch-space'); os.makedirs(p); open(os.path.join(p, 'x'), 'w').write('x'); print(p)",
      ],
    });
    expect(res.stderr).toBe("");
    expect(res.status).toBe(0);
    expect(res.stdout.trim()).toBe("/tmp/dask-scratch-space");
    expect(readFileSync(join(res.dirs.scratch as string, "dask-scratch-space", "x"), "utf8")).toBe(
      "x",
    );
  });
});

describe("the runner image in the runner Job's pod", () => {
  it("runs `python -m dask_workspace run --help` as the pod's user on a read-only root", () => {
    const res = runInPod({
      key: JOB,
      containerName: "runner",
      ref: REFS.runner,
      args: ["python", "-m", "dask_workspace", "run", "--help"],
    });
    expect(res.stderr).toBe("");
    expect(res.status).toBe(0);
    expect(res.stdout).toContain("--scheduler");
    expect(res.stdout).toContain("--results");
  });

  it("reads the study from its ConfigMap mount and writes only to /tmp and /results", () => {
    const res = runInPod({
      key: JOB,
      containerName: "runner",
      ref: REFS.runner,
      args: [
        "sh",
        "-c",
        "set -e; test -r /study/sir-grid.yaml; touch /tmp/t /results/r; " +
          "for p in /opt/dask-workspace/x /home/dask/x /study/x /etc/dask/x; do " +
          "if touch $p 2>/dev/null; then echo writable $p; fi; done; echo done",
      ],
    });
    expect(res.stderr).toBe("");
    expect(res.status).toBe(0);
    expect(res.stdout).toBe("done\n");
    const uid = pod(JOB).securityContext?.runAsUser;
    expect(statSync(join(res.dirs.results as string, "r")).uid).toBe(uid);
  });

  it("is killed by the kernel when it exceeds the pod's memory limit", () => {
    const limit = findContainer(pod(JOB), "runner").resources?.limits?.memory;
    expect(limit).toBe("512Mi");
    const res = runInPod({
      key: JOB,
      containerName: "runner",
      ref: REFS.runner,
      // 1 GiB written (not merely reserved), twice the limit.
      args: ["python", "-c", "b = b'x' * (1 << 30); print(len(b))"],
    });
    expect(res.stdout).toBe("");
    // SIGKILL from the memory cgroup's OOM killer: 128 + 9.
    expect(res.status).toBe(137);
  });
});

/** Every distribution the image's Python sees: name, version, and where its metadata lives. */
const LIST_DISTRIBUTIONS = `
import importlib.metadata as m, json, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
dists = [(norm(d.metadata["Name"]), d.version, str(d._path)) for d in m.distributions()]
names = json.loads(sys.argv[1])
resolved = {}
for n in names:
    try:
        resolved[n] = m.version(n)
    except m.PackageNotFoundError:
        resolved[n] = None
print(json.dumps({"dists": dists, "resolved": resolved, "python": sys.version.split()[0]}))
`;

interface Listing {
  dists: Array<[string, string, string]>;
  resolved: Record<string, string | null>;
  python: string;
}

function listing(ref: string, key: string, containerName: string): Listing {
  const res = runInPod({
    key,
    containerName,
    ref,
    args: ["python", "-c", LIST_DISTRIBUTIONS, JSON.stringify([...LOCK.keys()])],
  });
  expect(res.stderr).toBe("");
  expect(res.status).toBe(0);
  return JSON.parse(res.stdout) as Listing;
}

describe("the installed packages are runner/requirements.lock, exactly", () => {
  it.each([
    ["dask", SCHEDULER, "scheduler"],
    ["runner", JOB, "runner"],
  ] as const)("the %s image", (name, key, containerName) => {
    const base = listing(REFS.base, key, containerName);
    const image = listing(REFS[name], key, containerName);
    expect(image.python).toMatch(/^3\.11\./);
    const basePaths = new Set(base.dists.map((d) => d[2]));
    const added = new Map(image.dists.filter((d) => !basePaths.has(d[2])).map((d) => [d[0], d[1]]));
    const problems = packageProblems({
      lock: LOCK,
      added,
      resolved: new Map(Object.entries(image.resolved).map(([k, v]) => [normalizeName(k), v])),
    });
    expect(problems).toEqual([]);
    expect(added.size).toBe(LOCK.size);
  });
});
