/**
 * The offline render: the CLI as a real process (the real program under Pulumi's mock runtime),
 * and its parts (validator, file plan, all-or-nothing writer) directly.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planRender } from "../infra/render/manifests.js";
import { type RecordedResource, recordingMocks } from "../infra/render/mocks.js";
import { validateManifest, validateManifests } from "../infra/render/validate.js";
import { writeRenderOutput } from "../infra/render/write.js";
import { PROJECT_ROOT, STATIC_RAW } from "./helpers/config.js";

const TSX = join(PROJECT_ROOT, "node_modules", ".bin", "tsx");

function render(args: string[]) {
  return execa(TSX, ["infra/render.ts", ...args], { cwd: PROJECT_ROOT, reject: false });
}

/** A stack file with the given dask-workspace keys. */
function stackFile(raw: Record<string, unknown>): string {
  const config = Object.fromEntries(
    Object.entries(raw).map(([k, v]) => [`dask-workspace:${k}`, v]),
  );
  return stringify({ config });
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "render-test-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("npm run render (as a process)", () => {
  it("renders the local stack: one schema-valid manifest per object, nothing else", async () => {
    const out = join(tmp, "local");
    const result = await render(["--stack", "local", "--out", out]);
    // Only the images-by-tag warnings (the stack pins no digests), one per image.
    expect(result.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(/^warning: .*images\.dask: .* is a tag, .*pin it by digest/),
      expect.stringMatching(/^warning: .*images\.runner: .* is a tag, .*pin it by digest/),
    ]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("19 Kubernetes objects, 0 Azure resources");
    expect((await readdir(out)).sort()).toEqual(["azure", "kubernetes"]);
    expect(await readdir(join(out, "azure"))).toEqual([]);
    const files = (await readdir(join(out, "kubernetes"))).sort();
    expect(files).toEqual([
      "apps-v1-Deployment-dask-local-dask-scheduler.yaml",
      "apps-v1-Deployment-dask-local-dask-worker.yaml",
      "batch-v1-Job-dask-local-dask-job-sir-grid.yaml",
      "networking.k8s.io-v1-NetworkPolicy-dask-local-dask-default-deny.yaml",
      "networking.k8s.io-v1-NetworkPolicy-dask-local-dask-egress-dask.yaml",
      "networking.k8s.io-v1-NetworkPolicy-dask-local-dask-egress-dns.yaml",
      "networking.k8s.io-v1-NetworkPolicy-dask-local-dask-egress-runner.yaml",
      "networking.k8s.io-v1-NetworkPolicy-dask-local-dask-scheduler-comm.yaml",
      "networking.k8s.io-v1-NetworkPolicy-dask-local-dask-scheduler-dashboard.yaml",
      "networking.k8s.io-v1-NetworkPolicy-dask-local-dask-worker-peers.yaml",
      "policy-v1-PodDisruptionBudget-dask-local-dask-scheduler.yaml",
      "rbac.authorization.k8s.io-v1-Role-dask-local-dask-runner.yaml",
      "rbac.authorization.k8s.io-v1-RoleBinding-dask-local-dask-runner.yaml",
      "v1-ConfigMap-dask-local-dask-config.yaml",
      "v1-ConfigMap-dask-local-dask-study-sir-grid.yaml",
      "v1-Namespace-dask-local.yaml",
      "v1-PersistentVolumeClaim-dask-local-dask-results.yaml",
      "v1-Service-dask-local-dask-scheduler.yaml",
      "v1-ServiceAccount-dask-local-dask-runner.yaml",
    ]);
    const manifests = await Promise.all(
      files.map(
        async (f) =>
          parseYaml(await readFile(join(out, "kubernetes", f), "utf8")) as Record<string, unknown>,
      ),
    );
    for (const m of manifests) {
      expect(Object.keys(m).slice(0, 3)).toEqual(["apiVersion", "kind", "metadata"]);
    }
    expect(await validateManifests(manifests)).toEqual([]);
    // The local stack's worker: 2 processes of 863Mi in a 2Gi pod (Pulumi.local.yaml).
    const worker = manifests.find(
      (m) => m.kind === "Deployment" && (m.metadata as { name: string }).name === "dask-worker",
    ) as { spec: { template: { spec: { containers: { command: string[] }[] } } } };
    const command = worker.spec.template.spec.containers[0]!.command;
    expect(command.slice(0, 3)).toEqual([
      "dask",
      "worker",
      "tcp://dask-scheduler.dask-local.svc:8786",
    ]);
    expect(command[command.indexOf("--memory-limit") + 1]).toBe(String(863 * 1024 * 1024));
  });

  it("renders any stack file with --config-file", async () => {
    const file = join(tmp, "static.yaml");
    await writeFile(file, stackFile(STATIC_RAW));
    const out = join(tmp, "static");
    const result = await render(["--stack", "ci", "--config-file", file, "--out", out]);
    // Only the images-by-tag warnings (the stack pins no digests), one per image.
    expect(result.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(/^warning: .*images\.dask: .* is a tag, .*pin it by digest/),
      expect.stringMatching(/^warning: .*images\.runner: .* is a tag, .*pin it by digest/),
    ]);
    expect(result.exitCode).toBe(0);
    const files = await readdir(join(out, "kubernetes"));
    expect(files).toContain("batch-v1-Job-sims-dask-job-calibration.yaml");
    expect(files.filter((f) => f.includes("HorizontalPodAutoscaler"))).toEqual([]);
  });

  it("rejects a zero-headroom config (6 × 4Gi in 24Gi): names the key, no trace, writes nothing", async () => {
    const file = join(tmp, "zero-headroom.yaml");
    await writeFile(
      file,
      stackFile({ workers: { nprocs: 6, podMemory: "24Gi", memoryPerProcess: "4Gi", cpu: "6" } }),
    );
    const out = join(tmp, "zero-headroom-out");
    const result = await render(["--stack", "bad", "--config-file", file, "--out", out]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("workers.memoryPerProcess: 6 × 4Gi = 24Gi leaves 0");
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stdout).toBe("");
    expect(existsSync(out)).toBe(false);
  });

  it("reports every problem of a config at once", async () => {
    const file = join(tmp, "many.yaml");
    await writeFile(
      file,
      stackFile({
        workers: { podMemory: "4GiB" },
        autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 },
      }),
    );
    const out = join(tmp, "many-out");
    const result = await render(["--stack", "bad", "--config-file", file, "--out", out]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("workers.podMemory");
    expect(result.stderr).toContain("4Gi");
    expect(result.stderr).toContain("autoscaling.minReplicas");
    expect(existsSync(out)).toBe(false);
  });

  it("explains an unknown --stack and writes nothing", async () => {
    const out = join(tmp, "nope-out");
    const result = await render(["--stack", "nope", "--out", out]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('unknown stack "nope"');
    expect(result.stderr).toContain("Pulumi.nope.yaml");
    expect(result.stderr).toMatch(/Stacks here: .*\blocal\b/);
    expect(result.stderr).toContain("--config-file");
    expect(existsSync(out)).toBe(false);
  });

  it("explains an --out it cannot write to, and leaves it as it was", async () => {
    const out = join(tmp, "a-file");
    await writeFile(out, "not a directory");
    const result = await render(["--stack", "local", "--out", out]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`cannot write to --out ${out}`);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(await readFile(out, "utf8")).toBe("not a directory");
    expect((await readdir(tmp)).filter((f) => f.includes(".render-"))).toEqual([]);
  });

  it("requires --stack and --out", async () => {
    const result = await render(["--stack", "local"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("missing --out");
    expect(result.stderr).toContain("usage: npm run render");
  });
});

describe("schema validation", () => {
  const deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "dask-worker", namespace: "sims" },
    spec: {
      selector: { matchLabels: { app: "w" } },
      template: {
        metadata: { labels: { app: "w" } },
        spec: {
          containers: [
            {
              name: "worker",
              image: "dask",
              ports: [{ containerPort: 8786 }],
              resources: { limits: { memory: "4Gi" } },
            },
          ],
        },
      },
    },
  };

  it("accepts a valid object", async () => {
    expect(await validateManifest(deployment)).toEqual([]);
  });

  it("catches a violation with the object, the path and the schema rule", async () => {
    const broken = structuredClone(deployment);
    const container = broken.spec.template.spec.containers[0]!;
    (container.ports[0] as { containerPort: unknown }).containerPort = "8786";
    container.resources.limits.memory = "4 GiB";
    const violations = await validateManifest(broken);
    expect(violations).toContainEqual({
      object: "apps/v1 Deployment sims/dask-worker",
      path: "/spec/template/spec/containers/0/ports/0/containerPort",
      schemaPath: "#/type",
      message: "must be integer",
    });
    expect(violations.map((v) => v.path)).toContain(
      "/spec/template/spec/containers/0/resources/limits/memory",
    );
  });

  it("catches a missing required field", async () => {
    const broken = structuredClone(deployment) as { spec: Record<string, unknown> };
    delete broken.spec.selector;
    expect(await validateManifest(broken)).toContainEqual(
      expect.objectContaining({ path: "/spec", message: "must have required property selector" }),
    );
  });

  it("refuses a kind it has no schema for", async () => {
    const violations = await validateManifest({
      apiVersion: "apps/v1",
      kind: "Deploymnet",
      metadata: { name: "x" },
    });
    expect(violations).toHaveLength(1);
    expect(violations[0]!.message).toBe(
      "no Kubernetes schema for apiVersion apps/v1 kind Deploymnet",
    );
  });
});

describe("recording mocks", () => {
  it("records every resource; echoes inputs unless a resolver computes the state", async () => {
    const { mocks, resources } = recordingMocks({
      resource: (type, name, inputs) =>
        type.startsWith("azure-native:")
          ? { id: `/ids/${name}`, state: { ...inputs, clientId: "c" } }
          : undefined,
    });
    const k8s = await mocks.newResource({
      type: "kubernetes:core/v1:Namespace",
      name: "ns",
      inputs: { metadata: { name: "sims" } },
      custom: true,
    });
    const azure = await mocks.newResource({
      type: "azure-native:managedidentity:UserAssignedIdentity",
      name: "runner",
      inputs: { location: "westeurope" },
      custom: true,
    });
    expect(k8s).toEqual({ id: "ns-id", state: { metadata: { name: "sims" } } });
    expect(azure).toEqual({ id: "/ids/runner", state: { location: "westeurope", clientId: "c" } });
    expect(resources.map((r) => `${r.type} ${r.name}`)).toEqual([
      "kubernetes:core/v1:Namespace ns",
      "azure-native:managedidentity:UserAssignedIdentity runner",
    ]);
  });

  it("fails a provider function call it has no result for", async () => {
    const { mocks } = recordingMocks({
      call: (token) => (token === "a:b:known" ? { ok: 1 } : undefined),
    });
    expect(await mocks.call({ token: "a:b:known", inputs: {} })).toEqual({ ok: 1 });
    expect(() => mocks.call({ token: "a:b:unknown", inputs: {} })).toThrow(
      /no mock result for provider function a:b:unknown/,
    );
  });
});

describe("render plan and writer", () => {
  const k8sObject: RecordedResource = {
    type: "kubernetes:core/v1:ConfigMap",
    name: "dask-config",
    custom: true,
    inputs: {
      data: { a: "b" },
      metadata: { name: "dask-config", namespace: "sims" },
      kind: "ConfigMap",
      apiVersion: "v1",
    },
  };
  const azureResource: RecordedResource = {
    type: "azure-native:containerservice:ManagedCluster",
    name: "aks",
    custom: true,
    inputs: { location: "westeurope", agentPoolProfiles: [{ name: "system", count: 1 }] },
  };
  const component: RecordedResource = {
    type: "dask-workspace:workspace:DaskWorkspace",
    name: "dask",
    custom: false,
    inputs: {},
  };
  const provider: RecordedResource = {
    type: "pulumi:providers:kubernetes",
    name: "aks",
    custom: true,
    inputs: { kubeconfig: "secret" },
  };

  it("writes Kubernetes objects as manifests and Azure resources as {type, name, inputs}", () => {
    const plan = planRender([component, provider, k8sObject, azureResource]);
    expect(plan.kubernetes.map((k) => k.file.path)).toEqual([
      "kubernetes/v1-ConfigMap-sims-dask-config.yaml",
    ]);
    expect(Object.keys(plan.kubernetes[0]!.manifest)).toEqual([
      "apiVersion",
      "kind",
      "metadata",
      "data",
    ]);
    expect(plan.azure).toEqual([
      {
        path: "azure/azure-native.containerservice.ManagedCluster-aks.json",
        content: `${JSON.stringify(
          {
            type: "azure-native:containerservice:ManagedCluster",
            name: "aks",
            inputs: azureResource.inputs,
          },
          null,
          2,
        )}\n`,
      },
    ]);
    expect(plan.skipped).toEqual([]);
  });

  it("refuses two resources that would share a file", () => {
    expect(() => planRender([k8sObject, { ...k8sObject, name: "other" }])).toThrow(
      /both render to kubernetes\/v1-ConfigMap-sims-dask-config.yaml/,
    );
  });

  it("replaces only its own subfolders of an existing output directory", async () => {
    const out = join(tmp, "existing");
    await mkdir(join(out, "kubernetes"), { recursive: true });
    await writeFile(join(out, "kubernetes", "stale.yaml"), "old");
    await writeFile(join(out, "notes.txt"), "mine");
    const plan = planRender([k8sObject, azureResource]);
    await writeRenderOutput(out, [...plan.kubernetes.map((k) => k.file), ...plan.azure]);
    expect((await readdir(out)).sort()).toEqual(["azure", "kubernetes", "notes.txt"]);
    expect(await readdir(join(out, "kubernetes"))).toEqual(["v1-ConfigMap-sims-dask-config.yaml"]);
    expect(
      JSON.parse(await readFile(join(out, "azure", plan.azure[0]!.path.split("/")[1]!), "utf8")),
    ).toEqual({ type: azureResource.type, name: "aks", inputs: azureResource.inputs });
    expect(await readFile(join(out, "notes.txt"), "utf8")).toBe("mine");
    // No staging directory is left behind.
    expect((await readdir(tmp)).filter((f) => f.includes(".render-"))).toEqual([]);
  });

  it("writes nothing when a file would land outside its folders", async () => {
    const out = join(tmp, "escape");
    await expect(
      writeRenderOutput(out, [
        { path: "kubernetes/ok.yaml", content: "a: 1\n" },
        { path: "../escaped.yaml", content: "a: 1\n" },
      ]),
    ).rejects.toThrow(/outside/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(tmp, "escaped.yaml"))).toBe(false);
  });
});
