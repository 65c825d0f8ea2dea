/**
 * The runner Job tells the runner which pods are this workspace's workers (for its OOMKilled
 * watcher) with a label selector. The selector must match exactly the worker pod template's
 * labels and nothing of another workspace instance, or pod OOM kills would go uncounted.
 * Checked on the real program's rendered local stack.
 */
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { render } from "../infra/render.js";
import { workerPodSelector } from "../infra/workspace/runner.js";
import { PROJECT_ROOT } from "./helpers/config.js";

const SELECTOR_ENV = "DASK_WORKSPACE__RUNNER__KUBERNETES__WORKER_SELECTOR";

let out: string;
beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), "runner-watch-"));
  await render({ stack: "local", configFile: join(PROJECT_ROOT, "Pulumi.local.yaml"), out });
});
afterAll(async () => {
  await rm(out, { recursive: true, force: true });
});

async function manifest(kind: string): Promise<any> {
  const dir = join(out, "kubernetes");
  const file = (await readdir(dir)).find((f) => f.includes(`-${kind}`));
  if (file === undefined) throw new Error(`no ${kind} rendered`);
  return parse(await readFile(join(dir, file), "utf8"));
}

function parseSelector(selector: string): Record<string, string> {
  return Object.fromEntries(selector.split(",").map((term) => term.split("=") as [string, string]));
}

describe("runner Job → worker pod selector", () => {
  it("selects exactly the worker pods of this instance", async () => {
    const job = await manifest("Job");
    const workers = await manifest("Deployment-dask-local-dask-worker");
    const env = job.spec.template.spec.containers[0].env as { name: string; value: string }[];
    const selector = env.find((e) => e.name === SELECTOR_ENV)?.value;
    expect(selector).toBeDefined();
    const terms = parseSelector(selector!);
    const podLabels = workers.spec.template.metadata.labels as Record<string, string>;
    for (const [key, value] of Object.entries(terms)) {
      expect(podLabels[key]).toBe(value);
    }
    expect(terms["app.kubernetes.io/component"]).toBe("worker");
    expect(terms["app.kubernetes.io/instance"]).toBe(podLabels["app.kubernetes.io/instance"]);
  });

  it("differs between instances", () => {
    expect(workerPodSelector("a")).not.toBe(workerPodSelector("b"));
    expect(parseSelector(workerPodSelector("a"))["app.kubernetes.io/instance"]).toBe("a");
  });
});
