import { describe, expect, it } from "vitest";
import { accessSettings, compactName, federatedSubject } from "../infra/azure/aks-cluster.js";
import { hasRegistryHost, qualifyImage } from "../infra/azure/images.js";
import { parseAzUri, resultsUri } from "../infra/azure/results.js";

describe("image names on azure", () => {
  it.each([
    ["dask-workspace/dask:0.1.0", false],
    ["python:3.11", false],
    ["ghcr.io/org/dask:1", true],
    ["myacr.azurecr.io/dask-workspace/runner:0.1.0", true],
    ["localhost:5000/dask", true],
    ["localhost/dask", true],
    ["docker.io/library/python:3.11", true],
  ])("%s names a registry: %s", (image, expected) => {
    expect(hasRegistryHost(image)).toBe(expected);
  });

  it("puts registry-less images in the stack's registry and leaves the others alone", () => {
    const acr = "daskacr1a2b3c4d.azurecr.io";
    expect(qualifyImage("dask-workspace/dask:0.1.0", acr)).toBe(
      "daskacr1a2b3c4d.azurecr.io/dask-workspace/dask:0.1.0",
    );
    expect(qualifyImage("dask-workspace/runner:0.1.0", `${acr}/`)).toBe(
      "daskacr1a2b3c4d.azurecr.io/dask-workspace/runner:0.1.0",
    );
    expect(qualifyImage("ghcr.io/org/dask:1", acr)).toBe("ghcr.io/org/dask:1");
  });
});

describe("results URIs", () => {
  it.each([
    ["results", "", "az://results"],
    ["results", "/2026/runs/", "az://results/2026/runs"],
  ])("container %s prefix %s → %s", (c, p, uri) => expect(resultsUri(c, p)).toBe(uri));

  it.each([
    ["az://results", { container: "results", prefix: "" }],
    ["az://results/", { container: "results", prefix: "" }],
    ["az://results/a/b/", { container: "results", prefix: "a/b" }],
    ["/results", undefined],
    ["s3://bucket/x", undefined],
  ])("parses %s", (uri, parsed) => expect(parseAzUri(uri)).toEqual(parsed));
});

describe("names and access", () => {
  it("compacts names for registries and storage accounts", () => {
    expect(compactName("dask")).toBe("dask");
    expect(compactName("Dask-Workspace_Prod-Europe")).toBe("daskworkspacep");
    expect(compactName("--")).toBe("dask");
    // With azure-native's 8 random characters a storage account name stays within 24.
    expect(`${compactName("a-very-long-workspace-name")}sa`.length + 8).toBeLessThanOrEqual(24);
  });

  it("builds the ServiceAccount token subject", () => {
    expect(federatedSubject("dask-dev", "dask-runner")).toBe(
      "system:serviceaccount:dask-dev:dask-runner",
    );
  });

  const on = { enabled: true, deployerPrincipalType: "User" as const };
  const off = { enabled: false, deployerPrincipalType: "User" as const };
  it.each([
    // Entra ID is on by default, and with it local accounts are off.
    [{ entraId: on }, { entraId: true, disableLocalAccounts: true }],
    [
      { entraId: on, disableLocalAccounts: false },
      { entraId: true, disableLocalAccounts: false },
    ],
    [
      { entraId: on, adminGroupObjectIds: ["g"] },
      { entraId: true, disableLocalAccounts: true },
    ],
    [{ entraId: off }, { entraId: false, disableLocalAccounts: false }],
    // AKS refuses to disable local accounts without Entra ID (config.ts reports an explicit true).
    [
      { entraId: off, disableLocalAccounts: true },
      { entraId: false, disableLocalAccounts: false },
    ],
  ])("access settings for %j", (azure, expected) => {
    expect(accessSettings(azure)).toEqual(expected);
  });
});
