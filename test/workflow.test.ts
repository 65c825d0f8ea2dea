/**
 * The GitHub workflows: valid against GitHub's workflow schema (action-validator), tests on pull
 * requests, and `pulumi preview` of the dev stack commented on every pull request.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { validateWorkflow } from "@action-validator/core";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "./helpers/config.js";

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function workflow(name: string): Promise<{ text: string; doc: Obj }> {
  const text = await readFile(join(PROJECT_ROOT, ".github", "workflows", name), "utf8");
  return { text, doc: parseYaml(text) as Obj };
}

describe.each(["ci.yml", "preview.yml"])("%s", (name) => {
  it("is a valid GitHub workflow", async () => {
    const { text } = await workflow(name);
    expect(validateWorkflow(text).errors).toEqual([]);
  });

  it("runs on pull requests", async () => {
    const { doc } = await workflow(name);
    expect(Object.keys(doc.on)).toContain("pull_request");
  });
});

describe("the validator", () => {
  it("rejects a broken workflow (so the checks above can fail)", async () => {
    const { doc } = await workflow("preview.yml");
    delete doc.jobs.preview["runs-on"];
    doc.jobs.preview.steps = "not a list";
    const result = validateWorkflow(JSON.stringify(doc));
    expect(result.errors.length).toBeGreaterThan(0);
  });
});

describe("ci.yml", () => {
  it("installs from nothing and runs npm test through .ci/run", async () => {
    const { doc } = await workflow("ci.yml");
    const steps = doc.jobs.test.steps as Obj[];
    expect(steps.some((s) => s.run === "bash .ci/run")).toBe(true);
    const ciRun = await readFile(join(PROJECT_ROOT, ".ci", "run"), "utf8");
    expect(ciRun).toMatch(/^npm test$/m);
  });
});

describe("preview.yml", () => {
  it("previews the dev stack with pulumi/actions and comments on the pull request", async () => {
    const { doc } = await workflow("preview.yml");
    const steps = doc.jobs.preview.steps as Obj[];
    const pulumi = steps.filter(
      (s) => typeof s.uses === "string" && s.uses.startsWith("pulumi/actions@"),
    );
    expect(pulumi).toHaveLength(1);
    const step = pulumi[0]!;
    expect(step.with).toMatchObject({
      command: "preview",
      "stack-name": "dev",
      "comment-on-pr": true,
      "github-token": "${{ secrets.GITHUB_TOKEN }}",
    });
    // The backend login comes from secrets, never from the file.
    expect(step.env.PULUMI_ACCESS_TOKEN).toBe("${{ secrets.PULUMI_ACCESS_TOKEN }}");
    expect(step.with["cloud-url"]).toBe("${{ secrets.PULUMI_BACKEND_URL }}");
    // Commenting needs write access to pull requests; nothing else is writable.
    expect(doc.permissions).toEqual({
      contents: "read",
      "pull-requests": "write",
      "id-token": "write",
    });
    // The program's dependencies are installed before the action runs it.
    const install = steps.findIndex((s) => s.run === "npm ci --no-audit --no-fund");
    expect(install).toBeGreaterThanOrEqual(0);
    expect(install).toBeLessThan(steps.indexOf(step));
  });
});
