/**
 * The Pulumi program (infra/index.ts) under mocks, target kubernetes with an explicit kubeconfig
 * context: the stack config flows through loadConfig into the workspace, on an explicit provider.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { toRuntimeConfig } from "../infra/render/mocks.js";
import { STATIC_RAW } from "./helpers/config.js";
import {
  inputs,
  installRecordingMocks,
  ofType,
  type RecordedResource,
  settle,
  unwrap,
} from "./helpers/pulumi.js";

let resources: RecordedResource[];
let program: Record<string, unknown>;

beforeAll(async () => {
  const recording = await installRecordingMocks("ci");
  pulumi.runtime.setAllConfig(
    toRuntimeConfig({ ...STATIC_RAW, kubeconfig: "/home/me/.kube/lab", context: "kind-dask" }),
  );
  program = (await import("../infra/index.js")).default as unknown as Record<string, unknown>;
  await settle();
  resources = recording.resources;
});

describe("infra/index.ts, target kubernetes with kubeconfig and context", () => {
  it("creates one Kubernetes provider from the stack's kubeconfig and context", () => {
    const providers = ofType(resources, "pulumi:providers:kubernetes");
    expect(providers).toHaveLength(1);
    expect(providers[0]!.name).toBe("kubernetes");
    expect(inputs(providers[0]!)).toMatchObject({
      kubeconfig: "/home/me/.kube/lab",
      context: "kind-dask",
    });
  });

  it("puts every Kubernetes object on that provider, and creates nothing on Azure", () => {
    const objects = resources.filter((r) => r.custom && r.type.startsWith("kubernetes:"));
    expect(objects).toHaveLength(18); // 15 + the three egress policies (DNS, Dask, runner)
    for (const r of objects) {
      expect(r.provider, `${r.type} ${r.name}`).toMatch(
        /^urn:pulumi:ci::dask-workspace::pulumi:providers:kubernetes::kubernetes::/,
      );
    }
    expect(resources.filter((r) => r.type.startsWith("azure-native:"))).toEqual([]);
  });

  it("builds the workspace from the stack config (named dask, in the configured namespace)", () => {
    const components = resources.filter((r) => r.type === "dask-workspace:workspace:DaskWorkspace");
    expect(components.map((c) => c.name)).toEqual(["dask"]);
    const worker = resources.find(
      (r) => r.type === "kubernetes:apps/v1:Deployment" && r.name === "dask-worker",
    )!;
    expect(inputs(worker).metadata.namespace).toBe("sims");
    expect(inputs(worker).spec.replicas).toBe(3);
  });

  it("exports namespace, schedulerAddress and dashboardPort", async () => {
    expect(await unwrap(program.namespace as pulumi.Output<string>)).toBe("sims");
    expect(await unwrap(program.schedulerAddress as pulumi.Output<string>)).toBe(
      "tcp://dask-scheduler.sims.svc:8786",
    );
    expect(await unwrap(program.dashboardPort as pulumi.Output<number>)).toBe(8787);
    // Only these: Azure-only outputs are left out (an undefined output draws a Pulumi warning).
    expect(Object.keys(program).sort()).toEqual(["dashboardPort", "namespace", "schedulerAddress"]);
  });
});
