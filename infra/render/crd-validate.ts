/**
 * Validation of custom resources (KEDA's ScaledObject, prometheus-operator's PodMonitor) against
 * the OpenAPI schema of the CRD release they are rendered for (`infra/render/crds/`, copied from
 * the releases' own artifacts; see PROVENANCE.md there).
 *
 * The API server prunes unknown fields of a custom resource silently; a misspelt field would
 * vanish and its setting with it. So, like `kubectl apply --validate=strict`, every object schema
 * that lists its properties is closed here (unknown fields are errors) unless it says
 * `x-kubernetes-preserve-unknown-fields`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv, type ValidateFunction } from "ajv";
import { parse as parseYaml } from "yaml";

/** Where the CRD files live. */
export const CRD_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "crds");

/** CRD file per `group/version` + kind. */
const CRD_FILES: Record<string, string> = {
  "keda.sh/v1alpha1/ScaledObject": "keda.sh_scaledobjects.yaml",
  "monitoring.coreos.com/v1/PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
};

/** One violation, in the shape of `validate.ts`'s SchemaViolation. */
export interface CrdViolation {
  path: string;
  schemaPath: string;
  message: string;
}

type Schema = Record<string, unknown>;

/** Closes object schemas that list properties (module comment). Returns a new schema. */
export function strictSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(strictSchema);
  if (schema === null || typeof schema !== "object") return schema;
  const s = schema as Schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === "properties" && v !== null && typeof v === "object") {
      out[k] = Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, strictSchema(pv)]));
    } else if (k.startsWith("x-kubernetes-")) {
      continue; // Kubernetes annotations of the schema, not JSON Schema keywords
    } else {
      out[k] = strictSchema(v);
    }
  }
  if (
    s.type === "object" &&
    s.properties !== undefined &&
    s.additionalProperties === undefined &&
    s["x-kubernetes-preserve-unknown-fields"] !== true
  ) {
    out.additionalProperties = false;
  }
  return out;
}

/** The `openAPIV3Schema` of one version of a CRD document. */
export function crdSchema(crd: unknown, version: string): Schema {
  const versions = (crd as { spec?: { versions?: unknown } }).spec?.versions;
  if (!Array.isArray(versions))
    throw new Error("not a CustomResourceDefinition (no spec.versions)");
  const v = versions.find((x: { name?: unknown }) => x.name === version) as
    { schema?: { openAPIV3Schema?: Schema } } | undefined;
  const schema = v?.schema?.openAPIV3Schema;
  if (schema === undefined) throw new Error(`the CRD has no schema for version ${version}`);
  return schema;
}

const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
const compiled = new Map<string, ValidateFunction>();

/** The validator of `apiVersion`/`kind`, or undefined when no CRD file covers it. */
export function crdValidator(apiVersion: string, kind: string): ValidateFunction | undefined {
  const key = `${apiVersion}/${kind}`;
  const file = CRD_FILES[key];
  if (file === undefined) return undefined;
  let fn = compiled.get(key);
  if (fn === undefined) {
    const crd = parseYaml(fs.readFileSync(path.join(CRD_DIR, file), "utf8")) as unknown;
    const version = apiVersion.split("/").at(-1)!;
    fn = ajv.compile(strictSchema(crdSchema(crd, version)) as Schema);
    compiled.set(key, fn);
  }
  return fn;
}

/** The violations of one custom resource, or undefined when no CRD file covers its kind. */
export function validateCustomResource(obj: Record<string, unknown>): CrdViolation[] | undefined {
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") return undefined;
  const fn = crdValidator(apiVersion, kind);
  if (fn === undefined) return undefined;
  if (fn(obj)) return [];
  return (fn.errors ?? []).map((e) => ({
    path: e.instancePath === "" ? "/" : e.instancePath,
    schemaPath: e.schemaPath,
    message:
      e.keyword === "additionalProperties"
        ? `has unknown field ${JSON.stringify((e.params as { additionalProperty?: string }).additionalProperty)}`
        : (e.message ?? "is invalid"),
  }));
}
