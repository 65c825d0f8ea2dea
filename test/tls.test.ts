/**
 * Dask TLS, the pure parts: the certificates `generateTlsMaterial` makes (checked with Node's own
 * X.509 parser, not with the library that made them), the `tls` stack key, and what TLS changes
 * in the Dask commands, the Dask config and the Kubernetes objects (validated with
 * kubernetes-models). The program under mocks is in test/workspace-tls.test.ts, real Dask over
 * TLS in test/local-tls.test.ts.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { parseWorkspaceConfig } from "../infra/config.js";
import {
  daskConfigYaml,
  schedulerAddress,
  schedulerCommand,
  workerCommand,
} from "../infra/dask.js";
import { localTlsSpec } from "../infra/local/tls.js";
import { validateManifests } from "../infra/render/validate.js";
import {
  generateTlsMaterial,
  TLS_FILES,
  TLS_MOUNT_DIR,
  type TlsMaterial,
  type TlsSpec,
  tlsSpecHash,
  writeTlsFiles,
} from "../infra/tls.js";
import { workspaceNames } from "../infra/workspace/labels.js";
import { runnerJob } from "../infra/workspace/runner.js";
import { schedulerDeployment, workspaceSchedulerAddress } from "../infra/workspace/scheduler.js";
import {
  tlsSecret,
  tlsSecretData,
  tlsSecretName,
  workspaceTlsSpec,
} from "../infra/workspace/tls.js";
import { workerDeployment } from "../infra/workspace/workers.js";
import { PROJECT_ROOT, STATIC_RAW, workspaceConfig } from "./helpers/config.js";

const SPEC: TlsSpec = {
  caCommonName: "test CA",
  commonName: "dask-scheduler.sims.svc",
  dnsNames: ["dask-scheduler", "dask-scheduler.sims.svc"],
  ipAddresses: ["127.0.0.1"],
  validityDays: 30,
};

const AZURE_RAW: Record<string, unknown> = {
  ...STATIC_RAW,
  target: "azure",
  azure: {
    location: "westeurope",
    systemPool: { vmSize: "Standard_D2s_v5", count: 1 },
    workerPool: { vmSize: "Standard_D16s_v5", minCount: 1, maxCount: 4 },
  },
};

function parse(raw: Record<string, unknown>) {
  return parseWorkspaceConfig(raw, { baseDir: PROJECT_ROOT, stack: "test" });
}

describe("generateTlsMaterial", () => {
  let m: TlsMaterial;
  let ca: X509Certificate;
  let cert: X509Certificate;
  const now = new Date("2026-06-01T12:00:00Z");
  beforeAll(async () => {
    m = await generateTlsMaterial(SPEC, { now });
    ca = new X509Certificate(m.caCert);
    cert = new X509Certificate(m.cert);
  });

  it("makes a CA that signed the certificate, and the key that belongs to the certificate", () => {
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(m.key))).toBe(true);
    // The CA's key is not in the material: nothing can sign another certificate later.
    expect(ca.checkPrivateKey(createPrivateKey(m.key))).toBe(false);
    expect(createPrivateKey(m.key).asymmetricKeyDetails?.modulusLength).toBe(2048);
  });

  it("names the scheduler and the spec's names, for server and client use", () => {
    expect(ca.subject).toBe("CN=test CA");
    expect(cert.subject).toBe("CN=dask-scheduler.sims.svc");
    expect(cert.issuer).toBe("CN=test CA");
    expect(cert.subjectAltName).toBe(
      "DNS:dask-scheduler, DNS:dask-scheduler.sims.svc, IP Address:127.0.0.1",
    );
    // serverAuth and clientAuth: every Dask process both listens and connects.
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
  });

  it("is valid from a minute before now for validityDays", () => {
    expect(new Date(cert.validFrom).getTime()).toBe(now.getTime() - 60_000);
    expect(new Date(cert.validTo).getTime()).toBe(now.getTime() + 30 * 86_400_000);
    expect(new Date(ca.validTo).getTime()).toBe(now.getTime() + 30 * 86_400_000);
  });

  it("is random: a second call makes other keys and serials (so callers keep the first)", async () => {
    const again = await generateTlsMaterial(SPEC, { now });
    expect(again.key).not.toBe(m.key);
    expect(new X509Certificate(again.cert).serialNumber).not.toBe(cert.serialNumber);
    expect(new X509Certificate(again.cert).verify(ca.publicKey)).toBe(false); // another CA signed it
  });

  it("writes the files a Dask config names, the key readable by its owner only", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tls-test-"));
    try {
      writeTlsFiles(path.join(dir, "tls"), m);
      const mode = (f: string) => fs.statSync(path.join(dir, "tls", f)).mode & 0o777;
      expect(mode(TLS_FILES.key)).toBe(0o600);
      expect(mode(TLS_FILES.cert)).toBe(0o644);
      expect(fs.statSync(path.join(dir, "tls")).mode & 0o777).toBe(0o700);
      expect(fs.readFileSync(path.join(dir, "tls", TLS_FILES.ca), "utf8")).toBe(m.caCert);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("tlsSpecHash: the Secret's name", () => {
  it("is the same for the same spec and rotation, whatever the order of names", () => {
    expect(tlsSpecHash(SPEC, 0)).toBe(tlsSpecHash({ ...SPEC }, 0));
    expect(tlsSpecHash(SPEC, 0)).toBe(
      tlsSpecHash({ ...SPEC, dnsNames: [...SPEC.dnsNames].reverse() }, 0),
    );
    expect(tlsSpecHash(SPEC, 0)).toMatch(/^[0-9a-f]{10}$/);
  });

  it("changes with anything the certificate says, and with the rotation counter", () => {
    const base = tlsSpecHash(SPEC, 0);
    const changed = [
      tlsSpecHash(SPEC, 1),
      tlsSpecHash({ ...SPEC, validityDays: 31 }, 0),
      tlsSpecHash({ ...SPEC, commonName: "x" }, 0),
      tlsSpecHash({ ...SPEC, dnsNames: ["dask-scheduler"] }, 0),
      tlsSpecHash({ ...SPEC, ipAddresses: [] }, 0),
      tlsSpecHash({ ...SPEC, caCommonName: "other CA" }, 0),
    ];
    expect(new Set([base, ...changed]).size).toBe(changed.length + 1);
  });
});

describe("stack key tls", () => {
  it("is off by default on target kubernetes: nothing that rendered before changes", () => {
    const r = parse(STATIC_RAW);
    expect(r.ok && r.config.tls).toEqual({ enabled: false, validityDays: 3650, rotation: 0 });
  });

  it("is on by default on target azure", () => {
    const r = parse(AZURE_RAW);
    expect(r.ok && r.config.tls?.enabled).toBe(true);
    expect(r.warnings.filter((w) => w.startsWith("tls"))).toEqual([]);
  });

  it("can be turned on for kubernetes, and off for azure with a warning", () => {
    const on = parse({ ...STATIC_RAW, tls: { enabled: true, validityDays: 90, rotation: 2 } });
    expect(on.ok && on.config.tls).toEqual({ enabled: true, validityDays: 90, rotation: 2 });
    const off = parse({ ...AZURE_RAW, tls: { enabled: false } });
    expect(off.ok && off.config.tls?.enabled).toBe(false);
    expect(off.warnings).toContainEqual(
      expect.stringMatching(/^tls\.enabled: false on target azure/),
    );
  });

  it("rejects wrong values, naming the key, and unknown keys with a hint", () => {
    const r = parse({
      ...STATIC_RAW,
      tls: { enabled: "yes", validityDays: 0, rotation: -1, enable: true },
    });
    expect(r.ok).toBe(false);
    const paths = r.ok ? [] : r.problems.map((p) => p.path).sort();
    expect(paths).toEqual(["tls.enable", "tls.enabled", "tls.rotation", "tls.validityDays"]);
    const hint = r.ok ? undefined : r.problems.find((p) => p.path === "tls.enable");
    expect(hint?.message).toMatch(/did you mean tls\.enabled\?/);
  });
});

describe("Dask commands and config with TLS", () => {
  const off = workspaceConfig(STATIC_RAW);
  const on = workspaceConfig({ ...STATIC_RAW, tls: { enabled: true } });
  const names = workspaceNames("dask");

  it("uses tls:// for the scheduler everywhere, and tcp:// without TLS", () => {
    expect(schedulerAddress(off, "h")).toBe("tcp://h:8786");
    expect(schedulerAddress(on, "h")).toBe("tls://h:8786");
    expect(workspaceSchedulerAddress(on, names)).toBe("tls://dask-scheduler.sims.svc:8786");
    expect(schedulerCommand(on)).toEqual([...schedulerCommand(off), "--protocol", "tls"]);
    expect(workerCommand(on, { schedulerAddress: "tls://h:8786", name: "p" })[2]).toBe(
      "tls://h:8786",
    );
  });

  it("puts the certificate files and require-encryption into the Dask config", () => {
    const doc = parseYaml(daskConfigYaml(on)) as { distributed: Record<string, any> };
    const role = { cert: `${TLS_MOUNT_DIR}/tls.crt`, key: `${TLS_MOUNT_DIR}/tls.key` };
    expect(doc.distributed.comm).toEqual({
      "require-encryption": true,
      tls: { "ca-file": `${TLS_MOUNT_DIR}/ca.crt`, scheduler: role, worker: role, client: role },
    });
    const local = parseYaml(daskConfigYaml(on, { tlsDir: "/run/x" })) as typeof doc;
    expect(local.distributed.comm.tls["ca-file"]).toBe("/run/x/ca.crt");
    expect((parseYaml(daskConfigYaml(off)) as typeof doc).distributed.comm).toBeUndefined();
  });

  it("emits only flags and config keys the pinned distributed knows", () => {
    const dask = path.join(PROJECT_ROOT, ".venv", "bin", "dask");
    expect(execFileSync(dask, ["scheduler", "--help"], { encoding: "utf8" })).toMatch(
      /--protocol TEXT\s+Protocol like tcp, tls/,
    );
    // Every key we set exists in distributed's own defaults (a typo would be silently ignored).
    const python = path.join(PROJECT_ROOT, ".venv", "bin", "python");
    const keys = [
      "distributed.comm.require-encryption",
      "distributed.comm.tls.ca-file",
      ...["scheduler", "worker", "client"].flatMap((r) => [
        `distributed.comm.tls.${r}.cert`,
        `distributed.comm.tls.${r}.key`,
      ]),
    ];
    const script =
      "import sys, dask, distributed\n" +
      "missing = [k for k in sys.argv[1:] if dask.config.get(k, 'MISSING') == 'MISSING']\n" +
      "print(','.join(missing))";
    expect(execFileSync(python, ["-c", script, ...keys], { encoding: "utf8" }).trim()).toBe("");
  });
});

describe("Kubernetes objects with TLS", () => {
  const cfg = workspaceConfig({ ...STATIC_RAW, tls: { enabled: true } });
  const names = workspaceNames("dask");
  const secretName = tlsSecretName(cfg, "dask", names);
  const address = workspaceSchedulerAddress(cfg, names);
  let material: TlsMaterial;
  beforeAll(async () => {
    material = await generateTlsMaterial(workspaceTlsSpec(cfg, names));
  });

  it("names the Secret after what the certificate says", () => {
    expect(secretName).toMatch(/^dask-tls-[0-9a-f]{10}$/);
    expect(tlsSecretName(cfg, "dask", names)).toBe(secretName);
    const rotated = workspaceConfig({ ...STATIC_RAW, tls: { enabled: true, rotation: 1 } });
    expect(tlsSecretName(rotated, "dask", names)).not.toBe(secretName);
    const otherNs = workspaceConfig({ ...STATIC_RAW, namespace: "other", tls: { enabled: true } });
    expect(tlsSecretName(otherNs, "dask", names)).not.toBe(secretName);
  });

  it("certifies the scheduler Service's DNS names", async () => {
    const cert = new X509Certificate(material.cert);
    expect(cert.subject).toBe("CN=dask-scheduler.sims.svc");
    expect(cert.subjectAltName).toBe(
      "DNS:dask-scheduler, DNS:dask-scheduler.sims, DNS:dask-scheduler.sims.svc, DNS:dask-scheduler.sims.svc.cluster.local",
    );
  });

  it("builds a kubernetes.io/tls Secret and pods that mount it, all schema-valid", async () => {
    const secret = tlsSecret(cfg, {
      instance: "dask",
      name: secretName,
      data: tlsSecretData(material),
    });
    expect(secret).toMatchObject({ type: "kubernetes.io/tls", metadata: { name: secretName } });
    const data = secret.data as Record<string, string>;
    expect(Object.keys(data).sort()).toEqual(["ca.crt", "tls.crt", "tls.key"]);
    expect(Buffer.from(data["tls.key"]!, "base64").toString()).toBe(material.key);

    const ctx = { cfg, instance: "dask", names };
    const pods = {
      scheduler: schedulerDeployment(ctx),
      worker: workerDeployment({ ...ctx, schedulerAddress: address }),
      runner: runnerJob({ ...ctx, schedulerAddress: address }, cfg.jobs[0]!),
    };
    for (const [what, obj] of Object.entries(pods)) {
      const spec = (obj.spec as any).template.spec;
      expect(spec.volumes, what).toContainEqual({
        name: "dask-tls",
        secret: { secretName, defaultMode: 0o440 },
      });
      expect(spec.containers[0].volumeMounts, what).toContainEqual({
        name: "dask-tls",
        mountPath: TLS_MOUNT_DIR,
        readOnly: true,
      });
    }
    expect((pods.worker.spec as any).template.spec.containers[0].command[2]).toBe(address);
    expect((pods.runner.spec as any).template.spec.containers[0].command).toContain(address);
    const violations = await validateManifests([secret, ...Object.values(pods)] as any);
    expect(violations).toEqual([]);
  });

  it("mounts nothing when TLS is off", () => {
    const plain = workspaceConfig(STATIC_RAW);
    const spec = (schedulerDeployment({ cfg: plain, instance: "dask", names }).spec as any).template
      .spec;
    expect(JSON.stringify(spec)).not.toMatch(/tls/);
  });
});

describe("npm run local's certificate", () => {
  it("is for 127.0.0.1, where every local process listens", () => {
    const spec = localTlsSpec(workspaceConfig({ ...STATIC_RAW, tls: { enabled: true } }));
    expect(spec).toMatchObject({ commonName: "127.0.0.1", ipAddresses: ["127.0.0.1"] });
    expect(spec.validityDays).toBe(3650);
  });
});
