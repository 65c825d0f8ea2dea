/**
 * The Pulumi program under mocks, target kubernetes without kubeconfig/context: no explicit
 * provider, so Pulumi's default provider (the current kubeconfig context) is used.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, expect, it } from "vitest";
import { toRuntimeConfig } from "../infra/render/mocks.js";
import { STATIC_RAW } from "./helpers/config.js";
import { installRecordingMocks, ofType, type RecordedResource, settle } from "./helpers/pulumi.js";

let resources: RecordedResource[];

beforeAll(async () => {
  const recording = await installRecordingMocks("ci");
  pulumi.runtime.setAllConfig(toRuntimeConfig(STATIC_RAW));
  await import("../infra/index.js");
  await settle();
  resources = recording.resources;
});

it("creates no provider and leaves every object on the default provider", () => {
  expect(ofType(resources, "pulumi:providers:kubernetes")).toEqual([]);
  const objects = resources.filter((r) => r.custom && r.type.startsWith("kubernetes:"));
  expect(objects).toHaveLength(18); // 15 + the three egress policies (DNS, Dask, runner)
  for (const r of objects) {
    expect(r.provider, `${r.type} ${r.name}`).toBeUndefined();
  }
});
