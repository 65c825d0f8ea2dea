/**
 * The DaskWorkspace with Dask TLS, under Pulumi mocks: the Secret exists with real certificate
 * material and the options that keep it, the pods mount it, `tls://` everywhere, and a second
 * program run registers the same inputs except the Secret's (ignored) data, so a `pulumi
 * preview` with nothing changed stays clean.
 */
import { X509Certificate } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { revealSecrets } from "../infra/render/secrets.js";
import { validateManifests } from "../infra/render/validate.js";
import { TLS_MOUNT_DIR } from "../infra/tls.js";
import type { WorkspaceConfig } from "../infra/types.js";
import type * as WorkspaceModule from "../infra/workspace/index.js";
import { STATIC_RAW, workspaceConfig } from "./helpers/config.js";
import {
  inputs,
  installRecordingMocks,
  type Obj,
  type RecordedResource,
  recordDuring,
  type RecordingMocks,
  unwrap,
} from "./helpers/pulumi.js";

const SECRET = "kubernetes:core/v1:Secret";

let recording: RecordingMocks;
let workspaceModule: typeof WorkspaceModule;

beforeAll(async () => {
  recording = await installRecordingMocks("test");
  workspaceModule = await import("../infra/workspace/index.js");
});

interface Run {
  resources: RecordedResource[];
  /** Resource options as each child was registered with (through an inherited transformation). */
  options: Map<string, pulumi.CustomResourceOptions>;
  schedulerAddress: string;
}

async function run(cfg: WorkspaceConfig): Promise<Run> {
  const options = new Map<string, pulumi.CustomResourceOptions>();
  const { result, resources } = await recordDuring(
    recording,
    () =>
      new workspaceModule.DaskWorkspace(
        "dask",
        { config: cfg },
        {
          transformations: [
            (args) => {
              options.set(`${args.type} ${args.name}`, args.opts);
              return undefined;
            },
          ],
        },
      ),
  );
  return { resources, options, schedulerAddress: await unwrap(result.schedulerAddress) };
}

/** The one recorded Secret, with its secret data revealed. */
function secretOf(r: Run): { name: string; manifest: Obj } {
  const found = r.resources.filter((x) => x.type === SECRET);
  expect(found.map((x) => x.name)).toHaveLength(1);
  return { name: found[0]!.name, manifest: revealSecrets(found[0]!.inputs) as Obj };
}

const TLS_CFG = () => workspaceConfig({ ...STATIC_RAW, tls: { enabled: true } });

describe("DaskWorkspace with tls.enabled", () => {
  let first: Run;
  let second: Run;
  beforeAll(async () => {
    first = await run(TLS_CFG());
    second = await run(TLS_CFG());
  });

  it("creates a kubernetes.io/tls Secret holding a CA, a certificate it signed, and its key", () => {
    const { name, manifest } = secretOf(first);
    expect(name).toMatch(/^dask-tls-[0-9a-f]{10}$/);
    expect(manifest).toMatchObject({
      type: "kubernetes.io/tls",
      metadata: { name, namespace: "sims" },
    });
    const pem = (k: string) => Buffer.from(manifest.data[k] as string, "base64").toString();
    const ca = new X509Certificate(pem("ca.crt"));
    const cert = new X509Certificate(pem("tls.crt"));
    expect(ca.ca).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(pem("tls.key")).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
    expect(cert.subject).toBe("CN=dask-scheduler.sims.svc");
  });

  it("keeps the Secret's first data: later runs' new keys are ignored, not applied", () => {
    const { name } = secretOf(first);
    expect(first.options.get(`${SECRET} ${name}`)?.ignoreChanges).toEqual(["data", "stringData"]);
  });

  it("marks the data secret, so the state holds it encrypted", () => {
    const raw = first.resources.find((x) => x.type === SECRET)!.inputs as Obj;
    expect(raw.data).not.toEqual(revealSecrets(raw.data)); // wrapped as a secret
  });

  it("creates the Secret before the pods that mount it", () => {
    const { name } = secretOf(first);
    for (const owner of [
      "kubernetes:apps/v1:Deployment dask-scheduler",
      "kubernetes:apps/v1:Deployment dask-worker",
      "kubernetes:batch/v1:Job dask-job-calibration",
    ]) {
      const deps = (first.options.get(owner)?.dependsOn ?? []) as pulumi.Resource[];
      const names = deps.map((d) => (d as unknown as { __name?: string }).__name);
      expect(names, owner).toContain(name);
    }
  });

  it("mounts the Secret and the TLS Dask config into the scheduler, worker and runner pods", () => {
    const { name } = secretOf(first);
    const pods = first.resources.filter(
      (r) => r.type === "kubernetes:apps/v1:Deployment" || r.type === "kubernetes:batch/v1:Job",
    );
    expect(pods.map((p) => p.name).sort()).toEqual([
      "dask-job-calibration",
      "dask-scheduler",
      "dask-worker",
    ]);
    for (const p of pods) {
      const spec = inputs(p).spec.template.spec;
      expect(spec.volumes, p.name).toContainEqual({
        name: "dask-tls",
        secret: { secretName: name, defaultMode: 0o440 },
      });
      expect(spec.containers[0].volumeMounts, p.name).toContainEqual({
        name: "dask-tls",
        mountPath: TLS_MOUNT_DIR,
        readOnly: true,
      });
      expect(
        spec.volumes.map((v: Obj) => v.name),
        p.name,
      ).toContain("dask-config");
    }
    const configMap = first.resources.find((r) => r.name === "dask-config")!;
    const yaml = parseYaml(inputs(configMap).data["dask-workspace.yaml"]) as Obj;
    expect(yaml.distributed.comm["require-encryption"]).toBe(true);
    expect(yaml.distributed.comm.tls["ca-file"]).toBe(`${TLS_MOUNT_DIR}/ca.crt`);
  });

  it("uses tls:// for the scheduler: its command, the workers, the preStop hook, the runner, the output", () => {
    const address = "tls://dask-scheduler.sims.svc:8786";
    const text = JSON.stringify(first.resources.map((r) => r.inputs));
    expect(text).not.toMatch(/tcp:\/\//);
    const byName = (n: string) =>
      inputs(first.resources.find((r) => r.name === n && /:(Deployment|Job)$/.test(r.type))!);
    const scheduler = byName("dask-scheduler").spec.template.spec.containers[0];
    expect(scheduler.command.slice(-2)).toEqual(["--protocol", "tls"]);
    const worker = byName("dask-worker").spec.template.spec.containers[0];
    expect(worker.command[2]).toBe(address);
    expect(worker.lifecycle.preStop.exec.command[2]).toContain(`'${address}'`);
    const runner = byName("dask-job-calibration").spec.template.spec.containers[0];
    expect(runner.command[runner.command.indexOf("--scheduler") + 1]).toBe(address);
    expect(first.schedulerAddress).toBe(address);
  });

  it("validates against the Kubernetes schema", async () => {
    const objects = first.resources
      .filter((r) => r.custom && r.type.startsWith("kubernetes:"))
      .map((r) => revealSecrets(r.inputs) as Record<string, unknown>);
    expect(await validateManifests(objects)).toEqual([]);
  });

  it("registers the same inputs on a second run, except the Secret's ignored data", () => {
    const strip = (r: Run) =>
      r.resources.map((x) => {
        const revealed = revealSecrets(x.inputs) as Obj;
        if (x.type !== SECRET) return { type: x.type, name: x.name, inputs: revealed };
        const { data: _data, ...rest } = revealed;
        return { type: x.type, name: x.name, inputs: rest };
      });
    expect(strip(second)).toEqual(strip(first));
    // The one difference is real (fresh keys every run), and exactly what ignoreChanges covers.
    expect(secretOf(second).manifest.data["tls.key"]).not.toBe(
      secretOf(first).manifest.data["tls.key"],
    );
    const ignored = first.options.get(`${SECRET} ${secretOf(first).name}`)?.ignoreChanges ?? [];
    expect(ignored).toContain("data");
  });

  it("replaces the Secret (a new name) when the rotation counter goes up", async () => {
    const rotated = await run(
      workspaceConfig({ ...STATIC_RAW, tls: { enabled: true, rotation: 1 } }),
    );
    expect(secretOf(rotated).name).not.toBe(secretOf(first).name);
    const worker = rotated.resources.find((r) => r.name === "dask-worker")!;
    expect(JSON.stringify(inputs(worker).spec.template.spec.volumes)).toContain(
      secretOf(rotated).name,
    );
  });
});

describe("DaskWorkspace without TLS", () => {
  it("creates no Secret and keeps tcp://", async () => {
    const r = await run(workspaceConfig(STATIC_RAW));
    expect(r.resources.filter((x) => x.type === SECRET)).toEqual([]);
    expect(r.schedulerAddress).toBe("tcp://dask-scheduler.sims.svc:8786");
  });
});
