/**
 * Autoscaling mode dask under Pulumi mocks: the KEDA ScaledObject (validated against the CRD
 * schema of the pinned KEDA release), no CPU HPA beside it, the deletion-cost updater and its
 * RBAC, the NetworkPolicies, KEDA's Helm release, and the optional PodMonitor.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { KEDA_VERSION } from "../infra/config-autoscaling.js";
import { daskConfig } from "../infra/dask.js";
import { CRD_DIR, validateCustomResource } from "../infra/render/crd-validate.js";
import { validateManifests } from "../infra/render/validate.js";
import type { WorkspaceConfig } from "../infra/types.js";
import { scaledObject, scalingPolicy } from "../infra/workspace/keda.js";
import { workspaceNames } from "../infra/workspace/labels.js";
import { hpaBehavior } from "../infra/workspace/scaling-decision.js";
import type * as WorkspaceModule from "../infra/workspace/index.js";
import { AUTOSCALED_RAW, STATIC_RAW, workspaceConfig } from "./helpers/config.js";
import {
  findResource,
  inputs,
  installRecordingMocks,
  type Obj,
  ofType,
  type RecordedResource,
  recordDuring,
  type RecordingMocks,
} from "./helpers/pulumi.js";

const T = {
  scaledObject: "kubernetes:keda.sh/v1alpha1:ScaledObject",
  podMonitor: "kubernetes:monitoring.coreos.com/v1:PodMonitor",
  hpa: "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
  deployment: "kubernetes:apps/v1:Deployment",
  role: "kubernetes:rbac.authorization.k8s.io/v1:Role",
  networkPolicy: "kubernetes:networking.k8s.io/v1:NetworkPolicy",
  configMap: "kubernetes:core/v1:ConfigMap",
  release: "kubernetes:helm.sh/v3:Release",
} as const;

/** The autoscaled test workspace in mode dask: 4 processes per pod, 0..10 pods. */
const DASK_RAW: Record<string, unknown> = {
  ...AUTOSCALED_RAW,
  autoscaling: {
    enabled: true,
    mode: "dask",
    minReplicas: 0,
    maxReplicas: 10,
    scaleDown: { stabilizationWindowSeconds: 900, podsPerPeriod: 1, periodSeconds: 240 },
  },
};

let recording: RecordingMocks;
let workspaceModule: typeof WorkspaceModule;

beforeAll(async () => {
  recording = await installRecordingMocks("test");
  workspaceModule = await import("../infra/workspace/index.js");
});

async function evaluate(cfg: WorkspaceConfig): Promise<RecordedResource[]> {
  const { resources } = await recordDuring(
    recording,
    () => new workspaceModule.DaskWorkspace("dask", { config: cfg }),
  );
  return resources;
}

describe("mode dask: the KEDA ScaledObject", () => {
  let resources: RecordedResource[];
  let cfg: WorkspaceConfig;
  beforeAll(async () => {
    cfg = workspaceConfig(DASK_RAW);
    resources = await evaluate(cfg);
  });

  it("scales the worker Deployment on the scheduler's desired workers and busy pods", () => {
    const so = inputs(findResource(resources, T.scaledObject, "dask-worker"));
    expect(so.apiVersion).toBe("keda.sh/v1alpha1");
    expect(so.spec.scaleTargetRef).toEqual({
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: "dask-worker",
    });
    expect(so.spec.minReplicaCount).toBe(0);
    expect(so.spec.maxReplicaCount).toBe(10);
    expect(so.spec.cooldownPeriod).toBe(900);
    expect(so.spec.pollingInterval).toBe(15);
    expect(so.spec.triggers).toEqual([
      {
        type: "metrics-api",
        name: "desired-workers",
        metricType: "AverageValue",
        metadata: {
          url: "http://dask-scheduler.sims.svc:8787/metrics",
          format: "prometheus",
          valueLocation: "dask_scheduler_desired_workers",
          targetValue: "4",
          activationTargetValue: "0",
        },
      },
      {
        type: "metrics-api",
        name: "busy-pods",
        metricType: "AverageValue",
        metadata: {
          url: "http://dask-scheduler.sims.svc:8787/workspace/metrics",
          format: "prometheus",
          valueLocation: "dask_workspace_busy_pods",
          targetValue: "1",
          activationTargetValue: "0",
        },
      },
    ]);
  });

  it("takes the HPA behaviour from the same policy the decision function uses", () => {
    const so = inputs(findResource(resources, T.scaledObject, "dask-worker"));
    expect(so.spec.advanced.horizontalPodAutoscalerConfig.behavior).toEqual(
      hpaBehavior(scalingPolicy(cfg)),
    );
    expect(so.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown).toEqual({
      stabilizationWindowSeconds: 900,
      selectPolicy: "Min",
      policies: [{ type: "Pods", value: 1, periodSeconds: 240 }],
    });
  });

  it("never puts a CPU HPA beside the ScaledObject, and leaves replicas to KEDA", () => {
    expect(ofType(resources, T.hpa)).toEqual([]);
    const worker = inputs(findResource(resources, T.deployment, "dask-worker"));
    expect(Object.keys(worker.spec)).not.toContain("replicas");
  });

  it("is valid against KEDA's own CRD schema, like every other object against its schema", async () => {
    const objects = resources.filter((r) => r.custom).map((r) => inputs(r));
    expect(objects.map((o) => o.kind)).toContain("ScaledObject");
    expect(await validateManifests(objects)).toEqual([]);
  });

  it("loads the scaling routes on the scheduler, with the processes per pod", () => {
    const cm = inputs(findResource(resources, T.configMap, "dask-config"));
    const dask = parseYaml(Object.values(cm.data as Record<string, string>)[0]!) as Obj;
    expect(dask.distributed.scheduler.http.routes).toContain("dask_workspace.scaling_metrics");
    expect(dask.workspace.autoscaling["processes-per-pod"]).toBe(4);
  });

  it("lets KEDA's namespace reach the scheduler's HTTP port, and nothing more", () => {
    const np = inputs(findResource(resources, T.networkPolicy, "dask-scheduler-keda"));
    expect(np.spec.ingress).toEqual([
      {
        from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "keda" } } }],
        ports: [{ protocol: "TCP", port: 8787 }],
      },
    ]);
  });

  it("runs the deletion-cost updater with a Role that can only get, list and patch pods", () => {
    const role = inputs(findResource(resources, T.role, "dask-deletion-cost"));
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "patch"] },
    ]);
    const dep = inputs(findResource(resources, T.deployment, "dask-deletion-cost"));
    const pod = dep.spec.template.spec;
    expect(pod.serviceAccountName).toBe("dask-deletion-cost");
    expect(pod.containers[0].command).toEqual([
      "python",
      "-m",
      "dask_workspace",
      "deletion-cost",
      "--pods-url",
      "http://dask-scheduler.sims.svc:8787/workspace/pods.json",
      "--namespace",
      "sims",
    ]);
    // The worker pods, which run user code, still get no API token.
    const worker = inputs(findResource(resources, T.deployment, "dask-worker"));
    expect(worker.spec.template.spec.automountServiceAccountToken).toBe(false);
  });

  it("installs no KEDA unless asked", () => {
    expect(ofType(resources, T.release)).toEqual([]);
  });
});

describe("mode dask extras", () => {
  it("installs KEDA from its Helm chart at the pinned version with installKeda", async () => {
    const raw = {
      ...DASK_RAW,
      autoscaling: { ...(DASK_RAW.autoscaling as object), installKeda: true },
    };
    const resources = await evaluate(workspaceConfig(raw));
    const release = inputs(findResource(resources, T.release, "dask-keda"));
    expect(release.chart).toBe("keda");
    expect(release.version).toBe(KEDA_VERSION);
    expect(release.namespace).toBe("keda");
    expect(release.repositoryOpts).toEqual({ repo: "https://kedacore.github.io/charts" });
  });

  it("renders a PodMonitor for the scheduler, valid against the prometheus-operator CRD", async () => {
    const resources = await evaluate(
      workspaceConfig({ ...STATIC_RAW, monitoring: { prometheus: true, interval: "15s" } }),
    );
    const pm = inputs(findResource(resources, T.podMonitor, "dask-scheduler"));
    expect(pm.spec.podMetricsEndpoints).toEqual([
      { port: "http-dashboard", path: "/metrics", interval: "15s" },
      { port: "http-dashboard", path: "/workspace/metrics", interval: "15s" },
    ]);
    expect(await validateManifests([pm])).toEqual([]);
    const np = inputs(findResource(resources, T.networkPolicy, "dask-scheduler-prometheus"));
    expect(np.spec.ingress[0].from).toEqual([
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } },
    ]);
  });

  it("lets the deletion-cost updater through the egress and dashboard policies (and only in mode dask)", async () => {
    const selector = {
      "app.kubernetes.io/name": "dask",
      "app.kubernetes.io/instance": "dask",
      "app.kubernetes.io/component": "deletion-cost",
    };
    const resources = await evaluate(workspaceConfig(DASK_RAW));
    const dc = inputs(findResource(resources, T.deployment, "dask-deletion-cost"));
    expect(dc.spec.template.metadata.labels).toMatchObject(selector);
    const egress = inputs(findResource(resources, T.networkPolicy, "dask-egress-deletion-cost"));
    expect(egress.spec.podSelector).toEqual({ matchLabels: selector });
    expect(egress.spec.egress[0].ports).toEqual([
      { protocol: "TCP", port: 443 },
      { protocol: "TCP", port: 6443 },
    ]);
    const dashboard = inputs(findResource(resources, T.networkPolicy, "dask-scheduler-dashboard"));
    expect(dashboard.spec.ingress[0].from).toContainEqual({
      podSelector: { matchLabels: selector },
    });

    const cpu = await evaluate(workspaceConfig(AUTOSCALED_RAW));
    expect(ofType(cpu, T.networkPolicy).map((r) => r.name)).not.toContain(
      "dask-egress-deletion-cost",
    );
    const cpuDashboard = inputs(findResource(cpu, T.networkPolicy, "dask-scheduler-dashboard"));
    expect(cpuDashboard.spec.ingress[0].from).not.toContainEqual({
      podSelector: { matchLabels: selector },
    });
  });

  it("keeps mode cpu stacks exactly as before: a CPU HPA, no ScaledObject, no extra routes", async () => {
    const cfg = workspaceConfig(AUTOSCALED_RAW);
    expect(cfg.autoscaling.mode).toBe("cpu");
    const resources = await evaluate(cfg);
    expect(ofType(resources, T.hpa)).toHaveLength(1);
    expect(ofType(resources, T.scaledObject)).toEqual([]);
    expect(
      ofType(resources, "kubernetes:apps/v1:Deployment")
        .map((r) => r.name)
        .sort(),
    ).toEqual(["dask-scheduler", "dask-worker"]);
    const dask = daskConfig(cfg) as Obj;
    expect(dask.workspace).toBeUndefined();
    expect(dask.distributed.scheduler.http.routes).not.toContain("dask_workspace.scaling_metrics");
  });
});

describe("the CRD schema check catches what the API server would silently prune", () => {
  const good = () =>
    scaledObject({
      cfg: workspaceConfig(DASK_RAW),
      instance: "dask",
      names: workspaceNames("dask"),
    }) as Obj;

  it("accepts the rendered ScaledObject", () => {
    expect(validateCustomResource(good())).toEqual([]);
  });

  it("rejects a misspelt field, a wrong type and a missing required field", () => {
    const typo = good();
    typo.spec.cooldownPeriods = typo.spec.cooldownPeriod;
    expect(validateCustomResource(typo)).toEqual([
      expect.objectContaining({ path: "/spec", message: 'has unknown field "cooldownPeriods"' }),
    ]);
    const wrongType = good();
    wrongType.spec.minReplicaCount = "0";
    expect(validateCustomResource(wrongType)?.[0]).toMatchObject({
      path: "/spec/minReplicaCount",
      message: "must be integer",
    });
    const missing = good();
    delete missing.spec.scaleTargetRef;
    expect(validateCustomResource(missing)?.[0]?.message).toContain("scaleTargetRef");
  });

  it("uses the CRD of the pinned KEDA release", () => {
    const crd = parseYaml(
      fs.readFileSync(path.join(CRD_DIR, "keda.sh_scaledobjects.yaml"), "utf8"),
    ) as Obj;
    expect(crd.metadata.name).toBe("scaledobjects.keda.sh");
    expect(crd.metadata.annotations["controller-gen.kubebuilder.io/version"]).toBeDefined();
    expect(fs.readFileSync(path.join(CRD_DIR, "PROVENANCE.md"), "utf8")).toContain(
      `github.com/kedacore/keda/v2@v${KEDA_VERSION}`,
    );
  });
});
