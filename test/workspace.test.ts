/**
 * The DaskWorkspace component under Pulumi mocks: asserts on the inputs every child resource was
 * registered with (what the Kubernetes provider would have sent to the cluster).
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { DASK_CONFIG_DIR, retireCommand, workerCommand, workerEnv } from "../infra/dask.js";
import { validateManifests } from "../infra/render/validate.js";
import type { WorkspaceConfig } from "../infra/types.js";
import type * as WorkspaceModule from "../infra/workspace/index.js";
import { NANNY_PRELOAD_ARGS } from "../infra/workspace/probes.js";
import { RUN_AS_USER } from "../infra/workspace/security.js";
import { AUTOSCALED_RAW, STATIC_RAW, TEST_STUDY, workspaceConfig } from "./helpers/config.js";
import {
  findResource,
  inputs,
  installRecordingMocks,
  type Obj,
  ofType,
  type RecordedResource,
  recordDuring,
  type RecordingMocks,
  unwrap,
} from "./helpers/pulumi.js";

const T = {
  component: "dask-workspace:workspace:DaskWorkspace",
  namespace: "kubernetes:core/v1:Namespace",
  configMap: "kubernetes:core/v1:ConfigMap",
  service: "kubernetes:core/v1:Service",
  serviceAccount: "kubernetes:core/v1:ServiceAccount",
  deployment: "kubernetes:apps/v1:Deployment",
  pdb: "kubernetes:policy/v1:PodDisruptionBudget",
  hpa: "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
  role: "kubernetes:rbac.authorization.k8s.io/v1:Role",
  roleBinding: "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
  job: "kubernetes:batch/v1:Job",
  networkPolicy: "kubernetes:networking.k8s.io/v1:NetworkPolicy",
} as const;

let recording: RecordingMocks;
let workspaceModule: typeof WorkspaceModule;

beforeAll(async () => {
  recording = await installRecordingMocks("test");
  workspaceModule = await import("../infra/workspace/index.js");
});

interface Evaluated {
  cfg: WorkspaceConfig;
  resources: RecordedResource[];
  workspace: WorkspaceModule.DaskWorkspace;
  /** URNs of every resource created under the component (the component itself included). */
  urns: string[];
}

async function evaluate(
  cfg: WorkspaceConfig,
  extra: Omit<WorkspaceModule.DaskWorkspaceArgs, "config"> = {},
): Promise<Evaluated> {
  const created: pulumi.Resource[] = [];
  const { result: workspace, resources } = await recordDuring(
    recording,
    () =>
      new workspaceModule.DaskWorkspace(
        "dask",
        { config: cfg, ...extra },
        {
          // Transformations run for the component and are inherited by every child: a way to
          // see each child's URN (type, name and parent chain) with the public API.
          transformations: [
            (args) => {
              created.push(args.resource);
              return undefined;
            },
          ],
        },
      ),
  );
  const urns = await Promise.all(created.map((r) => unwrap(r.urn)));
  return { cfg, resources, workspace, urns };
}

/** Every pod template (Deployments and Jobs) with where it came from. */
function podTemplates(resources: RecordedResource[]): { owner: string; template: Obj }[] {
  return resources
    .filter((r) => r.type === T.deployment || r.type === T.job)
    .map((r) => ({ owner: `${r.type} ${r.name}`, template: inputs(r).spec.template }));
}

/** Does a matchLabels selector select a pod with these labels? */
function selects(matchLabels: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(matchLabels).every(([k, v]) => labels[k] === v);
}

describe("DaskWorkspace (static worker count)", () => {
  let ev: Evaluated;
  beforeAll(async () => {
    ev = await evaluate(workspaceConfig(STATIC_RAW));
  });

  it("creates exactly these resources: type tokens, names and parents are pinned", () => {
    // A change here replaces live resources (or orphans them). Rename with `aliases` instead.
    const parent = "urn:pulumi:test::dask-workspace::dask-workspace:workspace:DaskWorkspace";
    expect([...ev.urns].sort()).toEqual(
      [
        `${parent}::dask`,
        `${parent}$${T.namespace}::dask-namespace`,
        `${parent}$${T.configMap}::dask-config`,
        `${parent}$${T.networkPolicy}::dask-default-deny`,
        `${parent}$${T.networkPolicy}::dask-scheduler-comm`,
        `${parent}$${T.networkPolicy}::dask-scheduler-dashboard`,
        `${parent}$${T.networkPolicy}::dask-worker-peers`,
        `${parent}$${T.networkPolicy}::dask-egress-dns`,
        `${parent}$${T.networkPolicy}::dask-egress-dask`,
        `${parent}$${T.networkPolicy}::dask-egress-runner`,
        `${parent}$${T.deployment}::dask-scheduler`,
        `${parent}$${T.service}::dask-scheduler`,
        `${parent}$${T.pdb}::dask-scheduler`,
        `${parent}$${T.deployment}::dask-worker`,
        `${parent}$${T.serviceAccount}::dask-runner`,
        `${parent}$${T.role}::dask-runner`,
        `${parent}$${T.roleBinding}::dask-runner`,
        `${parent}$${T.configMap}::dask-study-calibration`,
        `${parent}$${T.job}::dask-job-calibration`,
      ].sort(),
    );
    expect(ev.resources.map((r) => `${r.type} ${r.name}`).sort()).toEqual(
      ev.urns.map((u) => u.split("::").slice(2).join(" ").split("$").pop()).sort(),
    );
  });

  it("puts every namespaced object in the configured namespace, with the recommended labels", () => {
    const objects = ev.resources.filter((r) => r.custom && r.type !== T.namespace);
    expect(objects.length).toBeGreaterThan(10);
    for (const r of objects) {
      const meta = inputs(r).metadata;
      expect(meta.namespace, `${r.type} ${r.name}`).toBe("sims");
      expect(meta.labels, `${r.type} ${r.name}`).toMatchObject({
        "app.kubernetes.io/name": "dask",
        "app.kubernetes.io/instance": "dask",
        "app.kubernetes.io/part-of": "dask-workspace",
        "app.kubernetes.io/managed-by": "pulumi",
      });
      expect(meta.labels["app.kubernetes.io/component"], `${r.type} ${r.name}`).toMatch(
        /^(config|scheduler|worker|runner|network)$/,
      );
    }
    for (const { owner, template } of podTemplates(ev.resources)) {
      expect(template.metadata.labels["app.kubernetes.io/version"], owner).toBe("2026.8.0");
    }
  });

  it("runs `dask worker` with the exact argv: byte-exact --memory-limit, pod name, lifetime", () => {
    const worker = inputs(findResource(ev.resources, T.deployment, "dask-worker"));
    const [container] = worker.spec.template.spec.containers;
    expect(container.command).toEqual([
      "dask",
      "worker",
      "tcp://dask-scheduler.sims.svc:8786",
      "--nworkers",
      "4",
      "--nthreads",
      "1",
      "--memory-limit",
      "3758096384", // 3584Mi: a byte count, so Dask never re-parses a unit string
      "--name",
      "$(POD_NAME)",
      "--lifetime",
      "3600s",
      "--lifetime-stagger",
      "300s",
      "--lifetime-restart",
      // The nanny heartbeat behind the liveness probe (pod only).
      "--preload-nanny",
      "dask_workspace.heartbeat",
    ]);
    // One source of truth with the local launcher (the pod adds only the heartbeat preload).
    expect(container.command).toEqual([
      ...workerCommand(ev.cfg, {
        schedulerAddress: "tcp://dask-scheduler.sims.svc:8786",
        name: "$(POD_NAME)",
      }),
      ...NANNY_PRELOAD_ARGS,
    ]);
    // `$(POD_NAME)` only expands if POD_NAME is in the container env, from the downward API.
    expect(container.env).toContainEqual({
      name: "POD_NAME",
      valueFrom: { fieldRef: { fieldPath: "metadata.name" } },
    });
    for (const [name, value] of Object.entries(workerEnv(ev.cfg))) {
      expect(container.env).toContainEqual({ name, value });
    }
    expect(container.env).toContainEqual({ name: "MALLOC_TRIM_THRESHOLD_", value: "65536" });
  });

  it("gives every container requests = limits (Guaranteed QoS), workers at podMemory", () => {
    const templates = podTemplates(ev.resources);
    expect(templates.map((t) => t.owner).sort()).toEqual([
      `${T.deployment} dask-scheduler`,
      `${T.deployment} dask-worker`,
      `${T.job} dask-job-calibration`,
    ]);
    for (const { owner, template } of templates) {
      for (const c of template.spec.containers) {
        expect(c.resources.limits, owner).toEqual(c.resources.requests);
        expect(Object.keys(c.resources.limits).sort(), owner).toEqual([
          "cpu",
          "ephemeral-storage",
          "memory",
        ]);
      }
    }
    const worker = inputs(findResource(ev.resources, T.deployment, "dask-worker"));
    // Spill space follows memory: /tmp holds 2 × 16Gi, plus 256Mi for the container's logs.
    expect(worker.spec.template.spec.containers[0].resources.limits).toEqual({
      cpu: "4",
      memory: "16Gi",
      "ephemeral-storage": "33024Mi",
    });
    const scratch = worker.spec.template.spec.volumes.find((v: Obj) => v.name === "scratch");
    expect(scratch.emptyDir).toEqual({ sizeLimit: "32Gi" });
  });

  it("sets replicas and creates no HPA when autoscaling is off", () => {
    const worker = inputs(findResource(ev.resources, T.deployment, "dask-worker"));
    expect(worker.spec.replicas).toBe(3);
    expect(ofType(ev.resources, T.hpa)).toEqual([]);
  });

  it("mounts the Dask config with the configured saturation into the SCHEDULER", () => {
    const scheduler = inputs(findResource(ev.resources, T.deployment, "dask-scheduler"));
    const pod = scheduler.spec.template.spec;
    const [container] = pod.containers;
    const mount = container.volumeMounts.find((m: Obj) => m.mountPath === DASK_CONFIG_DIR);
    expect(mount).toBeDefined();
    expect(container.env).toContainEqual({ name: "DASK_CONFIG", value: DASK_CONFIG_DIR });
    const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
    const configMaps = ofType(ev.resources, T.configMap).map(inputs);
    const mounted = configMaps.find((cm) => cm.metadata.name === volume.configMap.name);
    expect(mounted).toBeDefined();
    const files = Object.values(mounted!.data as Record<string, string>);
    expect(files).toHaveLength(1);
    const dask = parseYaml(files[0]!) as Obj;
    expect(dask.distributed.scheduler["worker-saturation"]).toBe(1.25);
    // The probes use /health; the routes list replaces Dask's default, so it must keep it.
    expect(dask.distributed.scheduler.http.routes).toContain("distributed.http.health");
    expect(container.readinessProbe.httpGet.path).toBe("/health");
    expect(container.livenessProbe.httpGet.path).toBe("/health");
    // A config change must restart the scheduler: the template carries the config's checksum.
    expect(Object.keys(scheduler.spec.template.metadata.annotations)).toContain(
      "dask-workspace/dask-config-sha256",
    );
  });

  it("mounts the same Dask config in every Dask container", () => {
    for (const { owner, template } of podTemplates(ev.resources)) {
      for (const c of template.spec.containers) {
        expect(c.env, owner).toContainEqual({ name: "DASK_CONFIG", value: DASK_CONFIG_DIR });
        const mount = c.volumeMounts.find((m: Obj) => m.mountPath === DASK_CONFIG_DIR);
        expect(mount?.readOnly, owner).toBe(true);
        const volume = template.spec.volumes.find((v: Obj) => v.name === mount.name);
        expect(volume.configMap.name, owner).toBe("dask-config");
      }
    }
  });

  it("exposes the scheduler on a ClusterIP Service (comm and dashboard) with a PDB", () => {
    const scheduler = inputs(findResource(ev.resources, T.deployment, "dask-scheduler"));
    const svc = inputs(findResource(ev.resources, T.service, "dask-scheduler"));
    expect(svc.spec.type).toBe("ClusterIP");
    expect(svc.spec.ports.map((p: Obj) => p.port)).toEqual([8786, 8787]);
    expect(selects(svc.spec.selector, scheduler.spec.template.metadata.labels)).toBe(true);
    const pdb = inputs(findResource(ev.resources, T.pdb, "dask-scheduler"));
    expect(pdb.spec.minAvailable).toBe(1);
    expect(selects(pdb.spec.selector.matchLabels, scheduler.spec.template.metadata.labels)).toBe(
      true,
    );
  });

  it("retires the pod's workers in preStop, with a grace period longer than the retirement", () => {
    const worker = inputs(findResource(ev.resources, T.deployment, "dask-worker"));
    const pod = worker.spec.template.spec;
    expect(pod.containers[0].lifecycle.preStop.exec.command).toEqual([
      "sh",
      "-c",
      `exec 'python' '-m' 'dask_workspace' 'retire' '--scheduler' 'tcp://dask-scheduler.sims.svc:8786' '--name-prefix' "$POD_NAME" '--timeout' '120'`,
    ]);
    expect(pod.terminationGracePeriodSeconds).toBe(150);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(ev.cfg.workers.retireTimeoutSeconds);
  });

  it("the preStop hook, run by a real shell, executes retireCommand with the pod's name", async () => {
    // The kubelet runs exec hooks without $(VAR) expansion, so the pod name must come from the
    // shell. A stand-in `python` on PATH prints the argv it received.
    const worker = inputs(findResource(ev.resources, T.deployment, "dask-worker"));
    const [shell, flag, script] = worker.spec.template.spec.containers[0].lifecycle.preStop.exec
      .command as string[];
    const bin = await mkdtemp(join(tmpdir(), "prestop-"));
    try {
      const fake = join(bin, "python");
      await writeFile(
        fake,
        `#!${process.execPath}\nprocess.stdout.write(JSON.stringify(process.argv.slice(2)));\n`,
      );
      await chmod(fake, 0o755);
      const podName = "dask-worker-7d9f8c-x2k4q";
      const { stdout } = await execa(shell!, [flag!, script!], {
        env: { PATH: `${bin}:${process.env.PATH}`, POD_NAME: podName },
        extendEnv: false,
      });
      expect(["python", ...JSON.parse(stdout)]).toEqual(
        retireCommand({
          schedulerAddress: "tcp://dask-scheduler.sims.svc:8786",
          namePrefix: podName,
          timeoutSeconds: 120,
        }),
      );
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  it("limits the runner's RBAC to get/list/watch on pods and events", () => {
    const role = inputs(findResource(ev.resources, T.role, "dask-runner"));
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["pods", "events"], verbs: ["get", "list", "watch"] },
    ]);
    const binding = inputs(findResource(ev.resources, T.roleBinding, "dask-runner"));
    const sa = inputs(findResource(ev.resources, T.serviceAccount, "dask-runner"));
    expect(binding.roleRef).toEqual({
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: role.metadata.name,
    });
    expect(binding.subjects).toEqual([
      { kind: "ServiceAccount", name: sa.metadata.name, namespace: "sims" },
    ]);
    expect(sa.metadata.annotations).toBeUndefined(); // identity annotations only when given
    // Only Role/RoleBinding: nothing cluster-wide.
    expect(ev.resources.filter((r) => /ClusterRole/.test(r.type))).toEqual([]);
    const job = inputs(findResource(ev.resources, T.job, "dask-job-calibration"));
    expect(job.spec.template.spec.serviceAccountName).toBe(sa.metadata.name);
    // Scheduler and workers never talk to the API: no token in their pods.
    for (const name of ["dask-scheduler", "dask-worker"]) {
      const d = inputs(findResource(ev.resources, T.deployment, name));
      expect(d.spec.template.spec.automountServiceAccountToken, name).toBe(false);
    }
  });

  it("runs each job: study in a ConfigMap, runner command, skipAwait, retries and deadlines", () => {
    const job = inputs(findResource(ev.resources, T.job, "dask-job-calibration"));
    const study = inputs(findResource(ev.resources, T.configMap, "dask-study-calibration"));
    expect(job.metadata.annotations).toEqual({ "pulumi.com/skipAwait": "true" });
    expect(job.spec).toMatchObject({
      backoffLimit: 2,
      ttlSecondsAfterFinished: 3600,
      activeDeadlineSeconds: 7200,
    });
    const pod = job.spec.template.spec;
    expect(pod.restartPolicy).toBe("Never");
    const [runner] = pod.containers;
    expect(runner.image).toBe("registry.example/runner:2026.8.0");
    expect(runner.command).toEqual([
      "python",
      "-m",
      "dask_workspace",
      "run",
      "/study/study.yaml",
      "--scheduler",
      "tcp://dask-scheduler.sims.svc:8786",
      "--results",
      "az://results/calibration",
      "--mode",
      "window",
      "--window",
      "8",
      "--batch-size",
      "200",
      "--chunking",
      "auto",
      "--summary",
      "/tmp/summary.json",
    ]);
    // The study text reaches the path the command names.
    const mount = runner.volumeMounts.find((m: Obj) => m.mountPath === "/study");
    const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
    expect(volume.configMap.name).toBe(study.metadata.name);
    // The study folder is laid out under /study by the volume's items (the study bundle).
    const item = volume.configMap.items.find((i: Obj) => i.path === "study.yaml");
    const studyText = Buffer.from(study.binaryData[item.key], "base64").toString("utf8");
    expect(studyText).toBe(ev.cfg.jobs[0]!.studyText);
    expect(studyText).toContain("name: test-study");
    // An edited study changes the Job's template, so `pulumi up` replaces (re-runs) the Job.
    expect(job.spec.template.metadata.annotations["dask-workspace/study-sha256"]).toBe(
      createHash("sha256").update(studyText).digest("hex"),
    );
    expect(job.spec.template.metadata.annotations["dask-workspace/bundle-sha256"]).toBe(
      ev.cfg.jobs[0]!.bundle!.hash,
    );
    expect(ev.cfg.jobs[0]!.studyPath).toBe(TEST_STUDY);
  });

  it("denies ingress by default; scheduler comm only from workers and runners", () => {
    const policies = ofType(ev.resources, T.networkPolicy).map(inputs);
    const byName = new Map(policies.map((p) => [p.metadata.name as string, p.spec as Obj]));
    expect([...byName.keys()].sort()).toEqual([
      "dask-default-deny",
      "dask-egress-dask",
      "dask-egress-dns",
      "dask-egress-runner",
      "dask-scheduler-comm",
      "dask-scheduler-dashboard",
      "dask-worker-peers",
    ]);
    expect(byName.get("dask-default-deny")).toEqual({
      podSelector: {},
      policyTypes: ["Ingress", "Egress"],
    });

    const labels = (type: string, name: string): Record<string, string> =>
      inputs(findResource(ev.resources, type, name)).spec.template.metadata.labels;
    const schedulerPod = labels(T.deployment, "dask-scheduler");
    const workerPod = labels(T.deployment, "dask-worker");
    const runnerPod = labels(T.job, "dask-job-calibration");

    const comm = byName.get("dask-scheduler-comm")!;
    expect(selects(comm.podSelector.matchLabels, schedulerPod)).toBe(true);
    expect(selects(comm.podSelector.matchLabels, workerPod)).toBe(false);
    expect(comm.ingress).toHaveLength(1);
    expect(comm.ingress[0].ports).toEqual([{ protocol: "TCP", port: 8786 }]);
    const from = comm.ingress[0].from as Obj[];
    expect(from).toHaveLength(2);
    for (const peer of from) {
      expect(Object.keys(peer)).toEqual(["podSelector"]); // no namespaceSelector, no ipBlock
    }
    const allowed = (pod: Record<string, string>) =>
      from.some((peer) => selects(peer.podSelector.matchLabels, pod));
    expect(allowed(workerPod)).toBe(true);
    expect(allowed(runnerPod)).toBe(true);
    expect(allowed(schedulerPod)).toBe(false);
    expect(allowed({ "app.kubernetes.io/name": "something-else" })).toBe(false);

    const dashboard = byName.get("dask-scheduler-dashboard")!;
    expect(selects(dashboard.podSelector.matchLabels, schedulerPod)).toBe(true);
    // The dashboard: this workspace's runner pods only (no scheduler.dashboardFrom here).
    expect(dashboard.ingress).toHaveLength(1);
    expect(dashboard.ingress[0].ports).toEqual([{ protocol: "TCP", port: 8787 }]);
    const dashFrom = dashboard.ingress[0].from as Obj[];
    expect(dashFrom).toHaveLength(1);
    expect(selects(dashFrom[0].podSelector.matchLabels, runnerPod)).toBe(true);
    expect(selects(dashFrom[0].podSelector.matchLabels, workerPod)).toBe(false);

    const peers = byName.get("dask-worker-peers")!;
    expect(selects(peers.podSelector.matchLabels, workerPod)).toBe(true);
    const peerFrom = peers.ingress[0].from as Obj[];
    for (const pod of [schedulerPod, workerPod, runnerPod]) {
      expect(peerFrom.some((p) => selects(p.podSelector.matchLabels, pod))).toBe(true);
    }
    expect(peers.ingress[0].ports).toBeUndefined(); // workers listen on random ports
  });

  it("gives EVERY container and pod the restricted security context", () => {
    let containers = 0;
    for (const { owner, template } of podTemplates(ev.resources)) {
      const pod = template.spec;
      expect(pod.securityContext, owner).toEqual({
        runAsNonRoot: true,
        runAsUser: RUN_AS_USER,
        runAsGroup: RUN_AS_USER,
        fsGroup: RUN_AS_USER,
        seccompProfile: { type: "RuntimeDefault" },
      });
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        containers += 1;
        expect(c.securityContext, `${owner} ${c.name}`).toEqual({
          runAsNonRoot: true,
          runAsUser: RUN_AS_USER,
          runAsGroup: RUN_AS_USER,
          allowPrivilegeEscalation: false,
          privileged: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ["ALL"] },
          seccompProfile: { type: "RuntimeDefault" },
        });
        // A read-only root needs a writable /tmp (Dask's local directory lives under it).
        const tmp = c.volumeMounts.find((m: Obj) => m.mountPath === "/tmp");
        const volume = pod.volumes.find((v: Obj) => v.name === tmp?.name);
        // ... with a size limit, so spilling can never fill the node's disk.
        expect(volume?.emptyDir?.sizeLimit, `${owner} ${c.name}`).toMatch(/^\d+(Gi|Mi)$/);
      }
    }
    expect(containers).toBe(3);
    const ns = inputs(findResource(ev.resources, T.namespace, "dask-namespace"));
    expect(ns.metadata.labels["pod-security.kubernetes.io/enforce"]).toBe("restricted");
  });

  it("renders only objects that are valid against the Kubernetes OpenAPI schema", async () => {
    const objects = ev.resources.filter((r) => r.custom).map((r) => inputs(r));
    expect(objects).toHaveLength(18);
    expect(await validateManifests(objects)).toEqual([]);
  });

  it("outputs the namespace, scheduler address and dashboard port", async () => {
    expect(await unwrap(ev.workspace.namespace)).toBe("sims");
    expect(await unwrap(ev.workspace.schedulerAddress)).toBe("tcp://dask-scheduler.sims.svc:8786");
    expect(await unwrap(ev.workspace.dashboardPort)).toBe(8787);
  });
});

describe("DaskWorkspace (autoscaled workers)", () => {
  let ev: Evaluated;
  beforeAll(async () => {
    ev = await evaluate(workspaceConfig(AUTOSCALED_RAW));
  });

  it("leaves `replicas` out of the worker Deployment: the HPA owns it", () => {
    const worker = inputs(findResource(ev.resources, T.deployment, "dask-worker"));
    expect(Object.keys(worker.spec)).not.toContain("replicas");
    // The scheduler keeps its fixed single replica.
    const scheduler = inputs(findResource(ev.resources, T.deployment, "dask-scheduler"));
    expect(scheduler.spec.replicas).toBe(1);
  });

  it("creates an autoscaling/v2 HPA on the workers with slow, rate-limited scale-down", () => {
    const hpa = inputs(findResource(ev.resources, T.hpa, "dask-worker"));
    expect(hpa.apiVersion).toBe("autoscaling/v2");
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: "dask-worker",
    });
    expect(hpa.spec.minReplicas).toBe(2);
    expect(hpa.spec.maxReplicas).toBe(10);
    expect(hpa.spec.metrics).toEqual([
      {
        type: "Resource",
        resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } },
      },
    ]);
    expect(hpa.spec.behavior.scaleDown).toEqual({
      stabilizationWindowSeconds: 900,
      selectPolicy: "Min",
      policies: [{ type: "Pods", value: 1, periodSeconds: 240 }],
    });
  });

  it("puts saturation inf on the scheduler", () => {
    const cm = inputs(findResource(ev.resources, T.configMap, "dask-config"));
    const dask = parseYaml(Object.values(cm.data as Record<string, string>)[0]!) as Obj;
    expect(dask.distributed.scheduler["worker-saturation"]).toBe("inf");
  });

  it("stays schema-valid", async () => {
    const objects = ev.resources.filter((r) => r.custom).map((r) => inputs(r));
    expect(objects.map((o) => o.kind)).toContain("HorizontalPodAutoscaler");
    expect(await validateManifests(objects)).toEqual([]);
  });
});

describe("DaskWorkspace target hooks (provider, placement, workload identity)", () => {
  let ev: Evaluated;
  let providerUrn: string;
  beforeAll(async () => {
    const k8s = await import("@pulumi/kubernetes");
    const { result: provider } = await recordDuring(
      recording,
      () => new k8s.Provider("target-cluster", { context: "kind-dask" }),
    );
    providerUrn = await unwrap(provider.urn);
    ev = await evaluate(workspaceConfig(STATIC_RAW), {
      provider,
      nodePlacement: {
        workers: {
          nodeSelector: { agentpool: "workers" },
          tolerations: [
            {
              key: "kubernetes.azure.com/scalesetpriority",
              operator: "Equal",
              value: "spot",
              effect: "NoSchedule",
            },
          ],
        },
        jobs: { nodeSelector: { agentpool: "workers" } },
      },
      runnerServiceAccountAnnotations: {
        "azure.workload.identity/client-id": pulumi.output("00000000-0000-0000-0000-000000000001"),
      },
      jobPodLabels: { "azure.workload.identity/use": "true" },
      images: {
        dask: pulumi.output("daskacr.azurecr.io/dask-workspace/dask:2026.8.0"),
        runner: pulumi.output("daskacr.azurecr.io/dask-workspace/runner:2026.8.0"),
      },
      runnerEnv: { AZURE_STORAGE_ACCOUNT_NAME: pulumi.output("dasksa") },
    });
  });

  it("creates every Kubernetes object with the given provider", () => {
    const objects = ev.resources.filter((r) => r.type.startsWith("kubernetes:"));
    expect(objects).toHaveLength(18);
    for (const r of objects) {
      expect(r.provider?.startsWith(`${providerUrn}::`), `${r.type} ${r.name}`).toBe(true);
    }
  });

  it("places workers and jobs, and leaves the scheduler unplaced", () => {
    const worker = inputs(findResource(ev.resources, T.deployment, "dask-worker")).spec.template;
    expect(worker.spec.nodeSelector).toEqual({ agentpool: "workers" });
    expect(worker.spec.tolerations).toHaveLength(1);
    const job = inputs(findResource(ev.resources, T.job, "dask-job-calibration")).spec.template;
    expect(job.spec.nodeSelector).toEqual({ agentpool: "workers" });
    expect(job.spec.tolerations).toBeUndefined();
    const scheduler = inputs(findResource(ev.resources, T.deployment, "dask-scheduler")).spec
      .template;
    expect(scheduler.spec.nodeSelector).toBeUndefined();
    expect(scheduler.spec.tolerations).toBeUndefined();
  });

  it("annotates the runner ServiceAccount and labels job pods for workload identity", () => {
    const sa = inputs(findResource(ev.resources, T.serviceAccount, "dask-runner"));
    expect(sa.metadata.annotations).toEqual({
      "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001",
    });
    const job = inputs(findResource(ev.resources, T.job, "dask-job-calibration"));
    expect(job.spec.template.metadata.labels["azure.workload.identity/use"]).toBe("true");
    expect(job.spec.template.spec.containers[0].env).toContainEqual({
      name: "AZURE_STORAGE_ACCOUNT_NAME",
      value: "dasksa",
    });
  });

  it("uses the given images (e.g. in the stack's registry) in every pod", () => {
    const image = (type: string, name: string) =>
      inputs(findResource(ev.resources, type, name)).spec.template.spec.containers[0].image;
    expect(image(T.deployment, "dask-scheduler")).toBe(
      "daskacr.azurecr.io/dask-workspace/dask:2026.8.0",
    );
    expect(image(T.deployment, "dask-worker")).toBe(
      "daskacr.azurecr.io/dask-workspace/dask:2026.8.0",
    );
    expect(image(T.job, "dask-job-calibration")).toBe(
      "daskacr.azurecr.io/dask-workspace/runner:2026.8.0",
    );
  });
});
