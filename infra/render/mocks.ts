/**
 * Pulumi mocks that record every resource the program registers, for the offline render and for
 * the tests. No cloud, no Pulumi CLI: `pulumi.runtime.setMocks` replaces the engine.
 */
import * as pulumi from "@pulumi/pulumi";
import { PROJECT } from "../config.js";

export { PROJECT };

/** One `registerResource` (or `readResource`) call, as the engine would have received it. */
export interface RecordedResource {
  /** Pulumi type token, e.g. `kubernetes:apps/v1:Deployment`. */
  type: string;
  /** Logical name. */
  name: string;
  /** Inputs with every Output resolved. */
  inputs: Record<string, unknown>;
  /** False for component resources (no provider, nothing to create). */
  custom: boolean;
  /** The explicit provider reference (`<provider urn>::<id>`), when one was given. */
  provider?: string;
}

type Values = Record<string, unknown>;

export interface RecordingMocksOptions {
  /**
   * The id and output state of a resource, for values the cloud would compute (an Azure
   * resource's `id`, `clientId`, ...). Return undefined to echo the inputs as the state (right
   * for Kubernetes objects, whose outputs are their inputs). Default: always echo.
   */
  resource?: (
    type: string,
    name: string,
    inputs: Values,
  ) => { id: string; state: Values } | undefined;
  /**
   * The result of a provider function (invoke) the program calls, e.g. fetching AKS credentials.
   * Return undefined for a token it does not know: the call then fails the run, because a
   * silently empty result would render a wrong workspace. Default: every call fails.
   */
  call?: (token: string, inputs: Values) => Values | undefined;
}

export interface RecordingMocks {
  mocks: pulumi.runtime.Mocks;
  /** Every resource registered so far, in registration order. */
  resources: RecordedResource[];
}

export function recordingMocks(options: RecordingMocksOptions = {}): RecordingMocks {
  const resources: RecordedResource[] = [];
  const mocks: pulumi.runtime.Mocks = {
    newResource(args: pulumi.runtime.MockResourceArgs) {
      const recorded: RecordedResource = {
        type: args.type,
        name: args.name,
        inputs: args.inputs as Values,
        custom: args.custom ?? true,
        ...(args.provider ? { provider: args.provider } : {}),
      };
      resources.push(recorded);
      return (
        options.resource?.(args.type, args.name, recorded.inputs) ?? {
          id: `${args.name}-id`,
          state: recorded.inputs,
        }
      );
    },
    call(args: pulumi.runtime.MockCallArgs) {
      const result = options.call?.(args.token, args.inputs as Values);
      if (result === undefined) {
        throw new Error(
          `no mock result for provider function ${args.token}; add it to the render mocks`,
        );
      }
      return result;
    },
  };
  return { mocks, resources };
}

/**
 * Installs recording mocks for the project and stack. Call before importing any module that
 * creates resources (Pulumi reads the mock monitor when a resource is constructed).
 */
export async function installRecordingMocks(
  stack: string,
  options: RecordingMocksOptions = {},
): Promise<RecordingMocks> {
  const recording = recordingMocks(options);
  await pulumi.runtime.setMocks(recording.mocks, PROJECT, stack, false);
  return recording;
}

/**
 * Stack config for the mock runtime from a stack file's `dask-workspace` entries (keys without
 * the namespace): the engine's encoding, namespaced keys, strings as they are and everything
 * else as JSON, which `pulumi.Config#getObject`/`getNumber`/`getBoolean` parse back.
 */
export function toRuntimeConfig(raw: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    out[`${PROJECT}:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  return out;
}

/** Waits until every resource registration the program started has reached the mocks. */
export async function settle(): Promise<void> {
  // `disconnect` drains the runtime's RPC queue; with mocks it leaves the mock monitor in place,
  // so a later evaluation in the same process still works.
  await pulumi.runtime.disconnect();
}
