/**
 * test/images/oci.ts: the pod spec -> runc config translation the image tests rely on, on the
 * pod specs the program renders for the `local` stack (a wrong translation would make the real
 * image tests check the wrong thing).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

import { PROJECT_ROOT } from "../../images/build.js";
import {
  type ConfigMapData,
  type PodSpec,
  configMapFiles,
  containerEnv,
  cpuMillis,
  dockerfileUser,
  findContainer,
  lockPins,
  memoryBytes,
  mountPlan,
  ociConfig,
  packageProblems,
  PodSpecError,
  runtimeUser,
  SERVICE_ACCOUNT_DIR,
} from "./oci.js";

const WORK = mkdtempSync(join(tmpdir(), "oci-test-"));
const pods = new Map<string, PodSpec>();
const configMaps: Record<string, ConfigMapData> = {};

beforeAll(() => {
  const res = spawnSync(
    join(PROJECT_ROOT, "node_modules/.bin/tsx"),
    [join(PROJECT_ROOT, "infra/render.ts"), "--stack", "local", "--out", WORK],
    { cwd: PROJECT_ROOT, encoding: "utf8" },
  );
  expect(res.status, res.stderr).toBe(0);
  const dir = join(WORK, "kubernetes");
  for (const f of readdirSync(dir)) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, f), "utf8"))) {
      const o = doc.toJS() as {
        kind: string;
        metadata: { name: string };
        spec?: { template?: { spec?: PodSpec } };
      } & ConfigMapData;
      if (o.kind === "ConfigMap") configMaps[o.metadata.name] = o;
      if (o.spec?.template?.spec) pods.set(`${o.kind}/${o.metadata.name}`, o.spec.template.spec);
    }
  }
});
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

const IMAGE = { User: "4242:4242", Env: ["PATH=/usr/bin", "HOME=/root"], WorkingDir: "/home/x" };

describe("the runner Job's container as runc would run it", () => {
  it("mounts exactly the pod's volumes, ConfigMaps read-only, plus the token volume", () => {
    const pod = pods.get("Job/dask-job-sir-grid") as PodSpec;
    const plans = mountPlan(pod, findContainer(pod, "runner"), configMaps);
    expect(plans.map((p) => [p.mountPath, p.kind, p.readOnly])).toEqual([
      ["/etc/dask", "configMap", true],
      ["/tmp", "emptyDir", false],
      ["/study", "configMap", true],
      ["/results", "persistentVolumeClaim", false],
      [SERVICE_ACCOUNT_DIR, "serviceAccountToken", true],
    ]);
    const study = plans.find((p) => p.mountPath === "/study");
    expect(Object.keys(study?.files ?? {})).toContain("sir-grid.yaml");
    expect(study?.files["sir-grid.yaml"]?.toString()).toBe(
      readFileSync(join(PROJECT_ROOT, "examples/studies/sir-grid.yaml"), "utf8"),
    );
  });

  it("runs as the pod's user, read-only, without capabilities, within the pod's limits", () => {
    const pod = pods.get("Job/dask-job-sir-grid") as PodSpec;
    const container = findContainer(pod, "runner");
    const plans = mountPlan(pod, container, configMaps);
    const config = ociConfig({
      pod,
      container,
      image: IMAGE,
      rootfs: "/rootfs",
      args: ["true"],
      mounts: plans,
      sources: Object.fromEntries(plans.map((p) => [p.volume, `/host/${p.volume}`])),
      podName: "p",
      namespace: "ns",
    }) as {
      process: Record<string, unknown>;
      root: { readonly: boolean };
      mounts: Array<{ destination: string; source: string; options?: string[] }>;
      linux: { resources: { memory: { limit: number }; cpu: { quota: number } } };
    };
    const uid = pod.securityContext?.runAsUser as number;
    expect(config.process.user).toEqual({ uid, gid: uid, additionalGids: [uid] });
    expect(config.root.readonly).toBe(true);
    expect(config.process.noNewPrivileges).toBe(true);
    expect((config.process.capabilities as Record<string, string[]>).bounding).toEqual([]);
    expect(config.process.cwd).toBe("/tmp");
    expect(config.process.env).toContain("HOME=/tmp");
    expect(config.process.env).toContain("PATH=/usr/bin");
    expect(config.linux.resources.memory.limit).toBe(512 * 2 ** 20);
    expect(config.linux.resources.cpu.quota).toBe(50_000);
    const results = config.mounts.find((m) => m.destination === "/results");
    expect(results?.source).toBe("/host/results");
    expect(results?.options).toContain("rw");
    expect(config.mounts.find((m) => m.destination === "/study")?.options).toContain("ro");
  });

  it("gives a worker its pod name from the downward API", () => {
    const pod = pods.get("Deployment/dask-worker") as PodSpec;
    const env = containerEnv(findContainer(pod, "worker"), IMAGE, { name: "w-1", namespace: "n" });
    expect(env).toContain("POD_NAME=w-1");
    expect(env).toContain("HOME=/tmp");
  });
});

describe("decisions", () => {
  it("takes the container's user over the pod's over the image's", () => {
    const c = { name: "c", image: "i", securityContext: { runAsUser: 7 } };
    expect(runtimeUser({ containers: [c], securityContext: { runAsUser: 8 } }, c, IMAGE).uid).toBe(
      7,
    );
    const d = { name: "d", image: "i" };
    expect(runtimeUser({ containers: [d], securityContext: { runAsUser: 8 } }, d, IMAGE).uid).toBe(
      8,
    );
    expect(runtimeUser({ containers: [d] }, d, IMAGE)).toEqual({
      uid: 4242,
      gid: 4242,
      additionalGids: [4242],
    });
  });

  it("refuses what a kubelet refuses", () => {
    const c = { name: "c", image: "i", securityContext: { runAsNonRoot: true } };
    expect(() => runtimeUser({ containers: [c] }, c, { User: "dask" })).toThrow(/no numeric user/);
    expect(() => runtimeUser({ containers: [c] }, c, { User: "0" })).toThrow(/runAsNonRoot/);
    const m = { name: "m", image: "i", volumeMounts: [{ name: "gone", mountPath: "/x" }] };
    expect(() => mountPlan({ containers: [m] }, m, {})).toThrow(PodSpecError);
  });

  it("reads the Dockerfile's last USER", () => {
    expect(dockerfileUser("FROM x\nUSER root\nRUN y\nUSER 10001:10001\n")).toBe("10001:10001");
    expect(() => dockerfileUser("FROM x\n")).toThrow(/no USER/);
  });

  it("parses quantities", () => {
    expect(memoryBytes("2Gi")).toBe(2 * 2 ** 30);
    expect(memoryBytes("1G")).toBe(1e9);
    expect(memoryBytes("904921088")).toBe(904921088);
    expect(() => memoryBytes("lots")).toThrow(/memory quantity/);
    expect(cpuMillis("500m")).toBe(500);
    expect(cpuMillis("2")).toBe(2000);
  });

  it("ConfigMap items pick keys and place them at their paths", () => {
    const cm = { data: { a: "A" }, binaryData: { b: Buffer.from("B").toString("base64") } };
    expect(configMapFiles(cm, [{ key: "b", path: "d/b.txt" }])).toEqual({
      "d/b.txt": Buffer.from("B"),
    });
    expect(Object.keys(configMapFiles(cm))).toEqual(["a", "b"]);
  });

  it("package problems: missing, other version, unlocked, shadowed", () => {
    const lock = lockPins("a==1 \\\n    --hash=x\nb-c==2\n");
    expect(lock).toEqual(
      new Map([
        ["a", "1"],
        ["b-c", "2"],
      ]),
    );
    const ok = packageProblems({
      lock,
      added: new Map(lock),
      resolved: new Map([
        ["a", "1"],
        ["b-c", "2"],
      ]),
    });
    expect(ok).toEqual([]);
    const bad = packageProblems({
      lock,
      added: new Map([
        ["a", "1.1"],
        ["z", "9"],
      ]),
      resolved: new Map([
        ["a", "0.9"],
        ["b-c", null],
      ]),
    });
    expect(bad).toEqual([
      "a is 1.1 in the image, 1 in the lock",
      "import resolves a to 0.9, not the locked 1",
      "b-c==2 is locked but was not installed",
      "import resolves b-c to nothing, not the locked 2",
      "z==9 is installed but not in the lock",
    ]);
  });
});
