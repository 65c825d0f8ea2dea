/**
 * Study bundles on the TypeScript side (infra/workspace/bundle.ts): the selection rules, the hash,
 * the size refusal, and the same file list and hash as the runner's
 * `python -m dask_workspace bundle STUDY --json` (the contract both languages implement).
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BundleError,
  buildBundle,
  bundleHash,
  bundleSizeProblem,
  encodedBundleBytes,
  fnmatchRegex,
  isIgnored,
  MAX_ENCODED_BUNDLE_BYTES,
  parseIgnore,
} from "../infra/workspace/bundle.js";
import { PROJECT_ROOT } from "./helpers/config.js";

const PYTHON = join(PROJECT_ROOT, ".venv", "bin", "python");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A study folder with the given files (path → content) in a fresh temp dir. */
function studyFolder(files: Record<string, string | Buffer>): string {
  const root = mkdtempSync(join(tmpdir(), "bundle-test-"));
  dirs.push(root);
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), content);
  }
  return root;
}

/** Every kind of entry the rules distinguish. */
const RICH: Record<string, string> = {
  "study.yaml": "name: rich\n",
  "model.py": "def simulate(*, params, seed):\n    return seed\n",
  "mypkg/__init__.py": "",
  "mypkg/core.py": "X = 1\n",
  "mypkg/__pycache__/core.cpython-311.pyc": "bytecode",
  "mypkg/stale.pyc": "bytecode",
  "mypkg/opt.pyo": "bytecode",
  ".git/HEAD": "ref: refs/heads/main\n",
  ".env": "SECRET=1\n",
  "mypkg/.hidden.py": "",
  "node_modules/x/index.js": "",
  "results/run1/part.parquet": "data",
  "out/study.json": "{}",
  "out/manifest/00000.json": "{}",
  "data/big.csv": "a,b\n1,2\n",
  "notes/draft.txt": "hello",
  "notes/keep.md": "keep",
  "docs/data/readme.txt": "a folder named data below docs",
  "scratch.tmp": "tmp",
  "deep/a/scratch.tmp": "tmp",
  "configs/x.yaml": "a: 1\n",
  "ünïcode/модель.py": "Y = 2\n",
  "Zeta.py": "",
  ".studyignore": "# comments and blank lines are ignored\n\n*.tmp\n/data/\nnotes/draft.txt\n",
};

describe("ignore patterns (fnmatch, as Python's)", () => {
  it("translates *, ? and sets like fnmatch.translate", () => {
    expect(fnmatchRegex("*.py").test("a/b.py")).toBe(true); // * crosses "/" in fnmatch
    expect(fnmatchRegex("?.py").test("ab.py")).toBe(false);
    expect(fnmatchRegex("[ab]x").test("bx")).toBe(true);
    expect(fnmatchRegex("[!ab]x").test("bx")).toBe(false);
    expect(fnmatchRegex("[!ab]x").test("cx")).toBe(true);
    expect(fnmatchRegex("a[b").test("a[b")).toBe(true); // an unclosed [ is literal
    expect(fnmatchRegex("a.b").test("axb")).toBe(false);
  });

  it("matches names at any depth, anchored paths from the study folder, folders only with /", () => {
    const rules = parseIgnore("# c\n\n*.tmp\n/data/\nnotes/draft.txt\nbuild/\n");
    expect(rules.map((r) => [r.anchored, r.dirOnly])).toEqual([
      [false, false],
      [true, true],
      [true, false],
      [false, true],
    ]);
    expect(isIgnored(rules, "deep/a/x.tmp", false)).toBe(true);
    expect(isIgnored(rules, "data", true)).toBe(true);
    expect(isIgnored(rules, "docs/data", true)).toBe(false); // anchored: only the top one
    expect(isIgnored(rules, "notes/draft.txt", false)).toBe(true);
    expect(isIgnored(rules, "x/build", true)).toBe(true);
    expect(isIgnored(rules, "x/build", false)).toBe(false); // a file named build stays
  });
});

describe("buildBundle", () => {
  it("selects the study folder minus hidden, caches, results locations and ignored paths", () => {
    const root = studyFolder(RICH);
    const b = buildBundle(join(root, "study.yaml"));
    expect(b.studyDir).toBe(root);
    expect(b.files.map((f) => f.path)).toEqual([
      "Zeta.py",
      "configs/x.yaml",
      "docs/data/readme.txt",
      "model.py",
      "mypkg/__init__.py",
      "mypkg/core.py",
      "notes/keep.md",
      "study.yaml",
      "ünïcode/модель.py",
    ]);
    expect(b.totalBytes).toBe(b.files.reduce((n, f) => n + f.size, 0));
    const model = b.files.find((f) => f.path === "model.py")!;
    expect(Buffer.from(model.base64, "base64").toString("utf8")).toBe(RICH["model.py"]);
  });

  it("hashes relpath, NUL, sha256(content), newline per file in path order", () => {
    const root = studyFolder({ "study.yaml": "name: a\n", "b.py": "B\n", "a/x.py": "X\n" });
    const sha = (s: string) => createHash("sha256").update(s).digest("hex");
    const expected = createHash("sha256")
      .update(`a/x.py\0${sha("X\n")}\nb.py\0${sha("B\n")}\nstudy.yaml\0${sha("name: a\n")}\n`)
      .digest("hex");
    expect(buildBundle(join(root, "study.yaml")).hash).toBe(expected);
    // Order of the input never matters; any content change does.
    expect(
      bundleHash([
        { path: "b", sha256: "2" },
        { path: "a", sha256: "1" },
      ]),
    ).toBe(
      bundleHash([
        { path: "a", sha256: "1" },
        { path: "b", sha256: "2" },
      ]),
    );
    writeFileSync(join(root, "b.py"), "B2\n");
    expect(buildBundle(join(root, "study.yaml")).hash).not.toBe(expected);
  });

  it("follows a symlink inside the study folder and refuses one that leaves it", () => {
    const root = studyFolder({ "study.yaml": "name: l\n", "lib/real.py": "R = 1\n" });
    symlinkSync(join(root, "lib", "real.py"), join(root, "alias.py"));
    expect(buildBundle(join(root, "study.yaml")).files.map((f) => f.path)).toEqual([
      "alias.py",
      "lib/real.py",
      "study.yaml",
    ]);
    const outside = studyFolder({ "secret.py": "S = 1\n" });
    symlinkSync(join(outside, "secret.py"), join(root, "escape.py"));
    expect(() => buildBundle(join(root, "study.yaml"))).toThrow(BundleError);
    expect(() => buildBundle(join(root, "study.yaml"))).toThrow(
      /escape\.py is a symlink to .*secret\.py, outside the study folder/,
    );
  });

  it("refuses a bundle a ConfigMap cannot carry: its size, largest files and the fix", () => {
    const big = Buffer.alloc(500 * 1024, 1);
    const root = studyFolder({
      "study.yaml": "name: big\n",
      "weights.bin": big,
      "table.bin": Buffer.alloc(300 * 1024, 2),
      "model.py": "M = 1\n",
    });
    const b = buildBundle(join(root, "study.yaml"));
    expect(encodedBundleBytes(b)).toBeGreaterThan(MAX_ENCODED_BUNDLE_BYTES);
    const message = bundleSizeProblem(b, "big/study.yaml")!;
    expect(message).toContain("is 800 KiB in 4 file(s), 1.0 MiB base64-encoded");
    expect(message).toContain("Largest files: weights.bin (500 KiB), table.bin (300 KiB)");
    expect(message).toContain("npm run images:build -- --registry <registry> --package <dir>");
    expect(message).toContain(".studyignore");
    // Ignoring the data makes it fit.
    writeFileSync(join(root, ".studyignore"), "*.bin\n");
    expect(bundleSizeProblem(buildBundle(join(root, "study.yaml")), "big/study.yaml")).toBe(
      undefined,
    );
  });
});

/** The runner's view of a bundle (`python -m dask_workspace bundle STUDY --json`). */
async function pythonBundle(study: string) {
  const r = await execa(PYTHON, ["-m", "dask_workspace", "bundle", study, "--json"], {
    cwd: PROJECT_ROOT,
    reject: false,
  });
  if (r.exitCode !== 0) throw new Error(`bundle exited ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(r.stdout) as {
    files: Array<{ path: string; size: number }>;
    total_bytes: number;
    hash: string;
  };
}

describe("the same bundle in Python and TypeScript", () => {
  it("examples/studies/own-model: same files, sizes and hash", async () => {
    const dir = join(PROJECT_ROOT, "examples", "studies", "own-model");
    const study = readdirSync(dir).find((f) => /\.(ya?ml|json)$/.test(f))!;
    const ts = buildBundle(join(dir, study));
    const py = await pythonBundle(join(dir, study));
    expect(py.files).toEqual(ts.files.map((f) => ({ path: f.path, size: f.size })));
    expect(py.total_bytes).toBe(ts.totalBytes);
    expect(py.hash).toBe(ts.hash);
    expect(ts.files.some((f) => f.path.endsWith(".py"))).toBe(true);
  });

  it("a folder with every rule in play: same files and hash", async () => {
    const root = studyFolder(RICH);
    const ts = buildBundle(join(root, "study.yaml"));
    const py = await pythonBundle(join(root, "study.yaml"));
    expect(py.files.map((f) => f.path)).toEqual(ts.files.map((f) => f.path));
    expect(py.hash).toBe(ts.hash);
  });
});
