/**
 * The autoscaling mode keys (infra/config-autoscaling.ts) through the real parseWorkspaceConfig:
 * defaults that keep every existing stack's meaning, and a clear error for every invalid
 * combination.
 */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseWorkspaceConfig, type ParseResult } from "../infra/config.js";
import { KEDA_VERSION } from "../infra/config-autoscaling.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const AZURE = { target: "azure", azure: { location: "westeurope" } };

function parse(raw: Record<string, unknown>): ParseResult {
  return parseWorkspaceConfig(raw, { baseDir: ROOT, stack: "test" });
}
function ok(raw: Record<string, unknown>) {
  const r = parse(raw);
  if (!r.ok) throw new Error(r.problems.map((p) => `${p.path}: ${p.message}`).join("\n"));
  return r;
}
function problems(raw: Record<string, unknown>): string[] {
  const r = parse(raw);
  if (r.ok) throw new Error(`accepted: ${JSON.stringify(raw)}`);
  return r.problems.map((p) => `${p.path}: ${p.message}`);
}

describe("autoscaling.mode defaults", () => {
  it("is dask on target azure, with minReplicas 0 and KEDA's namespace kube-system", () => {
    const a = ok({ ...AZURE, autoscaling: { enabled: true, maxReplicas: 4 } }).config.autoscaling;
    expect(a.mode).toBe("dask");
    expect(a.minReplicas).toBe(0);
    expect(a.maxReplicas).toBe(4);
    expect(a.dask).toEqual({
      scaleUp: { stabilizationWindowSeconds: 0, podsPerPeriod: 4, periodSeconds: 15 },
      activationProcesses: 0,
      pollingSeconds: 15,
      installKeda: false,
      kedaNamespace: "kube-system",
    });
  });

  it("warns when the worker pool keeps nodes that an idle workspace does not need", () => {
    const r = ok({ ...AZURE, autoscaling: { enabled: true, maxReplicas: 4 } });
    expect(r.warnings).toContain(
      "autoscaling.minReplicas: 0 lets the workers go to zero, but azure.workerPool.minCount 1 keeps that many worker nodes running (and billed); set azure.workerPool.minCount: 0 so the cluster autoscaler removes idle nodes",
    );
    const zero = ok({
      target: "azure",
      azure: { location: "westeurope", workerPool: { minCount: 0 } },
      autoscaling: { enabled: true, maxReplicas: 4 },
    });
    expect(zero.warnings.join("\n")).not.toContain("workerPool.minCount");
  });

  it("keeps cpu for a stack that sets targetCpuUtilization and no mode, on azure too", () => {
    const a = ok({ ...AZURE, autoscaling: { enabled: true, targetCpuUtilization: 70 } }).config
      .autoscaling;
    expect(a.mode).toBe("cpu");
    expect(a.minReplicas).toBe(1);
    expect(a.targetCpuUtilization).toBe(70);
  });

  it("is cpu on target kubernetes (KEDA may be absent there), with the old defaults", () => {
    const a = ok({ autoscaling: { enabled: true } }).config.autoscaling;
    expect(a.mode).toBe("cpu");
    expect(a.minReplicas).toBe(1);
    expect(a.targetCpuUtilization).toBe(80);
  });

  it("takes an explicit mode dask on kubernetes and says in a warning what KEDA it needs", () => {
    const r = ok({ autoscaling: { enabled: true, mode: "dask", maxReplicas: 3 } });
    expect(r.config.autoscaling.mode).toBe("dask");
    expect(r.config.autoscaling.dask?.kedaNamespace).toBe("keda");
    expect(r.warnings.join("\n")).toContain(
      `autoscaling.mode: dask needs KEDA ${KEDA_VERSION.split(".").slice(0, 2).join(".")}+ on the cluster`,
    );
    expect(r.warnings.join("\n")).toContain("autoscaling.installKeda: true");
    const installed = ok({
      autoscaling: { enabled: true, mode: "dask", maxReplicas: 3, installKeda: true },
    });
    expect(installed.warnings.join("\n")).not.toContain("needs KEDA");
    expect(installed.config.autoscaling.dask?.installKeda).toBe(true);
  });

  it("reads monitoring with its defaults", () => {
    expect(ok({}).config.monitoring).toEqual({
      prometheus: false,
      interval: "30s",
      prometheusNamespace: "monitoring",
    });
    expect(
      ok({ monitoring: { prometheus: true, interval: "15s" } }).config.monitoring?.prometheus,
    ).toBe(true);
  });
});

describe("autoscaling: invalid combinations", () => {
  it.each<[string, Record<string, unknown>, string[]]>([
    [
      "minReplicas 0 in mode cpu",
      { autoscaling: { enabled: true, minReplicas: 0 } },
      [
        "autoscaling.minReplicas: 0 needs mode dask: a CPU HPA cannot scale to zero (with no pod there is no CPU to measure, so nothing would ever start one); set autoscaling.mode: dask, or minReplicas ≥ 1",
      ],
    ],
    [
      "targetCpuUtilization in mode dask (a CPU HPA and a ScaledObject on one Deployment)",
      { ...AZURE, autoscaling: { enabled: true, mode: "dask", targetCpuUtilization: 80 } },
      [
        "autoscaling.targetCpuUtilization: applies to mode cpu only: in mode dask the workers scale on the scheduler's desired workers, and a CPU HPA and a KEDA ScaledObject must never scale the same Deployment; remove targetCpuUtilization, or set autoscaling.mode: cpu",
      ],
    ],
    [
      "dask-only keys in mode cpu",
      {
        autoscaling: {
          enabled: true,
          mode: "cpu",
          scaleUp: { podsPerPeriod: 2 },
          activationProcesses: 1,
        },
      },
      [
        "autoscaling.scaleUp: applies to mode dask only, and this stack's mode is cpu; remove it, or set autoscaling.mode: dask",
        "autoscaling.activationProcesses: applies to mode dask only, and this stack's mode is cpu; remove it, or set autoscaling.mode: dask",
      ],
    ],
    [
      "installKeda in mode cpu (the kubernetes default)",
      { autoscaling: { enabled: true, installKeda: true } },
      [
        "autoscaling.installKeda: nothing uses KEDA in mode cpu (the CPU HPA is plain Kubernetes); set autoscaling.mode: dask, or remove installKeda",
      ],
    ],
    [
      "installKeda on azure (the add-on runs KEDA)",
      { ...AZURE, autoscaling: { enabled: true, installKeda: true } },
      [
        "autoscaling.installKeda: target azure runs KEDA as the AKS add-on (workloadAutoScalerProfile.keda, turned on by this stack); a second KEDA would fight it over the same CRDs; remove installKeda",
      ],
    ],
    [
      "minReplicas above maxReplicas (dask)",
      { ...AZURE, autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 2 } },
      [
        "autoscaling.minReplicas: 3 is greater than maxReplicas 2; lower minReplicas or raise maxReplicas to at least 3",
      ],
    ],
    [
      "a mode that does not exist",
      { autoscaling: { enabled: true, mode: "keda" } },
      ['autoscaling.mode: "keda" is not one of "dask", "cpu"'],
    ],
    [
      "a negative minReplicas",
      { autoscaling: { enabled: true, mode: "dask", minReplicas: -1 } },
      ["autoscaling.minReplicas: -1 is out of range: must be ≥ 0"],
    ],
  ])("%s", (_name, raw, expected) => {
    expect(problems(raw)).toEqual(expected);
  });

  it("warns that mode keys are ignored while autoscaling is off", () => {
    const r = ok({ autoscaling: { enabled: false, mode: "dask", pollingSeconds: 5 } });
    expect(r.warnings).toContain(
      "autoscaling.mode, autoscaling.pollingSeconds: ignored because autoscaling.enabled is false (set enabled: true to scale the workers)",
    );
  });
});
