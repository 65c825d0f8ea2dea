/**
 * The one shared helper for Pulumi tests: install recording mocks (the same recorder the
 * offline render uses), unwrap Outputs, and find recorded resources.
 */
import * as pulumi from "@pulumi/pulumi";
import {
  installRecordingMocks,
  type RecordedResource,
  type RecordingMocks,
  settle,
} from "../../infra/render/mocks.js";

export { installRecordingMocks, settle, type RecordedResource, type RecordingMocks };

/** The resolved value of an Output (or promise, or plain value). */
export function unwrap<T>(value: pulumi.Input<T>): Promise<T> {
  if (pulumi.Output.isInstance(value)) {
    return new Promise<T>((resolve) => {
      (value as pulumi.Output<T>).apply((v) => {
        resolve(v);
        return v;
      });
    });
  }
  return Promise.resolve(value as T | Promise<T>);
}

/**
 * Runs `build` and returns exactly the resources it registered (waits until every registration
 * reached the mocks).
 */
export async function recordDuring<T>(
  recording: RecordingMocks,
  build: () => T,
): Promise<{ result: T; resources: RecordedResource[] }> {
  const start = recording.resources.length;
  const result = build();
  await settle();
  return { result, resources: recording.resources.slice(start) };
}

/** The single recorded resource of this type token and logical name (throws otherwise). */
export function findResource(
  resources: RecordedResource[],
  type: string,
  name: string,
): RecordedResource {
  const found = resources.filter((r) => r.type === type && r.name === name);
  if (found.length !== 1) {
    const have = resources.map((r) => `${r.type} ${r.name}`).join("\n  ");
    throw new Error(`expected one ${type} "${name}", found ${found.length}; recorded:\n  ${have}`);
  }
  return found[0]!;
}

export function ofType(resources: RecordedResource[], type: string): RecordedResource[] {
  return resources.filter((r) => r.type === type);
}

/** A recorded Kubernetes object's inputs as a plain manifest-shaped object. */
export type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export function inputs(r: RecordedResource): Obj {
  return r.inputs as Obj;
}
