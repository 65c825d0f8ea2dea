/**
 * The README's quick start ("Your own study in five minutes"), as written, on a fresh clone: the
 * repository is cloned into an empty folder (no node_modules, no .venv), the files the README
 * shows are written where it says, and its commands run in order. Slow on purpose (the first
 * `npm run local` installs the pinned npm packages and builds .venv from the lockfile): one test.
 */
import { execa } from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "./helpers/config.js";

const HEADING = "## Your own study in five minutes";

interface Block {
  lang: string;
  title?: string;
  body: string;
}

/** The fenced code blocks of the README's quick-start section, in order. */
function quickStartBlocks(readme: string): Block[] {
  const start = readme.indexOf(HEADING);
  if (start < 0) throw new Error(`README has no "${HEADING}" section`);
  const rest = readme.slice(start + HEADING.length);
  const end = rest.search(/^## /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  const blocks: Block[] = [];
  for (const m of section.matchAll(/^```(\w*)([^\n]*)\n([\s\S]*?)^```$/gm)) {
    const title = /title="([^"]+)"/.exec(m[2] ?? "")?.[1];
    blocks.push({ lang: m[1] ?? "", ...(title !== undefined ? { title } : {}), body: m[3] ?? "" });
  }
  return blocks;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "quickstart-"));
// The clone holds node_modules and .venv: remove it in a child process, so that the test
// worker's event loop (and its RPC with vitest) is never blocked for the minute it takes.
afterAll(async () => {
  await execa("rm", ["-rf", tmp]);
}, 600_000);

it("the README's quick start works as written on a fresh clone", async () => {
  const blocks = quickStartBlocks(fs.readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8"));
  // Step 1 is `git clone <url> dask-workspace && cd dask-workspace`: clone this repository's
  // committed state the same way.
  const clone = blocks.find((b) => b.lang === "bash" && b.body.includes("git clone"));
  expect(clone?.body).toMatch(/git clone \S.* dask-workspace && cd dask-workspace/);
  const repo = path.join(tmp, "dask-workspace");
  await execa("git", ["clone", "--quiet", PROJECT_ROOT, repo]);
  expect(fs.existsSync(path.join(repo, "node_modules"))).toBe(false);
  expect(fs.existsSync(path.join(repo, ".venv"))).toBe(false);

  const outputs: Array<{ command: string; stdout: string; stderr: string; seconds: number }> = [];
  for (const block of blocks) {
    if (block.title !== undefined) {
      const file = path.resolve(repo, block.title);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, block.body);
    } else if (block.lang === "bash" && !block.body.includes("git clone")) {
      const t0 = Date.now();
      const r = await execa("bash", ["-euo", "pipefail", "-c", block.body], {
        cwd: repo,
        reject: false,
        env: { ...process.env, INIT_CWD: repo },
        timeout: 1_500_000,
      });
      const seconds = (Date.now() - t0) / 1000;
      expect(r.exitCode, `${block.body}\n${r.stderr.slice(-4000)}`).toBe(0);
      outputs.push({ command: block.body.trim(), stdout: r.stdout, stderr: r.stderr, seconds });
    }
  }
  // The study folder is outside the clone, as the README lays it out.
  expect(fs.existsSync(path.join(tmp, "my-study", "study.yaml"))).toBe(true);
  expect(fs.existsSync(path.join(tmp, "my-study", "growth", "model.py"))).toBe(true);

  const local = outputs.find((o) => o.command.startsWith("npm run local"));
  expect(local?.stdout).toMatch(/groups_total\s+10/);
  expect(local?.stdout).toMatch(/groups_persisted\s+10/);
  expect(local?.stderr).toContain("study checked in");
  const read = outputs.find((o) => o.command.includes("read_results"));
  expect(read?.stdout).toContain("final_size");
  expect(read?.stdout).toContain("time_to_half");
  expect(read?.stdout).toMatch(/^0 failures$/m);
  // 5 rates × 2 capacities: one row per parameter set in the pivot.
  expect(read?.stdout.split("\n").filter((l) => /^\s*(0\.\d\s+)?\d{4}\s+\d/.test(l))).toHaveLength(
    10,
  );

  // "The same command again ... once every group is there it says so and starts nothing."
  const again = await execa("bash", ["-c", local!.command], {
    cwd: repo,
    reject: false,
    env: { ...process.env, INIT_CWD: repo },
  });
  expect(again.exitCode, again.stderr).toBe(0);
  expect(again.stderr).toContain("all 10 groups are already persisted");
  expect(again.stderr).not.toContain("workspace up");
  process.stderr.write(
    `quick start timings: ${outputs.map((o) => `${o.command.split("\n")[0]} ${o.seconds.toFixed(1)}s`).join("; ")}\n`,
  );
}, 1_800_000);
