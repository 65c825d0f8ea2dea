/**
 * `npm run scan`'s pure part: the scanners' JSON outputs (trimmed from real runs of the pinned
 * versions) become findings, and the checked-in allow-list judges them.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  AllowListError,
  checkovFindings,
  counts,
  type Finding,
  judge,
  kubeconformFindings,
  kubeScoreFindings,
  parseAllowList,
} from "../scan/findings.js";
import { stackOfFile } from "../scan/scan.js";
import { PROJECT_ROOT } from "./helpers/config.js";

const KUBECONFORM = JSON.stringify({
  resources: [
    {
      filename: "/r/local/kubernetes/apps-v1-Deployment-dask-local-dask-scheduler.yaml",
      kind: "Deployment",
      name: "dask-scheduler",
      version: "apps/v1",
      status: "statusInvalid",
      msg: "jsonschema validation failed - at '/spec': additional properties 'replicaz' not allowed",
    },
    {
      filename: "/r/dev/kubernetes/v1-Namespace-dask-dev.yaml",
      kind: "Namespace",
      name: "dask-dev",
      version: "v1",
      status: "statusValid",
      msg: "",
    },
  ],
});

const KUBE_SCORE = JSON.stringify([
  {
    object_name: "Deployment/apps/v1/dask-local/dask-scheduler",
    type_meta: { kind: "Deployment", apiVersion: "apps/v1" },
    object_meta: { name: "dask-scheduler", namespace: "dask-local" },
    file_name: "/r/local/kubernetes/apps-v1-Deployment-dask-local-dask-scheduler.yaml",
    checks: [
      {
        check: { id: "stable-version", name: "Stable version" },
        grade: 10,
        skipped: false,
        comments: null,
      },
      {
        check: { id: "container-image-pull-policy", name: "Container Image Pull Policy" },
        grade: 1,
        skipped: false,
        comments: [
          { path: "scheduler", summary: "ImagePullPolicy is not set to Always", description: "" },
        ],
      },
      {
        check: { id: "pod-probes", name: "Pod Probes" },
        grade: 10,
        skipped: true,
        comments: [{ path: "", summary: "skipped", description: "" }],
      },
      {
        check: { id: "deployment-strategy", name: "Deployment Strategy" },
        grade: 5,
        skipped: false,
        comments: [{ path: "", summary: "Deployment update strategy", description: "" }],
      },
    ],
  },
]);

const CHECKOV = JSON.stringify({
  check_type: "kubernetes",
  results: {
    failed_checks: [
      {
        check_id: "CKV_K8S_38",
        check_name: "Ensure that Service Account Tokens are only mounted where necessary",
        resource: "Job.dask-local.dask-job-sir-grid",
        file_path: "/local/kubernetes/batch-v1-Job-dask-local-dask-job-sir-grid.yaml",
      },
    ],
  },
});

const stackOf = (f: string) => stackOfFile(f.startsWith("/") ? f : `/${f}`);

describe("scanner outputs", () => {
  it("kubeconform: every resource that is not valid", () => {
    expect(kubeconformFindings(KUBECONFORM, stackOf)).toEqual([
      {
        tool: "kubeconform",
        check: "schema",
        stack: "local",
        object: "Deployment/dask-scheduler",
        message:
          "statusInvalid: jsonschema validation failed - at '/spec': additional properties 'replicaz' not allowed",
      },
    ]);
  });

  it("kube-score: checks below grade 10 and not skipped, one per comment, with the container", () => {
    expect(kubeScoreFindings(KUBE_SCORE, stackOf)).toEqual([
      {
        tool: "kube-score",
        check: "container-image-pull-policy",
        stack: "local",
        object: "Deployment/dask-scheduler",
        container: "scheduler",
        message: "CRITICAL: ImagePullPolicy is not set to Always",
      },
      {
        tool: "kube-score",
        check: "deployment-strategy",
        stack: "local",
        object: "Deployment/dask-scheduler",
        message: "WARNING: Deployment update strategy",
      },
    ]);
  });

  it("checkov: failed checks, Kind.namespace.name as Kind/name", () => {
    expect(checkovFindings(CHECKOV, stackOf)).toEqual([
      {
        tool: "checkov",
        check: "CKV_K8S_38",
        stack: "local",
        object: "Job/dask-job-sir-grid",
        message: "Ensure that Service Account Tokens are only mounted where necessary",
      },
    ]);
  });
});

describe("allow-list", () => {
  const finding = (over: Partial<Finding> = {}): Finding => ({
    tool: "kube-score",
    check: "deployment-strategy",
    stack: "local",
    object: "Deployment/dask-scheduler",
    message: "WARNING",
    ...over,
  });

  it("matches by tool, check, object glob, container and stack; the rest is unjustified", () => {
    const entries = parseAllowList(`allow:
  - tool: kube-score
    check: deployment-strategy
    objects: ["Deployment/*-scheduler"]
    reason: The scheduler is recreated on purpose, two would split the workers.
  - tool: kube-score
    check: horizontalpodautoscaler-replicas
    stacks: [dev]
    reason: The dev stack scales down to one pod to stay cheap when idle.
  - tool: checkov
    check: CKV_K8S_15
    reason: An entry that matches nothing in this test, reported as unused.
`);
    const ok = finding();
    const otherObject = finding({ object: "Deployment/dask-worker" });
    const hpaDev = finding({ check: "horizontalpodautoscaler-replicas", stack: "dev" });
    const hpaLocal = finding({ check: "horizontalpodautoscaler-replicas", stack: "local" });
    const j = judge([ok, otherObject, hpaDev, hpaLocal], entries);
    expect(j.allowed.map((a) => a.finding)).toEqual([ok, hpaDev]);
    expect(j.unjustified).toEqual([otherObject, hpaLocal]);
    expect(j.unused.map((e) => e.check)).toEqual(["CKV_K8S_15"]);
    expect(counts(j)["kube-score"]).toEqual({ total: 4, allowed: 2, unjustified: 2 });
  });

  it("refuses an entry without a reason, with an unknown tool or key", () => {
    expect(() =>
      parseAllowList(`allow:
  - tool: polaris
    check: x
    reason: short
    why: no
`),
    ).toThrow(AllowListError);
    try {
      parseAllowList("allow:\n  - tool: polaris\n    check: x\n    reason: short\n    why: no\n");
    } catch (e) {
      expect((e as Error).message.split("\n")).toEqual([
        "allow[0]: unknown key why",
        'allow[0].tool: "polaris" is not one of kubeconform, kube-score, checkov',
        "allow[0].reason: say why this finding is acceptable (at least a sentence)",
      ]);
    }
  });

  it("the checked-in allow-list is valid and never excuses a schema violation", () => {
    const entries = parseAllowList(
      readFileSync(join(PROJECT_ROOT, "scan/allow-list.yaml"), "utf8"),
    );
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.filter((e) => e.tool === "kubeconform")).toEqual([]);
    // No blanket entry: each names the objects it covers.
    for (const e of entries) expect(e.objects, `${e.tool} ${e.check}`).toBeDefined();
  });
});
