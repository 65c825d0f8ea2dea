import { describe, expect, it } from "vitest";
import {
  checkChanges,
  checkCreates,
  checkReady,
  podReadiness,
  type Pod,
  countByType,
  parseRule,
  parseUrn,
  type PreviewDigest,
} from "./checks.js";

const STACK = "urn:pulumi:local::dask-workspace";
const WORKSPACE = "dask-workspace:index:DaskWorkspace";
const workerUrn = `${STACK}::${WORKSPACE}$kubernetes:apps/v1:Deployment::dask-workers`;
const schedulerUrn = `${STACK}::${WORKSPACE}$kubernetes:apps/v1:Deployment::dask-scheduler`;
const configMapUrn = `${STACK}::${WORKSPACE}$kubernetes:core/v1:ConfigMap::dask-config`;
const hpaUrn = `${STACK}::${WORKSPACE}$kubernetes:autoscaling/v2:HorizontalPodAutoscaler::dask-workers`;

const workerRule = parseRule("kubernetes:apps/v1:Deployment@worker=update");
const configRule = parseRule("kubernetes:core/v1:ConfigMap@config=update,replace");

describe("parseUrn", () => {
  it("takes the innermost type of a child resource and the logical name", () => {
    expect(parseUrn(workerUrn)).toEqual({
      type: "kubernetes:apps/v1:Deployment",
      name: "dask-workers",
    });
  });

  it("reads a top-level resource and a name that contains '::'", () => {
    expect(parseUrn(`${STACK}::pulumi:providers:kubernetes::default::4_34_2`)).toEqual({
      type: "pulumi:providers:kubernetes",
      name: "default::4_34_2",
    });
  });

  it("rejects text that is not a URN", () => {
    expect(() => parseUrn("dask-workers")).toThrow(/not a Pulumi URN/);
  });
});

describe("parseRule", () => {
  it("splits type, name part and ops", () => {
    expect(configRule).toEqual({
      type: "kubernetes:core/v1:ConfigMap",
      namePart: "config",
      ops: ["update", "replace"],
    });
  });

  it("names the accepted form on bad input", () => {
    expect(() => parseRule("Deployment=update")).toThrow(/TYPE_TOKEN@NAME_PART=OP/);
  });
});

describe("checkChanges", () => {
  it("accepts a preview whose steps are all 'same' when nothing is expected", () => {
    const digest: PreviewDigest = {
      steps: [
        { op: "same", urn: workerUrn },
        { op: "same", urn: hpaUrn },
      ],
    };
    const report = checkChanges(digest, [], []);
    expect(report).toEqual({ ok: true, changes: [], problems: [] });
  });

  it("flags a perpetual diff, naming the resource and the changed paths", () => {
    const digest: PreviewDigest = {
      steps: [
        { op: "update", urn: workerUrn, detailedDiff: { "spec.replicas": { kind: "update" } } },
        { op: "same", urn: hpaUrn },
      ],
    };
    const report = checkChanges(digest, [], []);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      "unexpected change: update kubernetes:apps/v1:Deployment dask-workers [spec.replicas]",
    ]);
  });

  it("accepts exactly the required worker update plus a tolerated ConfigMap replacement", () => {
    const digest: PreviewDigest = {
      steps: [
        { op: "update", urn: workerUrn, detailedDiff: { "spec.template": { kind: "update" } } },
        { op: "replace", urn: configMapUrn },
        { op: "same", urn: schedulerUrn },
      ],
    };
    const report = checkChanges(digest, [workerRule], [configRule]);
    expect(report.ok).toBe(true);
    expect(report.changes.map((c) => `${c.op} ${c.name}`)).toEqual([
      "update dask-workers",
      "replace dask-config",
    ]);
  });

  it("fails when the required change is missing", () => {
    const digest: PreviewDigest = { steps: [{ op: "same", urn: workerUrn }] };
    const report = checkChanges(digest, [workerRule], []);
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toMatch(
      /expected a change \(update\) of kubernetes:apps\/v1:Deployment/,
    );
  });

  it("fails when the worker Deployment would be replaced instead of updated", () => {
    const digest: PreviewDigest = { steps: [{ op: "replace", urn: workerUrn }] };
    const report = checkChanges(digest, [workerRule], []);
    expect(report.ok).toBe(false);
    expect(report.problems).toHaveLength(2);
  });

  it("fails when another resource changes too", () => {
    const digest: PreviewDigest = {
      steps: [
        { op: "update", urn: workerUrn },
        { op: "update", urn: schedulerUrn },
      ],
    };
    const report = checkChanges(digest, [workerRule], [configRule]);
    expect(report.problems).toEqual([
      "unexpected change: update kubernetes:apps/v1:Deployment dask-scheduler",
    ]);
  });
});

describe("countByType", () => {
  it("counts resources per type, sorted by type", () => {
    expect(
      countByType({
        deployment: {
          resources: [
            { type: "kubernetes:apps/v1:Deployment" },
            { type: "pulumi:pulumi:Stack" },
            { type: "kubernetes:apps/v1:Deployment" },
          ],
        },
      }),
    ).toEqual([
      ["kubernetes:apps/v1:Deployment", 2],
      ["pulumi:pulumi:Stack", 1],
    ]);
  });

  it("returns nothing for an empty stack", () => {
    expect(countByType({ deployment: {} })).toEqual([]);
  });
});

describe("checkCreates", () => {
  it("counts the creates of a first preview by type", () => {
    const report = checkCreates({
      steps: [
        { op: "create", urn: workerUrn },
        { op: "create", urn: schedulerUrn },
        { op: "create", urn: hpaUrn },
      ],
    });
    expect(report.ok).toBe(true);
    expect(report.byType).toEqual([
      ["kubernetes:apps/v1:Deployment", 2],
      ["kubernetes:autoscaling/v2:HorizontalPodAutoscaler", 1],
    ]);
  });

  it("fails on anything but creates, and on an empty preview", () => {
    expect(checkCreates({ steps: [{ op: "update", urn: workerUrn }] }).problems).toEqual([
      "not a create on an empty stack: update kubernetes:apps/v1:Deployment dask-workers",
    ]);
    expect(checkCreates({ steps: [] }).problems).toEqual(["the preview creates nothing"]);
  });
});

describe("podReadiness and checkReady", () => {
  const pod = (
    name: string,
    component: string | undefined,
    ready: boolean,
    phase = "Running",
  ): Pod => ({
    metadata: {
      name,
      ...(component === undefined ? {} : { labels: { "app.kubernetes.io/component": component } }),
    },
    status: { phase, conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
  });

  it("groups pods by component and counts the Ready and finished ones", () => {
    const pods = podReadiness([
      pod("w1", "worker", true),
      pod("w2", "worker", false, "Pending"),
      pod("s1", "scheduler", true),
      pod("j1", "runner", false, "Succeeded"),
      pod("x", undefined, true),
    ]);
    expect(pods).toEqual([
      { component: "<none>", total: 1, ready: 1, succeeded: 0 },
      { component: "runner", total: 1, ready: 0, succeeded: 1 },
      { component: "scheduler", total: 1, ready: 1, succeeded: 0 },
      { component: "worker", total: 2, ready: 1, succeeded: 0 },
    ]);
  });

  it("leaves out pods that are being deleted", () => {
    const leaving: Pod = {
      ...pod("old", "worker", true),
      metadata: {
        name: "old",
        labels: { "app.kubernetes.io/component": "worker" },
        deletionTimestamp: "2026-11-22T00:00:00Z",
      },
    };
    expect(podReadiness([leaving, pod("new", "worker", true)])).toEqual([
      { component: "worker", total: 1, ready: 1, succeeded: 0 },
    ]);
  });

  it("passes when each component has exactly the expected Ready pods", () => {
    const pods = podReadiness([pod("w1", "worker", true), pod("w2", "worker", true)]);
    expect(checkReady(pods, { worker: 2 })).toEqual([]);
  });

  it("names the component and the counts when pods are missing or not Ready", () => {
    const pods = podReadiness([pod("w1", "worker", true), pod("w2", "worker", false)]);
    expect(checkReady(pods, { worker: 2, scheduler: 1 })).toEqual([
      "expected 2 Ready worker pod(s), found 1 Ready of 2",
      "expected 1 Ready scheduler pod(s), found 0 Ready of 0",
    ]);
  });
});
