/**
 * The pure part of `npm run scan`: each scanner's output as findings of one shape, and the
 * allow-list that justifies some of them (scan/allow-list.yaml). Tested in test/scan.test.ts.
 */
import { parse as parseYaml } from "yaml";

export type Tool = "kubeconform" | "kube-score" | "checkov";
export const TOOLS: readonly Tool[] = ["kubeconform", "kube-score", "checkov"];

/** One thing a scanner reported about one object of one rendered stack. */
export interface Finding {
  tool: Tool;
  /** The scanner's check id (`CKV_K8S_15`, `container-image-pull-policy`, `schema`). */
  check: string;
  /** The rendered stack (`local`, `dev`, a fixture's name). */
  stack: string;
  /** `Kind/name` of the object. */
  object: string;
  /** The container the finding is about, when the scanner says. */
  container?: string;
  message: string;
}

/** One allow-list entry: which findings it covers, and why they are acceptable. */
export interface AllowEntry {
  tool: Tool;
  check: string;
  /** `Kind/name` globs (`*` matches any run of characters); absent: every object. */
  objects?: string[];
  /** Containers; absent: any (and findings without one). */
  containers?: string[];
  /** Stacks; absent: every stack. */
  stacks?: string[];
  /** Why this finding is acceptable. Required, non-empty. */
  reason: string;
}

export class AllowListError extends Error {}

/** Parses and checks scan/allow-list.yaml: a list of entries, each with a tool, check and reason. */
export function parseAllowList(text: string): AllowEntry[] {
  const doc = parseYaml(text) as unknown;
  const list = (doc as { allow?: unknown } | null)?.allow;
  if (!Array.isArray(list)) throw new AllowListError("the allow-list must have an `allow:` list");
  const problems: string[] = [];
  const entries = list.map((raw, i): AllowEntry => {
    const e = (raw ?? {}) as Record<string, unknown>;
    const at = `allow[${i}]`;
    for (const key of Object.keys(e)) {
      if (!["tool", "check", "objects", "containers", "stacks", "reason"].includes(key)) {
        problems.push(`${at}: unknown key ${key}`);
      }
    }
    if (!TOOLS.includes(e.tool as Tool)) {
      problems.push(`${at}.tool: ${JSON.stringify(e.tool)} is not one of ${TOOLS.join(", ")}`);
    }
    if (typeof e.check !== "string" || e.check === "") problems.push(`${at}.check is required`);
    if (typeof e.reason !== "string" || e.reason.trim().length < 20) {
      problems.push(`${at}.reason: say why this finding is acceptable (at least a sentence)`);
    }
    for (const key of ["objects", "containers", "stacks"]) {
      const v = e[key];
      if (v !== undefined && !(Array.isArray(v) && v.every((s) => typeof s === "string"))) {
        problems.push(`${at}.${key} must be a list of strings`);
      }
    }
    return e as unknown as AllowEntry;
  });
  if (problems.length > 0) throw new AllowListError(problems.join("\n"));
  return entries;
}

function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split("*")
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
  return re.test(value);
}

export function allows(entry: AllowEntry, f: Finding): boolean {
  return (
    entry.tool === f.tool &&
    entry.check === f.check &&
    (entry.stacks === undefined || entry.stacks.includes(f.stack)) &&
    (entry.objects === undefined || entry.objects.some((o) => globMatch(o, f.object))) &&
    (entry.containers === undefined ||
      (f.container !== undefined && entry.containers.includes(f.container)))
  );
}

export interface Judged {
  allowed: Array<{ finding: Finding; entry: AllowEntry }>;
  unjustified: Finding[];
  /** Entries that matched nothing (stale: the finding they justified is gone). */
  unused: AllowEntry[];
}

export function judge(findings: readonly Finding[], entries: readonly AllowEntry[]): Judged {
  const used = new Set<AllowEntry>();
  const allowed: Judged["allowed"] = [];
  const unjustified: Finding[] = [];
  for (const f of findings) {
    const entry = entries.find((e) => allows(e, f));
    if (entry === undefined) unjustified.push(f);
    else {
      used.add(entry);
      allowed.push({ finding: f, entry });
    }
  }
  return { allowed, unjustified, unused: entries.filter((e) => !used.has(e)) };
}

/** Findings per tool: total, allowed, unjustified. */
export function counts(
  j: Judged,
): Record<Tool, { total: number; allowed: number; unjustified: number }> {
  const out = Object.fromEntries(
    TOOLS.map((t) => [t, { total: 0, allowed: 0, unjustified: 0 }]),
  ) as Record<Tool, { total: number; allowed: number; unjustified: number }>;
  for (const { finding } of j.allowed) {
    out[finding.tool].total += 1;
    out[finding.tool].allowed += 1;
  }
  for (const f of j.unjustified) {
    out[f.tool].total += 1;
    out[f.tool].unjustified += 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scanner outputs
// ---------------------------------------------------------------------------------------------

/** `kubeconform -output json`: every resource that is not valid (invalid, or no schema). */
export function kubeconformFindings(json: string, stackOf: (file: string) => string): Finding[] {
  const doc = JSON.parse(json) as {
    resources?: Array<{
      filename: string;
      kind: string;
      name: string;
      status: string;
      msg: string;
    }>;
  };
  return (doc.resources ?? [])
    .filter((r) => r.status !== "statusValid" && r.status !== "statusSkipped")
    .map((r) => ({
      tool: "kubeconform" as const,
      check: "schema",
      stack: stackOf(r.filename),
      object: `${r.kind}/${r.name}`,
      message: `${r.status}: ${r.msg}`,
    }));
}

interface KubeScoreObject {
  object_name: string;
  type_meta: { kind: string };
  object_meta: { name: string };
  file_name: string;
  checks: Array<{
    check: { id: string; name: string };
    grade: number;
    skipped: boolean;
    comments: Array<{ path: string; summary: string; description: string }> | null;
  }>;
}

/**
 * `kube-score score -o json`: every check graded below "all OK" (10) and not skipped, one finding
 * per comment (a comment's path is the container it is about).
 */
export function kubeScoreFindings(json: string, stackOf: (file: string) => string): Finding[] {
  const objects = JSON.parse(json) as KubeScoreObject[];
  return objects.flatMap((o) =>
    o.checks
      .filter((c) => !c.skipped && c.grade < 10)
      .flatMap((c) => {
        const comments = c.comments ?? [{ path: "", summary: c.check.name, description: "" }];
        return comments.map((cm) => ({
          tool: "kube-score" as const,
          check: c.check.id,
          stack: stackOf(o.file_name),
          object: `${o.type_meta.kind}/${o.object_meta.name}`,
          ...(cm.path !== "" ? { container: cm.path } : {}),
          message: `${c.grade <= 1 ? "CRITICAL" : "WARNING"}: ${cm.summary}`,
        }));
      }),
  );
}

/** `checkov -o json`: every failed check. `resource` is `Kind.namespace.name`. */
export function checkovFindings(json: string, stackOf: (file: string) => string): Finding[] {
  const doc = JSON.parse(json) as unknown;
  const reports = (Array.isArray(doc) ? doc : [doc]) as Array<{
    results?: {
      failed_checks?: Array<{
        check_id: string;
        check_name: string;
        resource: string;
        file_path: string;
        file_abs_path?: string;
      }>;
    };
  }>;
  return reports.flatMap((r) =>
    (r.results?.failed_checks ?? []).map((c) => {
      const [kind, , ...rest] = c.resource.split(".");
      return {
        tool: "checkov" as const,
        check: c.check_id,
        stack: stackOf(c.file_abs_path ?? c.file_path),
        object: `${kind}/${rest.join(".")}`,
        message: c.check_name,
      };
    }),
  );
}
