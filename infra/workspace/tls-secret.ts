/**
 * The one TLS resource the DaskWorkspace creates: its constructor calls
 * {@link workspaceTlsSecret}, which registers the Secret when `tls.enabled` and nothing otherwise.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { tlsEnabled } from "../config-tls.js";
import { generateTlsMaterial } from "../tls.js";
import type { WorkspaceConfig } from "../types.js";
import type { WorkspaceNames } from "./labels.js";
import {
  TLS_SECRET_OPTIONS,
  tlsSecret,
  tlsSecretData,
  tlsSecretName,
  workspaceTlsSpec,
} from "./tls.js";

/**
 * Registers the TLS Secret (an empty list when TLS is off, so callers can spread it into
 * `dependsOn`). The material is made asynchronously and reaches the Secret as a secret Output;
 * the Secret itself is registered at once, never inside an `apply`.
 */
export function workspaceTlsSecret(args: {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
  opts: pulumi.CustomResourceOptions;
}): k8s.core.v1.Secret[] {
  const { cfg, instance, names } = args;
  if (!tlsEnabled(cfg)) return [];
  const name = tlsSecretName(cfg, instance, names);
  const data = pulumi.secret(
    pulumi.output(generateTlsMaterial(workspaceTlsSpec(cfg, names))).apply(tlsSecretData),
  );
  const secret = new k8s.core.v1.Secret(name, tlsSecret(cfg, { instance, name, data }), {
    ...args.opts,
    ignoreChanges: [...TLS_SECRET_OPTIONS.ignoreChanges],
  });
  return [secret];
}
