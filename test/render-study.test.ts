/**
 * A team's own study through `npm run render` (the real program under Pulumi's mock runtime, as a
 * process): the study bundle in the Job's inputs, the results volume mounted, and the refusals
 * (a bundle too large, results that would die with the pod, a misspelt config namespace) before
 * anything is written. Every rendered object is validated against the Kubernetes schema.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBundle } from "../infra/workspace/bundle.js";
import { validateManifests } from "../infra/render/validate.js";
import { PROJECT_ROOT } from "./helpers/config.js";

const TSX = join(PROJECT_ROOT, "node_modules", ".bin", "tsx");
type Obj = Record<string, any>;

let tmp: string;
let study: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "render-study-"));
  // A study folder outside the repository: a study file, a model package, data to ignore.
  const dir = join(tmp, "my-study");
  await mkdir(join(dir, "epimodel"), { recursive: true });
  await mkdir(join(dir, "data"), { recursive: true });
  await writeFile(join(dir, "study.yaml"), "name: mine\nmodel: epimodel.sim:simulate\n");
  await writeFile(join(dir, "epimodel", "__init__.py"), "");
  await writeFile(join(dir, "epimodel", "sim.py"), "def simulate(*, params, seed):\n  return 1\n");
  await writeFile(join(dir, "data", "huge.csv"), "x\n".repeat(10));
  await writeFile(join(dir, ".studyignore"), "data/\n");
  study = join(dir, "study.yaml");
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Writes `Pulumi.<stack>.yaml` with the given dask-workspace keys; returns its path. */
async function stackFile(stack: string, raw: Record<string, unknown>, ns = "dask-workspace") {
  const file = join(tmp, `Pulumi.${stack}.yaml`);
  const config = Object.fromEntries(Object.entries(raw).map(([k, v]) => [`${ns}:${k}`, v]));
  await writeFile(file, stringify({ config }));
  return file;
}

/** `npm run render -- --config-file <file> --out <out>` (no --stack: it comes from the name). */
async function render(file: string, out: string) {
  const r = await execa(TSX, ["infra/render.ts", "--config-file", file, "--out", out], {
    cwd: PROJECT_ROOT,
    reject: false,
  });
  return r;
}

async function manifests(out: string): Promise<Obj[]> {
  const dir = join(out, "kubernetes");
  const files = (await readdir(dir)).sort();
  return Promise.all(
    files.map(async (f) => parseYaml(await readFile(join(dir, f), "utf8")) as Obj),
  );
}

const kind = (ms: Obj[], k: string) => ms.filter((m) => m.kind === k);

describe("target kubernetes: a study with its own package", () => {
  it("ships the bundle in the study ConfigMap, hashes it on the Job, mounts the results PVC", async () => {
    const file = await stackFile("mine", {
      target: "kubernetes",
      runner: { resultsVolume: { size: "20Gi", storageClass: "standard" } },
      jobs: { trial: { study } },
    });
    const out = join(tmp, "out-k8s");
    const r = await render(file, out);
    // Nothing on stderr but the images-by-tag warnings (the stack pins no digests).
    expect(
      r.stderr.split("\n").filter((l) => l !== "" && !/images\.(dask|runner): .* is a tag/.test(l)),
    ).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("rendered stack mine");
    const ms = await manifests(out);
    expect(await validateManifests(ms)).toEqual([]);
    // The stack name came from the file name: the default namespace is dask-<stack>.
    expect(kind(ms, "Namespace")[0]!.metadata.name).toBe("dask-mine");

    const bundle = buildBundle(study);
    expect(bundle.files.map((f) => f.path)).toEqual([
      "epimodel/__init__.py",
      "epimodel/sim.py",
      "study.yaml",
    ]);
    const cm = kind(ms, "ConfigMap").find((m) => m.metadata.name === "dask-study-trial")!;
    expect(Object.keys(cm.binaryData)).toEqual(["f0000", "f0001", "f0002"]);
    expect(cm.data).toBeUndefined();
    expect(Buffer.from(cm.binaryData.f0001, "base64").toString()).toContain("def simulate");

    const job = kind(ms, "Job")[0]!;
    const pod = job.spec.template.spec;
    const container = pod.containers[0];
    const studyVolume = pod.volumes.find((v: Obj) => v.name === "study");
    expect(studyVolume.configMap).toEqual({
      name: "dask-study-trial",
      items: [
        { key: "f0000", path: "epimodel/__init__.py" },
        { key: "f0001", path: "epimodel/sim.py" },
        { key: "f0002", path: "study.yaml" },
      ],
    });
    expect(container.command[4]).toBe("/study/study.yaml");
    expect(job.spec.template.metadata.annotations["dask-workspace/bundle-sha256"]).toBe(
      bundle.hash,
    );

    // Results: /results/<job> on the workspace's claim, mounted at /results.
    const pvc = kind(ms, "PersistentVolumeClaim")[0]!;
    expect(pvc.metadata.name).toBe("dask-results");
    expect(pvc.spec).toEqual({
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "20Gi" } },
      storageClassName: "standard",
    });
    expect(container.command[container.command.indexOf("--results") + 1]).toBe("/results/trial");
    expect(container.volumeMounts).toContainEqual({ name: "results", mountPath: "/results" });
    expect(pod.volumes).toContainEqual({
      name: "results",
      persistentVolumeClaim: { claimName: "dask-results" },
    });
  });

  it("object storage: no claim; credentials only from the named Secret", async () => {
    const file = await stackFile("s3", {
      runner: { results: "s3://team-bucket/studies", resultsSecret: "results-credentials" },
      jobs: { trial: { study } },
    });
    const out = join(tmp, "out-s3");
    const r = await render(file, out);
    // Nothing on stderr but the images-by-tag warnings (the stack pins no digests).
    expect(
      r.stderr.split("\n").filter((l) => l !== "" && !/images\.(dask|runner): .* is a tag/.test(l)),
    ).toEqual([]);
    expect(r.exitCode).toBe(0);
    const ms = await manifests(out);
    expect(await validateManifests(ms)).toEqual([]);
    expect(kind(ms, "PersistentVolumeClaim")).toEqual([]);
    const container = kind(ms, "Job")[0]!.spec.template.spec.containers[0];
    expect(container.command[container.command.indexOf("--results") + 1]).toBe(
      "s3://team-bucket/studies/trial",
    );
    expect(container.envFrom).toEqual([{ secretRef: { name: "results-credentials" } }]);
  });

  it("refuses results that would die with the pod, unless ephemeral: true", async () => {
    const bad = await stackFile("tmpres", {
      jobs: { trial: { study, results: "/data/out" } },
    });
    const out = join(tmp, "out-tmpres");
    const r = await render(bad, out);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(
      'jobs.trial.results: "/data/out" (job trial) would be an emptyDir that dies with the runner pod',
    );
    expect(r.stderr).toContain("runner.ephemeral: true");
    expect(existsSync(out)).toBe(false);

    const ok = await stackFile("tmpok", {
      runner: { ephemeral: true },
      jobs: { trial: { study, results: "/data/out" } },
    });
    const r2 = await render(ok, join(tmp, "out-tmpok"));
    expect(r2.exitCode).toBe(0);
    const ms = await manifests(join(tmp, "out-tmpok"));
    expect(kind(ms, "PersistentVolumeClaim")).toEqual([]);
    expect(kind(ms, "Job")[0]!.spec.template.spec.volumes).toContainEqual({
      name: "results",
      // Sized like the results volume it stands in for (runner.resultsVolume.size).
      emptyDir: { sizeLimit: "10Gi" },
    });
  });

  it("refuses a bundle too large for a ConfigMap: size, largest files, the fix; writes nothing", async () => {
    const dir = join(tmp, "heavy");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "study.yaml"), "name: heavy\n");
    await writeFile(join(dir, "weights.npy"), Buffer.alloc(1024 * 1024, 7));
    const file = await stackFile("heavy", { jobs: { trial: { study: join(dir, "study.yaml") } } });
    const out = join(tmp, "out-heavy");
    const r = await render(file, out);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("jobs.trial.study: the study bundle of");
    expect(r.stderr).toContain("Largest files: weights.npy (1.0 MiB)");
    expect(r.stderr).toContain("npm run images:build -- --registry <registry> --package <dir>");
    expect(existsSync(out)).toBe(false);
  });

  it("refuses keys under a misspelt namespace, naming dask-workspace:", async () => {
    for (const ns of ["dask_workspace", "daskworkspace"]) {
      const file = await stackFile(`typo-${ns}`, { workers: { replicas: 9 } }, ns);
      const out = join(tmp, `out-${ns}`);
      const r = await render(file, out);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain(
        `${ns}:workers: "${ns}:" is not this project's namespace, so Pulumi would ignore this key; write it as dask-workspace:workers`,
      );
      expect(existsSync(out)).toBe(false);
    }
  });
});

describe("target azure: the same bundle on AKS", () => {
  it("the Job's study volume lays out the bundle; results default to the blob container", async () => {
    const file = await stackFile("aks", {
      target: "azure",
      // Authorized ranges: an open API server would print a warning (docs/azure.md).
      azure: { location: "westeurope", apiServer: { authorizedIpRanges: ["203.0.113.7"] } },
      jobs: { trial: { study } },
    });
    const out = join(tmp, "out-aks");
    const r = await render(file, out);
    // Nothing on stderr but the images-by-tag warnings (the stack pins no digests).
    expect(
      r.stderr.split("\n").filter((l) => l !== "" && !/images\.(dask|runner): .* is a tag/.test(l)),
    ).toEqual([]);
    expect(r.exitCode).toBe(0);
    const ms = await manifests(out);
    expect(await validateManifests(ms)).toEqual([]);
    const job = kind(ms, "Job")[0]!;
    const volume = job.spec.template.spec.volumes.find((v: Obj) => v.name === "study");
    expect(volume.configMap.items.map((i: Obj) => i.path)).toEqual([
      "epimodel/__init__.py",
      "epimodel/sim.py",
      "study.yaml",
    ]);
    expect(job.spec.template.metadata.annotations["dask-workspace/bundle-sha256"]).toBe(
      buildBundle(study).hash,
    );
    const container = job.spec.template.spec.containers[0];
    expect(container.command[container.command.indexOf("--results") + 1]).toBe(
      "az://results/trial",
    );
    expect(kind(ms, "PersistentVolumeClaim")).toEqual([]);
  });
});
