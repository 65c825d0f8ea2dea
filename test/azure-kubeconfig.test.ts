import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { azureCliArgs, kubeconfigFromCredentials } from "../infra/azure/kubeconfig.js";
import { mockKubeconfig } from "../infra/azure/mocks.js";
import {
  SPOT_TAINT,
  WORKER_POOL_TAINT,
  formatTaint,
  workerPoolPlacement,
  workerPoolTaints,
} from "../infra/azure/placement.js";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

describe("kubeconfigFromCredentials", () => {
  it("decodes the first kubeconfig and leaves a certificate kubeconfig untouched", () => {
    const text = mockKubeconfig("aks1", undefined);
    const out = kubeconfigFromCredentials([{ name: "clusterUser", value: b64(text) }], {
      azureCliLogin: false,
    });
    expect(out).toBe(text);
  });

  it("switches a kubelogin kubeconfig from devicecode to the Azure CLI login", () => {
    const text = mockKubeconfig("aks1", "exec");
    const out = kubeconfigFromCredentials([{ name: "clusterUser", value: b64(text) }], {
      azureCliLogin: true,
    });
    const exec = parse(out).users[0].user.exec;
    expect(exec.command).toBe("kubelogin");
    expect(exec.args).toEqual([
      "get-token",
      "--environment",
      "AzurePublicCloud",
      "--server-id",
      "6dae42f8-4368-4678-94ff-3960e28e3630",
      "--tenant-id",
      "11111111-1111-1111-1111-111111111111",
      "--login",
      "azurecli",
    ]);
    // Everything else is kept.
    expect(parse(out).clusters).toEqual(parse(text).clusters);
  });

  it("handles --flag=value spellings", () => {
    expect(
      azureCliArgs(["get-token", "--login=devicecode", "--client-id=x", "--server-id", "s"]),
    ).toEqual(["get-token", "--server-id", "s", "--login", "azurecli"]);
  });

  it("says so when AKS returns no credentials", () => {
    expect(() => kubeconfigFromCredentials([], { azureCliLogin: false })).toThrow(
      /no user credentials/,
    );
  });
});

describe("worker pool placement", () => {
  it("taints a regular pool with the dedicated taint only", () => {
    expect(workerPoolTaints({ spot: false }).map(formatTaint)).toEqual([
      "dask-workspace/pool=workers:NoSchedule",
    ]);
  });

  it("adds AKS's spot taint on a spot pool", () => {
    expect(workerPoolTaints({ spot: true }).map(formatTaint)).toEqual([
      "dask-workspace/pool=workers:NoSchedule",
      "kubernetes.azure.com/scalesetpriority=spot:NoSchedule",
    ]);
  });

  it("gives pods a selector for the pool label and a toleration per taint", () => {
    expect(workerPoolPlacement({ spot: true })).toEqual({
      nodeSelector: { "dask-workspace/pool": "workers" },
      tolerations: [WORKER_POOL_TAINT, SPOT_TAINT].map((t) => ({
        key: t.key,
        operator: "Equal",
        value: t.value,
        effect: "NoSchedule",
      })),
    });
    expect(workerPoolPlacement({ spot: false }).tolerations).toHaveLength(1);
  });
});
