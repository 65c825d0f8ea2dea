/**
 * The hardening rules (docs/security.md): ephemeral storage, egress, dashboard sources, probes,
 * the scheduler's disruption budget and image references. Configs go through the real
 * `parseWorkspaceConfig`; objects through the real builders, the DaskWorkspace component under
 * Pulumi mocks, and kubernetes-models validation.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { parseWorkspaceConfig } from "../infra/config.js";
import {
  cidrWithin,
  imageTagWarnings,
  LINK_LOCAL,
  nodeDiskProblems,
  objectStoreEgress,
  parseCidr,
} from "../infra/config-security.js";
import { aksDefaultOsDiskGiB, nodeEphemeralBytes } from "../infra/node-disk.js";
import { validateManifests } from "../infra/render/validate.js";
import type { WorkspaceConfig } from "../infra/types.js";
import type * as WorkspaceModule from "../infra/workspace/index.js";
import { workspaceNames } from "../infra/workspace/labels.js";
import { networkPolicies } from "../infra/workspace/network.js";
import {
  heartbeatCheckCommand,
  NANNY_HEARTBEAT_PATH,
  NANNY_HEARTBEAT_STALE_SECONDS,
  SCHEDULER_LIVENESS_BUDGET_SECONDS,
  schedulerLivenessProbe,
  schedulerReadinessProbe,
} from "../infra/workspace/probes.js";
import { schedulerDeployment, schedulerDisruptionBudget } from "../infra/workspace/scheduler.js";
import { workerDeployment } from "../infra/workspace/workers.js";
import { PROJECT_ROOT, STATIC_RAW, TEST_STUDY, workspaceConfig } from "./helpers/config.js";
import {
  inputs,
  installRecordingMocks,
  type Obj,
  ofType,
  recordDuring,
  type RecordingMocks,
} from "./helpers/pulumi.js";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function parse(raw: Record<string, unknown>) {
  return parseWorkspaceConfig(raw, { baseDir: PROJECT_ROOT, stack: "test" });
}

function problemsOf(raw: Record<string, unknown>): string[] {
  const r = parse(raw);
  if (r.ok) throw new Error("expected the config to be refused");
  return r.problems.map((p) => `${p.path}: ${p.message}`);
}

const names = workspaceNames("dask");

/** The pod spec of a Deployment built by a pure builder (plain values, no Outputs). */
function podSpec(d: unknown): Obj {
  return (d as Obj).spec.template.spec as Obj;
}

function policiesOf(cfg: WorkspaceConfig): Map<string, Obj> {
  return new Map(
    networkPolicies({ cfg, instance: "dask", names }).map((p) => [p.name, p.manifest as Obj]),
  );
}

/** Every ipBlock of every egress rule. */
function egressBlocks(policies: Map<string, Obj>): Obj[] {
  return [...policies.values()].flatMap((p) =>
    (p.spec.egress ?? []).flatMap((rule: Obj) =>
      (rule.to ?? []).filter((peer: Obj) => peer.ipBlock !== undefined).map((p: Obj) => p.ipBlock),
    ),
  );
}

describe("ephemeral storage", () => {
  it("sizes /tmp from worker memory (2 × podMemory) and adds a logs allowance to the limit", () => {
    const cfg = workspaceConfig({ workers: { podMemory: "8Gi", nprocs: 2, cpu: "2" } });
    const w = cfg.hardening.storage.worker;
    expect(w.scratch.bytes).toBe(16 * GiB);
    expect(w.ephemeral.bytes).toBe(16 * GiB + 256 * MiB);
    const d = workerDeployment({ cfg, instance: "dask", names, schedulerAddress: "tcp://s:8786" });
    const pod = podSpec(d);
    expect(pod.volumes.find((v: Obj) => v.name === "scratch").emptyDir).toEqual({
      sizeLimit: "16Gi",
    });
    const res = pod.containers[0].resources;
    expect(res.requests["ephemeral-storage"]).toBe("16640Mi");
    expect(res.limits).toEqual(res.requests);
  });

  it("takes workers.spillStorage and *.scratchStorage as explicit overrides", () => {
    const cfg = workspaceConfig({
      workers: { podMemory: "8Gi", nprocs: 2, cpu: "2", spillStorage: "50Gi" },
      scheduler: { scratchStorage: "2Gi" },
      runner: { scratchStorage: "512Mi" },
    });
    expect(cfg.hardening.storage.worker.scratch.quantity).toBe("50Gi");
    expect(cfg.hardening.storage.scheduler.scratch.quantity).toBe("2Gi");
    expect(cfg.hardening.storage.runner.ephemeral.quantity).toBe("768Mi");
    const s = podSpec(schedulerDeployment({ cfg, instance: "dask", names }));
    expect(s.containers[0].resources.limits["ephemeral-storage"]).toBe("2304Mi");
  });

  it("refuses a spill size that is not a disk quantity, with the fix", () => {
    expect(problemsOf({ workers: { spillStorage: "20GB" } })).toEqual([
      expect.stringMatching(/^workers\.spillStorage: .*20Gi/),
    ]);
    expect(problemsOf({ workers: { spillStorage: 0 } })).toEqual([
      expect.stringMatching(
        /^workers\.spillStorage: 0 must be positive; use a Kubernetes quantity/,
      ),
    ]);
  });

  it("AKS default OS disk by vCPUs, and what a node leaves for pods", () => {
    expect(aksDefaultOsDiskGiB("Standard_D4s_v5")).toBe(128);
    expect(aksDefaultOsDiskGiB("Standard_E8s_v5")).toBe(256);
    expect(aksDefaultOsDiskGiB("Standard_D16s_v5")).toBe(512);
    expect(aksDefaultOsDiskGiB("Standard_E64s_v5")).toBe(1024);
    expect(aksDefaultOsDiskGiB("Standard_D4s_v5", 64)).toBe(64);
    expect(aksDefaultOsDiskGiB("Standard_Nope")).toBeUndefined();
    // 128 GiB × 0.9 (nodefs eviction at 10% free) − 30 GiB for the node itself.
    expect(nodeEphemeralBytes(128)).toBe(Math.floor(128 * GiB * 0.9 - 30 * GiB));
  });

  it("target azure: refuses spill space the worker node's OS disk cannot hold, naming the numbers", () => {
    const azure = {
      target: "azure",
      azure: { location: "westeurope", workerPool: { vmSize: "Standard_D4s_v5" } },
      workers: { replicas: 1, nprocs: 3, podMemory: "12Gi", cpu: "3" },
    };
    // The dev stack's shape: 2 × 12Gi spill on a 128 GiB disk fits.
    expect(parse(azure).ok).toBe(true);
    const problems = problemsOf({ ...azure, workers: { ...azure.workers, spillStorage: "100Gi" } });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^workers\.spillStorage: 1 worker pod\(s\) per Standard_D4s_v5 node × 100\.3Gi ephemeral storage \+ a runner's 1\.3Gi = 101\.5Gi does not fit the about 85\.2Gi that its 128 GiB OS disk leaves for pods; set workers\.spillStorage to at most \d+Mi or pick a VM size/,
    );
    // The suggested maximum really fits.
    const max = /at most (\d+)Mi/.exec(problems[0]!)![1]!;
    expect(parse({ ...azure, workers: { ...azure.workers, spillStorage: `${max}Mi` } }).ok).toBe(
      true,
    );
  });

  it("several worker pods per node count together", () => {
    const p = nodeDiskProblems({
      vmSize: "Standard_E8s_v5",
      worker: { podMemory: { bytes: 8 * GiB, quantity: "8Gi" }, cpu: "1", cpuMillis: 1000 },
      workerEphemeral: 40 * GiB,
      runnerEphemeral: GiB,
      spillExplicit: true,
    });
    expect(p[0]?.message).toMatch(/^\d worker pod\(s\) per Standard_E8s_v5 node × 40\.0Gi/);
  });
});

describe("egress", () => {
  it("denies egress by default; DNS, the workspace's own pods, the API server for the runner", async () => {
    // A job with results on the volume: no object store.
    const cfg = workspaceConfig({
      ...STATIC_RAW,
      jobs: { calibration: { study: TEST_STUDY, results: "/results/calibration" } },
    });
    const policies = policiesOf(cfg);
    // No jobs, no runner pods: no runner rules.
    expect(policiesOf(workspaceConfig({ ...STATIC_RAW, jobs: {} })).has("dask-egress-runner")).toBe(
      false,
    );
    expect(policies.get("dask-default-deny")!.spec.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(policies.get("dask-egress-dns")!.spec.egress).toEqual([
      {
        to: [
          {
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
            podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
          },
        ],
        ports: [
          { protocol: "UDP", port: 53 },
          { protocol: "TCP", port: 53 },
        ],
      },
    ]);
    expect(policies.get("dask-egress-dask")!.spec.egress).toEqual([
      {
        to: [
          {
            podSelector: {
              matchLabels: {
                "app.kubernetes.io/name": "dask",
                "app.kubernetes.io/instance": "dask",
              },
            },
          },
        ],
      },
    ]);
    const runner = policies.get("dask-egress-runner")!.spec;
    expect(runner.podSelector.matchLabels["app.kubernetes.io/component"]).toBe("runner");
    // No job writes to an object store: only the API server rule.
    expect(runner.egress).toEqual([
      {
        to: [{ ipBlock: { cidr: "0.0.0.0/0", except: [LINK_LOCAL] } }],
        ports: [
          { protocol: "TCP", port: 443 },
          { protocol: "TCP", port: 6443 },
        ],
      },
    ]);
    expect(await validateManifests([...policies.values()])).toEqual([]);
  });

  it("opens 443 on public addresses for an object-store results URI, never link-local", () => {
    const policies = policiesOf(workspaceConfig(STATIC_RAW)); // jobs write to az://
    const store = policies.get("dask-egress-runner")!.spec.egress[1];
    expect(store).toEqual({
      to: [
        {
          ipBlock: {
            cidr: "0.0.0.0/0",
            except: [LINK_LOCAL, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"],
          },
        },
      ],
      ports: [{ protocol: "TCP", port: 443 }],
    });
  });

  it("every ipBlock that contains link-local excludes it, including extraEgress and narrowed ranges", () => {
    const cfg = workspaceConfig({
      ...STATIC_RAW,
      network: {
        apiServer: { cidrs: ["20.50.0.0/16"], ports: [443] },
        objectStore: { cidrs: ["10.20.0.0/24"] },
        extraEgress: [
          { cidr: "0.0.0.0/0", ports: [443] },
          { cidr: "169.0.0.0/8" },
          { cidr: "10.1.2.3/32", ports: [5432] },
          { cidr: "10.9.0.0/16", ports: [53], protocol: "UDP" },
        ],
      },
    });
    const policies = policiesOf(cfg);
    const blocks = egressBlocks(policies);
    expect(blocks.length).toBe(6);
    for (const b of blocks) {
      if (cidrWithin(LINK_LOCAL, b.cidr)) expect(b.except, b.cidr).toContain(LINK_LOCAL);
      else expect(cidrWithin(b.cidr, LINK_LOCAL), b.cidr).toBe(false);
    }
    // Of these, the two ranges that hold link-local: 0.0.0.0/0 and 169.0.0.0/8.
    expect(blocks.filter((b) => b.except?.includes(LINK_LOCAL)).map((b) => b.cidr)).toEqual([
      "0.0.0.0/0",
      "169.0.0.0/8",
    ]);
    const extra = policies.get("dask-egress-extra")!.spec;
    expect(extra.egress).toEqual([
      {
        to: [{ ipBlock: { cidr: "0.0.0.0/0", except: [LINK_LOCAL] } }],
        ports: [{ protocol: "TCP", port: 443 }],
      },
      { to: [{ ipBlock: { cidr: "169.0.0.0/8", except: [LINK_LOCAL] } }] },
      { to: [{ ipBlock: { cidr: "10.1.2.3/32" } }], ports: [{ protocol: "TCP", port: 5432 }] },
      { to: [{ ipBlock: { cidr: "10.9.0.0/16" } }], ports: [{ protocol: "UDP", port: 53 }] },
    ]);
    // A private-endpoint store range is taken as given (no private ranges cut out of it).
    expect(policies.get("dask-egress-runner")!.spec.egress[1].to).toEqual([
      { ipBlock: { cidr: "10.20.0.0/24" } },
    ]);
  });

  it("refuses link-local and malformed extraEgress ranges with a clear error", () => {
    expect(
      problemsOf({
        network: {
          extraEgress: [
            { cidr: "169.254.169.254/32", ports: [80] },
            { cidr: "10.0.0.1/8" },
            { cidr: "10.0.0.0/8", ports: [70000] },
          ],
        },
      }),
    ).toEqual([
      "network.extraEgress.0.cidr: 169.254.169.254/32 is link-local (169.254.0.0/16: the cloud instance-metadata endpoint 169.254.169.254 and node-local services); egress there is always blocked, so remove this entry",
      'network.extraEgress.1.cidr: "10.0.0.1/8" is not an IPv4 CIDR with its host bits zero, e.g. 10.20.0.0/16 or 203.0.113.7/32',
      "network.extraEgress.2.ports.0: 70000 is out of range: must be ≤ 65535",
    ]);
    expect(problemsOf({ network: { apiServer: { cidrs: ["169.254.0.0/16"] } } })[0]).toMatch(
      /^network\.apiServer\.cidrs\.0: 169\.254\.0\.0\/16 is link-local/,
    );
    expect(problemsOf({ network: { egress: [] } })[0]).toMatch(/^network\.egress: unknown key/);
  });

  it("network.restrictEgress: false drops every egress rule, with a warning", () => {
    const r = parse({ network: { restrictEgress: false } });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.warnings).toEqual([
      expect.stringMatching(/^network\.restrictEgress: false: .*169\.254\.169\.254/),
    ]);
    const policies = policiesOf(r.config);
    expect([...policies.keys()].filter((n) => n.includes("egress"))).toEqual([]);
    expect(policies.get("dask-default-deny")!.spec.policyTypes).toEqual(["Ingress"]);
  });

  it("parses CIDRs exactly", () => {
    expect(parseCidr("10.0.0.0/8")).toEqual([10 * 2 ** 24, 8]);
    expect(parseCidr("10.0.0.1/8")).toBeUndefined();
    expect(parseCidr("256.0.0.0/8")).toBeUndefined();
    expect(parseCidr("10.0.0.0/33")).toBeUndefined();
    expect(cidrWithin("169.254.169.254/32", "0.0.0.0/0")).toBe(true);
    expect(cidrWithin("169.254.0.0/16", "169.0.0.0/8")).toBe(true);
    expect(cidrWithin("169.254.0.0/16", "10.0.0.0/8")).toBe(false);
  });
});

describe("dashboard", () => {
  it("admits the runner and the scheduler.dashboardFrom sources only", async () => {
    const cfg = workspaceConfig({
      scheduler: {
        dashboardFrom: [
          { podSelector: { app: "prometheus" } },
          {
            namespaceSelector: { "kubernetes.io/metadata.name": "monitoring" },
            podSelector: { "app.kubernetes.io/name": "grafana" },
          },
          { cidr: "10.8.0.0/24" },
        ],
      },
    });
    const dash = policiesOf(cfg).get("dask-scheduler-dashboard")!;
    expect(dash.spec.ingress[0].from).toEqual([
      {
        podSelector: {
          matchLabels: {
            "app.kubernetes.io/name": "dask",
            "app.kubernetes.io/instance": "dask",
            "app.kubernetes.io/component": "runner",
          },
        },
      },
      { podSelector: { matchLabels: { app: "prometheus" } } },
      {
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } },
        podSelector: { matchLabels: { "app.kubernetes.io/name": "grafana" } },
      },
      { ipBlock: { cidr: "10.8.0.0/24" } },
    ]);
    expect(await validateManifests([dash])).toEqual([]);
  });

  it("refuses an empty, mixed or malformed dashboardFrom entry", () => {
    expect(
      problemsOf({
        scheduler: {
          dashboardFrom: [
            {},
            { cidr: "10.0.0.0/8", podSelector: { a: "b" } },
            { podSelector: { "bad key!": "x" } },
            { cidr: "nope" },
          ],
        },
      }),
    ).toEqual([
      "scheduler.dashboardFrom.0: is empty; give podSelector (e.g. {app: prometheus}), namespaceSelector, or cidr (e.g. 10.8.0.0/24)",
      "scheduler.dashboardFrom.1: give either cidr or podSelector/namespaceSelector, not both (write two entries for both)",
      'scheduler.dashboardFrom.2.podSelector.bad key!: "bad key!" is not a label key',
      'scheduler.dashboardFrom.3.cidr: "nope" is not an IPv4 CIDR with its host bits zero, e.g. 10.20.0.0/16 or 203.0.113.7/32',
    ]);
  });
});

describe("probes", () => {
  it("scheduler: quick readiness, lenient liveness of the measured budget", () => {
    const cfg = workspaceConfig({});
    const c = podSpec(schedulerDeployment({ cfg, instance: "dask", names })).containers[0];
    expect(c.readinessProbe).toEqual(schedulerReadinessProbe("http-dashboard"));
    expect(c.livenessProbe).toEqual(schedulerLivenessProbe("http-dashboard"));
    expect(c.readinessProbe).not.toEqual(c.livenessProbe);
    const r = c.readinessProbe;
    expect(r.periodSeconds * r.failureThreshold).toBeLessThanOrEqual(30);
    const l = c.livenessProbe;
    expect(l.periodSeconds * l.failureThreshold).toBe(SCHEDULER_LIVENESS_BUDGET_SECONDS);
    expect(SCHEDULER_LIVENESS_BUDGET_SECONDS).toBeGreaterThanOrEqual(600);
  });

  it("workers: liveness runs the heartbeat check; the preload writes where the probe reads", () => {
    const cfg = workspaceConfig({});
    const c = podSpec(
      workerDeployment({ cfg, instance: "dask", names, schedulerAddress: "tcp://s:8786" }),
    ).containers[0];
    expect(c.livenessProbe.exec.command).toEqual(
      heartbeatCheckCommand(NANNY_HEARTBEAT_PATH, NANNY_HEARTBEAT_STALE_SECONDS),
    );
    expect(c.readinessProbe).toBeUndefined();
    expect(c.command.slice(-2)).toEqual(["--preload-nanny", "dask_workspace.heartbeat"]);
    // The runner package's default heartbeat path and interval (workspace.yaml).
    const yaml = parseYaml(
      readFileSync(join(PROJECT_ROOT, "runner/src/dask_workspace/workspace.yaml"), "utf8"),
    ) as { workspace: { heartbeat: { path: string; interval: string } } };
    expect(yaml.workspace.heartbeat.path).toBe(NANNY_HEARTBEAT_PATH);
    expect(Number.parseInt(yaml.workspace.heartbeat.interval, 10) * 3).toBeLessThan(
      NANNY_HEARTBEAT_STALE_SECONDS,
    );
  });

  it("the heartbeat check passes on a fresh file and fails on a stale or missing one", () => {
    const dir = mkdtempSync(join(tmpdir(), "heartbeat-"));
    const file = join(dir, "beat");
    const run = () => spawnSync(...split(heartbeatCheckCommand(file, 60))).status;
    expect(run()).not.toBe(0); // missing
    writeFileSync(file, "");
    expect(run()).toBe(0);
    const old = Date.now() / 1000 - 120;
    utimesSync(file, old, old);
    expect(run()).not.toBe(0);
  });
});

function split(argv: string[]): [string, string[]] {
  return [argv[0]!, argv.slice(1)];
}

describe("scheduler disruption budget", () => {
  let recording: RecordingMocks;
  let mod: typeof WorkspaceModule;
  beforeAll(async () => {
    recording = await installRecordingMocks("test");
    mod = await import("../infra/workspace/index.js");
  });

  async function pdbs(raw: Record<string, unknown>): Promise<Obj[]> {
    const cfg = workspaceConfig(raw);
    const { resources } = await recordDuring(
      recording,
      () => new mod.DaskWorkspace("dask", { config: cfg }),
    );
    return ofType(resources, "kubernetes:policy/v1:PodDisruptionBudget").map(inputs);
  }

  it("lets an unhealthy scheduler be evicted (AlwaysAllow) and keeps minAvailable 1", async () => {
    const [pdb] = await pdbs({});
    expect(pdb!.spec).toMatchObject({ minAvailable: 1, unhealthyPodEvictionPolicy: "AlwaysAllow" });
    expect(
      await validateManifests([
        schedulerDisruptionBudget({ cfg: workspaceConfig({}), instance: "dask", names }) as Obj,
      ]),
    ).toEqual([]);
  });

  it("scheduler.disruptionBudget: false (maintenance) drops the budget, with a warning", async () => {
    expect(await pdbs({ scheduler: { disruptionBudget: false } })).toEqual([]);
    const r = parse({ scheduler: { disruptionBudget: false } });
    expect(r.warnings).toEqual([
      expect.stringMatching(/^scheduler\.disruptionBudget: false: .*set it back to true/),
    ]);
  });
});

describe("images", () => {
  const digest = "a".repeat(64);

  it("accepts repo@sha256:<64 hex> (with or without a tag) and warns only for tags", () => {
    const r = parse({
      images: {
        dask: `myacr.azurecr.io/dask-workspace/dask@sha256:${digest}`,
        runner: `myacr.azurecr.io/dask-workspace/runner:0.1.0@sha256:${digest}`,
      },
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(imageTagWarnings(r.config.images)).toEqual([]);
    expect(r.config.images.pullPolicy).toBe("IfNotPresent");
    expect(
      imageTagWarnings({ dask: "dask-workspace/dask:0.1.0", runner: r.config.images.runner }),
    ).toEqual([
      "images.dask: dask-workspace/dask:0.1.0 is a tag, which can be moved to other content without any change here; pin it by digest (images.dask: <repo>@sha256:<digest>, printed by npm run images:build)",
    ]);
  });

  it("refuses a malformed digest, saying what a digest looks like", () => {
    expect(
      problemsOf({ images: { dask: "repo/dask@sha256:abc", runner: `@sha256:${digest}` } }),
    ).toEqual([
      'images.dask: "repo/dask@sha256:abc": the digest must be sha256: followed by 64 lower-case hex digits (npm run images:build prints each pushed image as repo@sha256:...)',
      `images.runner: "@sha256:${digest}" has a digest but no repository`,
    ]);
  });
});

describe("object-store egress with an Azure private endpoint", () => {
  const network = {
    objectStore: { cidrs: ["0.0.0.0/0"], ports: [443] },
  } as Parameters<typeof objectStoreEgress>[0]["network"];
  it("adds the private endpoint subnet on azure when storage.privateEndpoint is on", () => {
    const azure = { workerPool: { vmSize: "Standard_E4s_v5" }, storage: { privateEndpoint: true } };
    expect(objectStoreEgress({ target: "azure", azure, network }).cidrs).toEqual([
      "0.0.0.0/0",
      "10.240.4.0/24",
    ]);
  });
  it("leaves the ranges alone without a private endpoint or off azure", () => {
    const azure = {
      workerPool: { vmSize: "Standard_E4s_v5" },
      storage: { privateEndpoint: false },
    };
    expect(objectStoreEgress({ target: "azure", azure, network }).cidrs).toEqual(["0.0.0.0/0"]);
    expect(objectStoreEgress({ target: "kubernetes", network }).cidrs).toEqual(["0.0.0.0/0"]);
  });
});
