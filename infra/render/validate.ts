/**
 * Validates Kubernetes objects against the Kubernetes OpenAPI schema, using the validators that
 * `kubernetes-models` generates from it (one per apiVersion/kind).
 *
 * The schema checks types, required fields and enums. It does not reject unknown fields (the
 * Kubernetes schema allows them); misspelled fields are caught earlier, by TypeScript, because
 * every object is built against `@pulumi/kubernetes`' typed inputs.
 */
import { validateCustomResource } from "./crd-validate.js";

/** One schema violation, precise enough to find and fix. */
export interface SchemaViolation {
  /** `apps/v1 Deployment dask/dask-worker`. */
  object: string;
  /** JSON pointer into the object, e.g. `/spec/template/spec/containers/0/ports/0/containerPort`. */
  path: string;
  /** Where in the OpenAPI schema the rule lives, e.g. `#/properties/containerPort/type`. */
  schemaPath: string;
  /** What is wrong, e.g. `must be integer`. */
  message: string;
}

interface AjvError {
  instancePath?: string;
  schemaPath?: string;
  message?: string;
}

type ModelClass = new (data: Record<string, unknown>) => { validate(): void };

/** `group/version` or `version`: the only shapes kubernetes-models has a module path for. */
const API_VERSION = /^(?:[a-z0-9]([a-z0-9.-]*[a-z0-9])?\/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?$/;
const KIND = /^[A-Z][A-Za-z0-9]*$/;

/** `apiVersion kind namespace/name` for messages. */
export function describeObject(obj: Record<string, unknown>): string {
  const meta = (obj.metadata ?? {}) as { name?: unknown; namespace?: unknown };
  const name = typeof meta.name === "string" ? meta.name : "<no name>";
  const where = typeof meta.namespace === "string" ? `${meta.namespace}/${name}` : name;
  return `${String(obj.apiVersion)} ${String(obj.kind)} ${where}`;
}

const modelCache = new Map<string, ModelClass | undefined>();

/** The kubernetes-models class for an apiVersion/kind (`kubernetes-models/<apiVersion>/<Kind>`). */
async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  const key = `${apiVersion}/${kind}`;
  if (modelCache.has(key)) {
    return modelCache.get(key);
  }
  let model: ModelClass | undefined;
  try {
    // The package exports `./<group>/<version>/*`, so apiVersion/kind is its module path.
    const specifier = `kubernetes-models/${key}`;
    const mod = (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
    const candidate = mod[kind];
    model = typeof candidate === "function" ? (candidate as ModelClass) : undefined;
  } catch {
    model = undefined;
  }
  modelCache.set(key, model);
  return model;
}

/** Every schema violation of one object; empty when it is valid. */
export async function validateManifest(obj: Record<string, unknown>): Promise<SchemaViolation[]> {
  const object = describeObject(obj);
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return [{ object, path: "", schemaPath: "#/required", message: "needs apiVersion and kind" }];
  }
  // Custom resources (ScaledObject, PodMonitor): the CRD's own schema (render/crd-validate.ts).
  const custom = validateCustomResource(obj);
  if (custom !== undefined) return custom.map((v) => ({ object, ...v }));
  const model =
    API_VERSION.test(apiVersion) && KIND.test(kind) ? await modelFor(apiVersion, kind) : undefined;
  if (model === undefined) {
    return [
      {
        object,
        path: "",
        schemaPath: "",
        message: `no Kubernetes schema for apiVersion ${apiVersion} kind ${kind}`,
      },
    ];
  }
  try {
    new model(obj).validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: AjvError[] }).errors;
    if (!Array.isArray(errors)) {
      throw err;
    }
    return errors.map((e) => ({
      object,
      path: e.instancePath === undefined || e.instancePath === "" ? "/" : e.instancePath,
      schemaPath: e.schemaPath ?? "",
      message: e.message ?? "is invalid",
    }));
  }
}

/** Validates many objects; every violation of every object, in order. */
export async function validateManifests(
  objects: Record<string, unknown>[],
): Promise<SchemaViolation[]> {
  const all: SchemaViolation[] = [];
  for (const obj of objects) {
    all.push(...(await validateManifest(obj)));
  }
  return all;
}

/** One line per violation: `<object>: <path>: <message> (schema <schemaPath>)`. */
export function formatViolations(violations: SchemaViolation[]): string {
  return violations
    .map((v) => `${v.object}: ${v.path}: ${v.message} (schema ${v.schemaPath || "-"})`)
    .join("\n");
}
