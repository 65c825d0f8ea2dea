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

/** Outputs of a provider function (`invoke`) under mocks, by function token. */
export type CallHandler = (inputs: Record<string, unknown>) => Record<string, unknown>;

export interface RecordingMocksOptions {
  /**
   * Handlers for provider functions the program calls (e.g. fetching AKS credentials). A call
   * without a handler fails the run: a silently empty result would render a wrong workspace.
   */
  calls?: Record<string, CallHandler>;
  /**
   * Extra output state for a resource beyond its inputs (values the cloud would compute, e.g. an
   * Azure resource's `name` or `clientId`). Default: none.
   */
  extraState?: (resource: RecordedResource) => Record<string, unknown>;
}

export interface RecordingMocks {
  mocks: pulumi.runtime.Mocks;
  /** Every resource registered so far, in registration order. */
  resources: RecordedResource[];
}

export function recordingMocks(options: RecordingMocksOptions = {}): RecordingMocks {
  const resources: RecordedResource[] = [];
  const calls = options.calls ?? {};
  const mocks: pulumi.runtime.Mocks = {
    newResource(args: pulumi.runtime.MockResourceArgs) {
      const recorded: RecordedResource = {
        type: args.type,
        name: args.name,
        inputs: args.inputs as Record<string, unknown>,
        custom: args.custom ?? true,
        ...(args.provider ? { provider: args.provider } : {}),
      };
      resources.push(recorded);
      return {
        id: `${args.name}-id`,
        state: { ...recorded.inputs, ...(options.extraState?.(recorded) ?? {}) },
      };
    },
    call(args: pulumi.runtime.MockCallArgs) {
      const handler = calls[args.token];
      if (handler === undefined) {
        throw new Error(
          `no mock for provider function ${args.token}; add a handler to recordingMocks({ calls })`,
        );
      }
      return handler(args.inputs as Record<string, unknown>);
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
