/**
 * Reads the JSON that the real Pulumi CLI prints (`pulumi preview --json`, `pulumi stack export`)
 * and checks it against what the e2e run expects. Pure functions, plus a small CLI used by
 * test/e2e/run.sh:
 *
 *   tsx test/e2e/checks.ts changes <preview.json> [--require RULE]... [--allow RULE]...
 *   tsx test/e2e/checks.ts creates <preview.json>
 *   tsx test/e2e/checks.ts counts <stack-export.json>
 *   tsx test/e2e/checks.ts pods <pod-list.json> [--ready COMPONENT=N]...
 *
 * A RULE is `TYPE_TOKEN@NAME_PART=OP[,OP...]`, e.g. `kubernetes:apps/v1:Deployment@worker=update`:
 * the step's resource type must equal TYPE_TOKEN, its logical name must contain NAME_PART and its
 * op must be one of the OPs. `--require` rules must each match at least one changing step;
 * every changing step must match a `--require` or `--allow` rule. With no rules, any change fails.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** One step of `pulumi preview --json` (the fields this check reads). */
export interface PreviewStep {
  /** The engine's step op: `same`, `create`, `update`, `replace`, `delete`, ... */
  op: string;
  /** `urn:pulumi:<stack>::<project>::<parent types>$<type>::<name>`. */
  urn: string;
  /** Property paths that differ, with the kind of difference. */
  detailedDiff?: Record<string, { kind: string }> | null;
}

/** The document `pulumi preview --json` prints (only what this check reads). */
export interface PreviewDigest {
  steps?: PreviewStep[];
  changeSummary?: Record<string, number>;
}

/** A resource identified from its URN. */
export interface ResourceRef {
  /** Type token, e.g. `kubernetes:apps/v1:Deployment`. */
  type: string;
  /** Logical name (the last URN segment). */
  name: string;
}

/** An expected (or tolerated) change. */
export interface ChangeRule {
  /** Exact type token. */
  type: string;
  /** Substring of the logical name. */
  namePart: string;
  /** Accepted step ops. */
  ops: string[];
}

/** A changing step, as reported. */
export interface Change extends ResourceRef {
  op: string;
  /** Changed property paths (from `detailedDiff`), sorted. */
  paths: string[];
}

export interface ChangeReport {
  ok: boolean;
  changes: Change[];
  /** Human-readable reasons when `ok` is false. */
  problems: string[];
}

/**
 * Ops that change nothing. `read` refreshes a data source and `same` is a no-op; everything else
 * (create, update, replace, create-replacement, delete-replaced, delete, ...) is a change.
 */
const NO_CHANGE_OPS = new Set(["same", "read", "refresh"]);

/** Splits a URN into its resource type (innermost) and logical name. */
export function parseUrn(urn: string): ResourceRef {
  const parts = urn.split("::");
  if (parts.length < 4 || !parts[0].startsWith("urn:pulumi:")) {
    throw new Error(`not a Pulumi URN: ${urn}`);
  }
  const name = parts.slice(3).join("::");
  const typeChain = parts[2].split("$");
  return { type: typeChain[typeChain.length - 1], name };
}

/** Parses `TYPE@NAME_PART=OP[,OP]`; throws with the accepted form on anything else. */
export function parseRule(text: string): ChangeRule {
  const match = /^([^@=]+)@([^=]*)=([a-z-]+(?:,[a-z-]+)*)$/.exec(text);
  if (!match) {
    throw new Error(`bad rule "${text}": use TYPE_TOKEN@NAME_PART=OP[,OP]`);
  }
  return { type: match[1], namePart: match[2], ops: match[3].split(",") };
}

function matches(rule: ChangeRule, change: Change): boolean {
  return (
    change.type === rule.type && change.name.includes(rule.namePart) && rule.ops.includes(change.op)
  );
}

function describe(change: Change): string {
  const paths = change.paths.length > 0 ? ` [${change.paths.join(", ")}]` : "";
  return `${change.op} ${change.type} ${change.name}${paths}`;
}

/** Every step of the preview that changes something. */
export function changingSteps(digest: PreviewDigest): Change[] {
  return (digest.steps ?? [])
    .filter((step) => !NO_CHANGE_OPS.has(step.op))
    .map((step) => ({
      ...parseUrn(step.urn),
      op: step.op,
      paths: Object.keys(step.detailedDiff ?? {}).sort(),
    }));
}

/**
 * Checks that the preview changes exactly what the rules say: each `required` rule matches at
 * least one change, and each change matches a required or allowed rule.
 */
export function checkChanges(
  digest: PreviewDigest,
  required: ChangeRule[],
  allowed: ChangeRule[],
): ChangeReport {
  const changes = changingSteps(digest);
  const problems: string[] = [];
  for (const rule of required) {
    if (!changes.some((change) => matches(rule, change))) {
      problems.push(
        `expected a change (${rule.ops.join("|")}) of ${rule.type} named *${rule.namePart}*, found none`,
      );
    }
  }
  for (const change of changes) {
    if (![...required, ...allowed].some((rule) => matches(rule, change))) {
      problems.push(`unexpected change: ${describe(change)}`);
    }
  }
  return { ok: problems.length === 0, changes, problems };
}

/**
 * The first preview of an empty stack: every changing step must be a `create`, and there must be
 * some. Returns the creates by type, sorted by type.
 */
export function checkCreates(digest: PreviewDigest): {
  ok: boolean;
  byType: Array<[string, number]>;
  problems: string[];
} {
  const changes = changingSteps(digest);
  const problems = changes
    .filter((change) => change.op !== "create")
    .map((change) => `not a create on an empty stack: ${describe(change)}`);
  if (changes.length === 0) problems.push("the preview creates nothing");
  const counts = new Map<string, number>();
  for (const change of changes) counts.set(change.type, (counts.get(change.type) ?? 0) + 1);
  const byType = [...counts.entries()].sort(([a], [b]) => a.localeCompare(b));
  return { ok: problems.length === 0, byType, problems };
}

/** `pulumi stack export` (only what the counts read). */
export interface StackExport {
  deployment?: { resources?: Array<{ type: string }> };
}

/** Resources in a stack, by type token, sorted by type; the Stack and providers included. */
export function countByType(exported: StackExport): Array<[string, number]> {
  const counts = new Map<string, number>();
  for (const resource of exported.deployment?.resources ?? []) {
    counts.set(resource.type, (counts.get(resource.type) ?? 0) + 1);
  }
  return [...counts.entries()].sort(([a], [b]) => a.localeCompare(b));
}

/** A Pod as the API server returns it (only what the readiness check reads). */
export interface Pod {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string }> };
}

/** Pods per `app.kubernetes.io/component` label: how many exist and how many are Ready. */
export interface ComponentPods {
  component: string;
  total: number;
  ready: number;
  /** Pods that finished (Job pods): phase Succeeded. */
  succeeded: number;
}

/**
 * Groups pods by component (`<none>` without the label), sorted by component. Pods already being
 * deleted (a rolling update's old ones) are left out: they are on their way out.
 */
export function podReadiness(pods: Pod[]): ComponentPods[] {
  const byComponent = new Map<string, ComponentPods>();
  for (const pod of pods) {
    if (pod.metadata.deletionTimestamp !== undefined) continue;
    const component = pod.metadata.labels?.["app.kubernetes.io/component"] ?? "<none>";
    const entry = byComponent.get(component) ?? { component, total: 0, ready: 0, succeeded: 0 };
    entry.total += 1;
    const ready = (pod.status?.conditions ?? []).some(
      (c) => c.type === "Ready" && c.status === "True",
    );
    if (ready) entry.ready += 1;
    if (pod.status?.phase === "Succeeded") entry.succeeded += 1;
    byComponent.set(component, entry);
  }
  return [...byComponent.values()].sort((a, b) => a.component.localeCompare(b.component));
}

/** Checks `COMPONENT=N` expectations: exactly N pods of that component, all of them Ready. */
export function checkReady(pods: ComponentPods[], expected: Record<string, number>): string[] {
  const problems: string[] = [];
  for (const [component, want] of Object.entries(expected)) {
    const got = pods.find((p) => p.component === component);
    if (got === undefined || got.total !== want || got.ready !== want) {
      problems.push(
        `expected ${want} Ready ${component} pod(s), found ${got?.ready ?? 0} Ready of ${got?.total ?? 0}`,
      );
    }
  }
  return problems;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

function main(argv: string[]): number {
  const [command, file, ...rest] = argv;
  if (command === "counts" && file) {
    const counts = countByType(readJson<StackExport>(file));
    const total = counts.reduce((sum, [, n]) => sum + n, 0);
    console.log(`resources in the stack: ${total}`);
    for (const [type, n] of counts) console.log(`  ${String(n).padStart(3)}  ${type}`);
    return total > 0 ? 0 : 1;
  }
  if (command === "pods" && file) {
    const expected: Record<string, number> = {};
    for (let i = 0; i < rest.length; i += 2) {
      const match = rest[i] === "--ready" ? /^([\w-]+)=(\d+)$/.exec(rest[i + 1] ?? "") : null;
      if (!match) {
        console.error(
          `checks: expected --ready COMPONENT=N, got "${rest[i]} ${rest[i + 1] ?? ""}"`,
        );
        return 2;
      }
      expected[match[1]] = Number(match[2]);
    }
    const pods = podReadiness(readJson<{ items: Pod[] }>(file).items);
    console.log("pods by component (ready/total, succeeded):");
    for (const p of pods) {
      console.log(`  ${p.component.padEnd(12)} ${p.ready}/${p.total}, ${p.succeeded} succeeded`);
    }
    const problems = checkReady(pods, expected);
    for (const problem of problems) console.error(`checks: ${problem}`);
    return problems.length === 0 ? 0 : 1;
  }
  if (command === "creates" && file) {
    const report = checkCreates(readJson<PreviewDigest>(file));
    const total = report.byType.reduce((sum, [, n]) => sum + n, 0);
    console.log(`preview creates: ${total}`);
    for (const [type, n] of report.byType) console.log(`  ${String(n).padStart(3)}  ${type}`);
    for (const problem of report.problems) console.error(`checks: ${problem}`);
    return report.ok ? 0 : 1;
  }
  if (command === "changes" && file) {
    const required: ChangeRule[] = [];
    const allowed: ChangeRule[] = [];
    for (let i = 0; i < rest.length; i += 2) {
      const flag = rest[i];
      const value = rest[i + 1];
      if ((flag !== "--require" && flag !== "--allow") || value === undefined) {
        console.error(`checks: expected --require RULE or --allow RULE, got "${flag}"`);
        return 2;
      }
      (flag === "--require" ? required : allowed).push(parseRule(value));
    }
    const report = checkChanges(readJson<PreviewDigest>(file), required, allowed);
    console.log(`preview changes: ${report.changes.length}`);
    for (const change of report.changes) console.log(`  ${describe(change)}`);
    for (const problem of report.problems) console.error(`checks: ${problem}`);
    return report.ok ? 0 : 1;
  }
  console.error(
    "usage: checks.ts changes <preview.json> [--require RULE]... [--allow RULE]...\n" +
      "       checks.ts creates <preview.json>\n" +
      "       checks.ts pods <pod-list.json> [--ready COMPONENT=N]...\n" +
      "       checks.ts counts <stack-export.json>",
  );
  return 2;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    console.error(`checks: ${(error as Error).message}`);
    process.exitCode = 2;
  }
}
