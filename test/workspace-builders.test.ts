/** The pure decisions behind the DaskWorkspace objects, tested without Pulumi. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { autoscalerBehaviour } from "../infra/workspace/autoscaling.js";
import { imageVersion, recommendedLabels, selectorLabels } from "../infra/workspace/labels.js";
import { placementFields } from "../infra/workspace/placement.js";
import {
  localResultsMountPath,
  runnerRoleRules,
  studyFileName,
} from "../infra/workspace/runner.js";
import { workerGracePeriodSeconds } from "../infra/workspace/workers.js";

/** Kubernetes label value syntax (63 chars, alphanumeric ends, `-_.` inside). */
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)$/;

describe("imageVersion (app.kubernetes.io/version)", () => {
  it.each([
    ["registry.example/dask:2026.8.0", "2026.8.0"],
    ["dask-workspace/dask:0.1.0@sha256:" + "a".repeat(64), "0.1.0"],
    ["localhost:5000/dask", undefined], // a registry port is not a tag
    ["dask@sha256:" + "b".repeat(64), undefined],
    ["dask:latest", "latest"],
    ["dask:" + "x".repeat(64), undefined], // too long for a label value
    ["dask:-bad", undefined],
  ])("%s → %s", (image, version) => {
    expect(imageVersion(image)).toBe(version);
  });

  it("never returns something that is not a valid label value", () => {
    fc.assert(
      fc.property(fc.string(), (image) => {
        const v = imageVersion(image);
        return v === undefined || LABEL_VALUE.test(v);
      }),
    );
  });
});

describe("labels", () => {
  it("selectors are a subset of the full labels and never carry the version", () => {
    const full = recommendedLabels("dask", "worker", "dask:1.2.3");
    const selector = selectorLabels("dask", "worker");
    expect(full).toMatchObject(selector);
    expect(full["app.kubernetes.io/version"]).toBe("1.2.3");
    expect(Object.keys(selector)).not.toContain("app.kubernetes.io/version");
  });
});

describe("workerGracePeriodSeconds", () => {
  it("leaves the retirement its full timeout plus the shutdown margin", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3600 }), (timeout) => {
        expect(workerGracePeriodSeconds(timeout)).toBe(timeout + 30);
      }),
    );
  });
});

describe("studyFileName", () => {
  it.each([
    ["examples/studies/sir-grid.yaml", "sir-grid.yaml"],
    ["studies\\calibration.json", "calibration.json"],
    ["my study.yaml", "study.yaml"], // a space is not allowed in a ConfigMap key
    ["studies/é.json", "study.json"],
  ])("%s → %s", (path, name) => {
    expect(studyFileName(path)).toBe(name);
  });
});

describe("localResultsMountPath", () => {
  it.each([
    ["az://results/sir", undefined],
    ["/results/sir-grid", "/results/sir-grid"],
    ["/results//sir/../x", "/results/x"],
    ["/tmp/results", undefined], // already on the scratch volume
    ["results/sir", undefined], // relative to the working directory /tmp
  ])("%s → %s", (uri, mount) => {
    expect(localResultsMountPath(uri)).toBe(mount);
  });
});

describe("runner RBAC", () => {
  it("reads only: every verb is get, list or watch", () => {
    for (const rule of runnerRoleRules()) {
      expect(rule.verbs).toEqual(["get", "list", "watch"]);
    }
  });
});

describe("placementFields", () => {
  it("renders nothing for an empty placement", () => {
    expect(placementFields(undefined)).toEqual({});
    expect(placementFields({ nodeSelector: {}, tolerations: [] })).toEqual({});
  });
});

describe("autoscalerBehaviour", () => {
  it("rate-limits scale-down by pods per period after the stabilization window", () => {
    expect(
      autoscalerBehaviour({
        enabled: true,
        minReplicas: 1,
        maxReplicas: 4,
        targetCpuUtilization: 80,
        scaleDown: { stabilizationWindowSeconds: 600, podsPerPeriod: 2, periodSeconds: 300 },
      }),
    ).toEqual({
      scaleDown: {
        stabilizationWindowSeconds: 600,
        selectPolicy: "Min",
        policies: [{ type: "Pods", value: 2, periodSeconds: 300 }],
      },
    });
  });
});
