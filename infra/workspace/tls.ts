/**
 * Dask TLS on Kubernetes: the Secret that holds the workspace's CA certificate, certificate and
 * key, and how the scheduler, worker and runner pods mount it. The material comes from
 * `generateTlsMaterial` (`infra/tls.ts`), the same function `npm run local` uses.
 *
 * Why the preview stays clean: new keys are random, so every program run makes new material.
 * The Secret therefore ignores changes to its data (`TLS_SECRET_OPTIONS`): the first material
 * stays for the Secret's life. Everything the certificate says (names, validity, the rotation
 * counter) is hashed into the Secret's name instead (`tlsSecretName`), so a change there creates
 * a new Secret with new material, and the pods, which name it, roll over to it.
 */
import type * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { DEFAULT_TLS_VALIDITY_DAYS, tlsEnabled } from "../config-tls.js";
import { TLS_FILES, TLS_MOUNT_DIR, type TlsMaterial, type TlsSpec, tlsSpecHash } from "../tls.js";
import type { WorkspaceConfig } from "../types.js";
import { recommendedLabels, type WorkspaceNames } from "./labels.js";

const VOLUME = "dask-tls";

/**
 * Pulumi resource options of the Secret: its data is set when it is created and never updated
 * by a later run (which would only bring new random keys). `stringData` is listed too, so that
 * no spelling of the data can reach a diff.
 */
export const TLS_SECRET_OPTIONS = { ignoreChanges: ["data", "stringData"] } as const;

/**
 * What the workspace's certificate says. Dask does not check host names (workers connect to one
 * another by pod IP), so the names are for people and tools that look: the scheduler Service's
 * DNS names, short to fully qualified. Pure.
 */
export function workspaceTlsSpec(cfg: WorkspaceConfig, names: WorkspaceNames): TlsSpec {
  const svc = names.scheduler;
  const ns = cfg.namespace;
  return {
    caCommonName: `dask-workspace CA ${svc}.${ns}`,
    commonName: `${svc}.${ns}.svc`,
    dnsNames: [svc, `${svc}.${ns}`, `${svc}.${ns}.svc`, `${svc}.${ns}.svc.cluster.local`],
    ipAddresses: [],
    validityDays: cfg.tls?.validityDays ?? DEFAULT_TLS_VALIDITY_DAYS,
  };
}

/** `<instance>-tls-<hash of spec and rotation>`: the Secret's name (and Pulumi logical name). Pure. */
export function tlsSecretName(
  cfg: WorkspaceConfig,
  instance: string,
  names: WorkspaceNames,
): string {
  return `${instance}-tls-${tlsSpecHash(workspaceTlsSpec(cfg, names), cfg.tls?.rotation ?? 0)}`;
}

/** The base64 `data` of a `kubernetes.io/tls` Secret (with `ca.crt` beside the pair). Pure. */
export function tlsSecretData(material: TlsMaterial): Record<string, string> {
  const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
  return {
    [TLS_FILES.ca]: b64(material.caCert),
    [TLS_FILES.cert]: b64(material.cert),
    [TLS_FILES.key]: b64(material.key),
  };
}

/** The TLS Secret; `data` is an Input because the material is made asynchronously. */
export function tlsSecret(
  cfg: WorkspaceConfig,
  opts: {
    instance: string;
    name: string;
    data: pulumi.Input<Record<string, pulumi.Input<string>>>;
  },
): k8s.types.input.core.v1.Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: opts.name,
      namespace: cfg.namespace,
      labels: recommendedLabels(opts.instance, "config"),
    },
    type: "kubernetes.io/tls",
    data: opts.data,
  };
}

/**
 * The Secret volume of a Dask pod, none when TLS is off. Files are readable by the pod's group
 * only (`fsGroup` owns Secret volume files), never by others.
 */
export function tlsVolumes(
  cfg: WorkspaceConfig,
  instance: string,
  names: WorkspaceNames,
): k8s.types.input.core.v1.Volume[] {
  if (!tlsEnabled(cfg)) return [];
  return [
    {
      name: VOLUME,
      secret: { secretName: tlsSecretName(cfg, instance, names), defaultMode: 0o440 },
    },
  ];
}

/** The mount that matches {@link tlsVolumes}, at the directory the Dask config names. */
export function tlsVolumeMounts(cfg: WorkspaceConfig): k8s.types.input.core.v1.VolumeMount[] {
  return tlsEnabled(cfg) ? [{ name: VOLUME, mountPath: TLS_MOUNT_DIR, readOnly: true }] : [];
}
