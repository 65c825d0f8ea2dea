/**
 * Turns recorded resources into render files: Kubernetes objects as plain YAML manifests, Azure
 * resources as JSON `{type, name, inputs}`, one file each.
 */
import { stringify } from "yaml";
import type { RecordedResource } from "./mocks.js";
import { redactSecrets } from "./secrets.js";

/** A Kubernetes object as `kubectl apply` would take it. */
export type Manifest = Record<string, unknown> & { apiVersion: string; kind: string };

export interface RenderedFile {
  /** Path relative to the output directory, e.g. `kubernetes/apps-v1-Deployment-dask-dask-worker.yaml`. */
  path: string;
  content: string;
}

export interface RenderPlan {
  kubernetes: { manifest: Manifest; file: RenderedFile }[];
  azure: RenderedFile[];
  /** Custom resources that are neither (e.g. `pulumi:providers:*` are not listed here). */
  skipped: RecordedResource[];
}

/** A Kubernetes resource type token: `kubernetes:<group>/<version>:<Kind>`. */
export function isKubernetesObject(r: RecordedResource): boolean {
  return r.custom && r.type.startsWith("kubernetes:");
}

export function isAzureResource(r: RecordedResource): boolean {
  return r.custom && r.type.startsWith("azure-native:");
}

/** Provider instances are configuration, not infrastructure: never rendered. */
function isProvider(r: RecordedResource): boolean {
  return r.type.startsWith("pulumi:providers:");
}

/**
 * The manifest of a Kubernetes resource: `apiVersion`, `kind`, `metadata` first, then the rest
 * (`spec`, `data`, `rules`, ...) in the order given; `status` is never an input and is dropped.
 */
export function kubernetesManifest(r: RecordedResource): Manifest {
  // Secrets (the Dask TLS Secret's data) are never written: see ./secrets.ts.
  const inputs = redactSecrets(r.inputs) as Record<string, unknown>;
  const { apiVersion, kind, metadata, status: _status, ...rest } = inputs;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    throw new Error(
      `${r.type} "${r.name}" has no apiVersion/kind inputs; only Kubernetes objects can be rendered as manifests`,
    );
  }
  return { apiVersion, kind, ...(metadata === undefined ? {} : { metadata }), ...rest };
}

/** File-name-safe form of one name part. */
function safe(part: string): string {
  return part.replace(/[^A-Za-z0-9._-]+/g, "_");
}

/** `apps-v1-Deployment-<namespace>-<name>.yaml`; cluster-scoped objects have no namespace part. */
export function manifestFileName(m: Manifest): string {
  const meta = (m.metadata ?? {}) as { name?: unknown; namespace?: unknown };
  const parts = [m.apiVersion.replaceAll("/", "-"), m.kind];
  if (typeof meta.namespace === "string") parts.push(meta.namespace);
  parts.push(typeof meta.name === "string" ? meta.name : "unnamed");
  return `${parts.map(safe).join("-")}.yaml`;
}

/** `azure-native.containerservice.ManagedCluster-<name>.json` (no `:` in file names). */
export function azureFileName(r: RecordedResource): string {
  return `${safe(r.type.replaceAll(":", "."))}-${safe(r.name)}.json`;
}

export function planRender(resources: RecordedResource[]): RenderPlan {
  const plan: RenderPlan = { kubernetes: [], azure: [], skipped: [] };
  const seen = new Map<string, RecordedResource>();
  const claim = (path: string, r: RecordedResource): void => {
    const other = seen.get(path);
    if (other !== undefined) {
      throw new Error(
        `${r.type} "${r.name}" and ${other.type} "${other.name}" both render to ${path}`,
      );
    }
    seen.set(path, r);
  };
  for (const r of resources) {
    if (isKubernetesObject(r)) {
      const manifest = kubernetesManifest(r);
      const path = `kubernetes/${manifestFileName(manifest)}`;
      claim(path, r);
      plan.kubernetes.push({
        manifest,
        file: { path, content: stringify(manifest, { lineWidth: 0 }) },
      });
    } else if (isAzureResource(r)) {
      const path = `azure/${azureFileName(r)}`;
      claim(path, r);
      const inputs = redactSecrets(r.inputs);
      const content = `${JSON.stringify({ type: r.type, name: r.name, inputs }, null, 2)}\n`;
      plan.azure.push({ path, content });
    } else if (r.custom && !isProvider(r)) {
      plan.skipped.push(r);
    }
  }
  return plan;
}
