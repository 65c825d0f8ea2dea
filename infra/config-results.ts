/**
 * Where runner Jobs keep their results, and the rules that keep them durable; plus the check for
 * a misspelt config namespace. Pure: `infra/config.ts` (the only module that reads the stack
 * config) calls these and reports what they find with every other problem.
 *
 * On a cluster, a local results path lives on the workspace's results volume (a
 * PersistentVolumeClaim mounted at {@link RESULTS_DIR} in every runner Job) unless the stack
 * says `runner.ephemeral: true`; an object store URI (`az://`, `s3://`, `gs://`) needs no volume,
 * and its credentials come from the Secret named by `runner.resultsSecret`, never from the config.
 */
import { posix } from "node:path";
import type { Problem } from "./errors.js";

/** Where the results volume is mounted in every runner Job. */
export const RESULTS_DIR = "/results";

/** URI schemes the runner writes to through fsspec (their packages must be in the image). */
export const OBJECT_STORE_SCHEMES = ["az", "abfs", "abfss", "s3", "gs", "gcs"] as const;

/** The project's config namespace. */
export const NAMESPACE = "dask-workspace";

/** What a results URI is: a local path (on the results volume or not) or an object store. */
export type ResultsKind =
  | { kind: "volume"; path: string }
  | { kind: "local"; path: string }
  | { kind: "object"; scheme: string };

/** A URI scheme (`s3://...` → `s3`), or undefined for a path. */
export function uriScheme(uri: string): string | undefined {
  return /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(uri)?.[1]?.toLowerCase();
}

/** Classifies one job's results URI. Pure. */
export function resultsKind(uri: string): ResultsKind {
  const scheme = uriScheme(uri);
  if (scheme !== undefined) return { kind: "object", scheme };
  const normalized = uri.startsWith("/") ? posix.normalize(uri) : uri;
  if (normalized === RESULTS_DIR || normalized.startsWith(`${RESULTS_DIR}/`)) {
    return { kind: "volume", path: normalized };
  }
  return { kind: "local", path: normalized };
}

/** Problems with one results URI's syntax (empty when fine). */
export function resultsUriProblem(v: string): string | undefined {
  if (v.trim() === "") return "must not be empty";
  const scheme = uriScheme(v);
  if (scheme === undefined) return undefined;
  if (!(OBJECT_STORE_SCHEMES as readonly string[]).includes(scheme)) {
    return `${JSON.stringify(v)}: use a path (on target kubernetes, under ${RESULTS_DIR}) or an object store URI: az://<container>/<prefix>, s3://<bucket>/<prefix> or gs://<bucket>/<prefix>`;
  }
  const rest = v.slice(scheme.length + 3);
  const authority = rest.split("/")[0] ?? "";
  if (authority.includes(":") && authority.includes("@")) {
    return `${JSON.stringify(v)} carries credentials; never put them in the stack config: store them in a Kubernetes Secret and name it in runner.resultsSecret`;
  }
  if (/[?&](sig|sv|se|sp|token|key|secret)=/i.test(rest)) {
    return `${JSON.stringify(v)} carries a token in its query string; never put credentials in the stack config: store them in a Kubernetes Secret and name it in runner.resultsSecret`;
  }
  if (scheme === "az") {
    const container = authority.split("@")[0] ?? "";
    if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(container)) {
      return `${JSON.stringify(v)}: "${container}" is not an Azure Blob container name (3-63 lower-case letters, digits and single '-'); use az://<container>/<prefix>`;
    }
  } else if (authority === "") {
    return `${JSON.stringify(v)} names no bucket; use ${scheme}://<bucket>/<prefix>`;
  }
  return undefined;
}

/**
 * The durability rules for the jobs' results on a cluster. A local path outside the results
 * volume would be an emptyDir, lost with the pod: an error, unless `ephemeral` (then a warning).
 * Object stores need no rule here: their credentials come from `runner.resultsSecret` or from
 * the cluster (workload identity), and the runner says at start when it cannot write.
 */
export function resultsProblems(opts: {
  target: "azure" | "kubernetes";
  jobs: ReadonlyArray<{ name: string; results: string; explicit: boolean }>;
  runnerResults: string;
  ephemeral: boolean;
  resultsSecret?: string;
}): { problems: Problem[]; warnings: string[] } {
  const problems: Problem[] = [];
  const warnings: string[] = [];
  for (const job of opts.jobs) {
    const key = job.explicit ? `jobs.${job.name}.results` : "runner.results";
    const k = resultsKind(job.results);
    if (k.kind === "local" || (k.kind === "volume" && opts.ephemeral)) {
      if (opts.ephemeral) {
        warnings.push(
          `${key}: job ${job.name} writes its results to ${job.results} in an emptyDir (runner.ephemeral: true): they are lost when its pod goes, and a re-run cannot resume them`,
        );
      } else {
        problems.push({
          path: key,
          message: `${JSON.stringify(job.results)} (job ${job.name}) would be an emptyDir that dies with the runner pod, so a re-run could not resume; use a path under ${RESULTS_DIR} (the workspace's results volume), an object store URI (az://, s3://, gs://), or set runner.ephemeral: true to accept losing them`,
        });
      }
    }
  }
  return { problems, warnings };
}

/**
 * Keys of a stack file or of the engine's config whose namespace is a misspelling of
 * `dask-workspace` (`dask_workspace:workers`, `daskworkspace:workers`, `Dask-Workspace:...`):
 * Pulumi would silently ignore them, so they are errors naming the right namespace.
 */
export function misspeltNamespaceProblems(keys: readonly string[]): Problem[] {
  const problems: Problem[] = [];
  for (const full of keys) {
    const colon = full.indexOf(":");
    if (colon < 0) continue;
    const ns = full.slice(0, colon);
    if (ns === NAMESPACE) continue;
    const squashed = ns.toLowerCase().replace(/[^a-z0-9]/g, "");
    if (squashed === "daskworkspace") {
      const key = full.slice(colon + 1);
      problems.push({
        path: full,
        message: `"${ns}:" is not this project's namespace, so Pulumi would ignore this key; write it as ${NAMESPACE}:${key}`,
      });
    }
  }
  return problems;
}
