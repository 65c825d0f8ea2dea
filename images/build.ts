/**
 * `npm run images:build -- --registry <host[/path]> [--tag <tag>] [--platform <p>]
 *   [--requirements <file>] [--package <dir>]... [--dry-run]`
 *
 * Builds and pushes the workspace's two images with `docker buildx build --push`, from the
 * repository root as build context:
 *
 * - `<registry>/dask-workspace/dask:<tag>`   from `images/dask.Dockerfile` (scheduler, workers)
 * - `<registry>/dask-workspace/runner:<tag>` from `images/runner.Dockerfile` (runner Jobs)
 *
 * The names match the stack config defaults (`images.dask`, `images.runner` =
 * `dask-workspace/<image>:<package version>`), which `target: azure` resolves against the stack's
 * registry. Log in first (`az acr login --name <registry>` or `docker login <registry>`).
 * `--dry-run` prints the exact commands and runs nothing (no Docker needed).
 *
 * With `--requirements <file>` (pinned `name==version` lines) and/or `--package <dir>` (a local
 * distribution or package folder; repeatable), a study's own dependencies go into BOTH images:
 * each base image is built as `<name>:<tag>-base`, then `images/extras.Dockerfile` builds
 * `<name>:<tag>` FROM it with those packages (see `extras.ts` for the pinning rules).
 *
 * Exit codes: 0 built (or planned); 2 bad flags; 1 docker failed.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type ExtrasInput, extrasProblems, writeExtrasContext } from "./extras.js";

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The images this project builds: short name -> Dockerfile (relative to the project root). */
export const IMAGES: ReadonlyArray<{ name: "dask" | "runner"; dockerfile: string }> = [
  { name: "dask", dockerfile: "images/dask.Dockerfile" },
  { name: "runner", dockerfile: "images/runner.Dockerfile" },
];

/** Image repository below the registry: `<registry>/dask-workspace/<name>`. */
export const REPOSITORY_PREFIX = "dask-workspace";

export interface BuildOptions {
  /** Registry host with an optional path, e.g. `myacr.azurecr.io` or `ghcr.io/org`. */
  registry: string;
  /** Image tag. Default: the package version (the stack config's default image tag). */
  tag: string;
  /** `docker buildx --platform`. Default `linux/amd64` (AKS node pools). */
  platform: string;
  /** Push to the registry (`--push`); false builds into the buildx cache only. */
  push: boolean;
  /** The build context of images/extras.Dockerfile (`--requirements` / `--package`); none: plain. */
  extrasContext?: string;
  /**
   * Where buildx writes each image's build metadata (`--metadata-file`), from which the pushed
   * digests are read and printed. Absent: no metadata files (a dry run shows none).
   */
  metadataDir?: string;
}

export interface PlannedImage {
  name: string;
  dockerfile: string;
  ref: string;
  command: string[];
}

/** Docker's tag grammar. */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** A registry host (optionally with port) and optional lower-case path, no scheme. */
const REGISTRY = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/;

/** Problems with the options, one message each (empty when they are valid). */
export function optionProblems(opts: Partial<BuildOptions>): string[] {
  const problems: string[] = [];
  if (!opts.registry) {
    problems.push("--registry is required, e.g. --registry myacr.azurecr.io");
  } else if (!REGISTRY.test(opts.registry)) {
    problems.push(
      `--registry ${JSON.stringify(opts.registry)} is not a registry host[/path] ` +
        "(lower case, no scheme, no trailing slash), e.g. myacr.azurecr.io",
    );
  }
  if (opts.tag !== undefined && !TAG.test(opts.tag)) {
    problems.push(
      `--tag ${JSON.stringify(opts.tag)} is not a valid image tag (letters, digits, _ . -; ` +
        "at most 128 characters; not starting with . or -)",
    );
  }
  if (opts.platform !== undefined && !/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/.test(opts.platform)) {
    problems.push(`--platform ${JSON.stringify(opts.platform)} is not os/arch, e.g. linux/amd64`);
  }
  return problems;
}

/** The study-dependencies Dockerfile (FROM a base image). */
export const EXTRAS_DOCKERFILE = "images/extras.Dockerfile";

/** The exact `docker buildx build` commands, in order. Pure. */
export function buildPlan(opts: BuildOptions): PlannedImage[] {
  const command = (o: {
    name: string;
    dockerfile: string;
    ref: string;
    context: string;
    buildArgs?: string[];
  }) => [
    "docker",
    "buildx",
    "build",
    "--file",
    o.dockerfile,
    ...(o.buildArgs ?? []).flatMap((a) => ["--build-arg", a]),
    "--tag",
    o.ref,
    "--platform",
    opts.platform,
    "--label",
    `org.opencontainers.image.version=${opts.tag}`,
    "--label",
    `org.opencontainers.image.title=${REPOSITORY_PREFIX}-${o.name}`,
    ...(opts.metadataDir !== undefined
      ? ["--metadata-file", metadataFile(opts.metadataDir, o.ref)]
      : []),
    opts.push ? "--push" : "--load",
    o.context,
  ];
  return IMAGES.flatMap(({ name, dockerfile }) => {
    const ref = `${opts.registry}/${REPOSITORY_PREFIX}/${name}:${opts.tag}`;
    if (opts.extrasContext === undefined) {
      return [{ name, dockerfile, ref, command: command({ name, dockerfile, ref, context: "." }) }];
    }
    const base = `${ref}-base`;
    return [
      {
        name,
        dockerfile,
        ref: base,
        command: command({ name, dockerfile, ref: base, context: "." }),
      },
      {
        name,
        dockerfile: EXTRAS_DOCKERFILE,
        ref,
        command: command({
          name,
          dockerfile: join(PROJECT_ROOT, EXTRAS_DOCKERFILE),
          ref,
          context: opts.extrasContext,
          buildArgs: [`BASE_IMAGE=${base}`],
        }),
      },
    ];
  });
}

/** The metadata file buildx writes for image `ref` under `dir`. */
export function metadataFile(dir: string, ref: string): string {
  return join(dir, `${ref.replace(/[^A-Za-z0-9_.-]+/g, "_")}.json`);
}

/** `containerimage.digest` of a buildx metadata file (`sha256:<64 hex>`), or undefined. */
export function digestFromMetadata(json: string): string | undefined {
  try {
    const d = (JSON.parse(json) as Record<string, unknown>)["containerimage.digest"];
    return typeof d === "string" && /^sha256:[0-9a-f]{64}$/.test(d) ? d : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The stack config lines that pin the pushed images by digest, ready to paste under
 * `dask-workspace:images:` (the tag stays for humans; the digest is what is pulled).
 */
export function pinnedConfigLines(
  pushed: ReadonlyArray<{ name: string; ref: string; digest: string }>,
): string[] {
  return pushed.map((p) => `${p.name}: ${p.ref}@${p.digest}`);
}

/** The package version: the default tag, equal to the stack config's default image tags. */
export function packageVersion(root: string = PROJECT_ROOT): string {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

/** Quotes a word for display when it needs it (the plan is meant to be copy-pasted). */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

const USAGE = `usage: npm run images:build -- --registry <host[/path]> [--tag <tag>] [--platform <os/arch>]
         [--requirements <file>] [--package <dir>]... [--no-push] [--dry-run]

  --registry <host>      registry to push to, e.g. myacr.azurecr.io (log in first: az acr login)
  --tag <tag>            image tag (default: the package version, as in the stack config defaults)
  --platform <p>         target platform (default linux/amd64)
  --requirements <file>  a study's extra packages, pinned name==version (e.g. numba==0.61.2),
                         installed into both images
  --package <dir>        a local package (pyproject.toml/setup.py, or a folder with __init__.py)
                         installed into both images; repeatable
  --no-push              build only (--load into the local Docker) instead of pushing
  --dry-run              print the docker commands and run nothing`;

class UsageError extends Error {}

interface Parsed {
  opts: BuildOptions;
  dryRun: boolean;
  extras?: ExtrasInput;
}

function parse(argv: string[]): Parsed {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        registry: { type: "string" },
        tag: { type: "string" },
        platform: { type: "string" },
        requirements: { type: "string" },
        package: { type: "string", multiple: true },
        "no-push": { type: "boolean", default: false },
        "dry-run": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const partial = { registry: values.registry, tag: values.tag, platform: values.platform };
  const problems = optionProblems(partial);
  const extras: ExtrasInput | undefined =
    values.requirements !== undefined || (values.package ?? []).length > 0
      ? {
          ...(values.requirements !== undefined
            ? { requirements: resolve(values.requirements) }
            : {}),
          packages: (values.package ?? []).map((p) => resolve(p)),
        }
      : undefined;
  if (extras !== undefined) problems.push(...extrasProblems(extras, readLock()));
  if (problems.length > 0) {
    throw new UsageError(problems.join("\n"));
  }
  return {
    opts: {
      registry: values.registry as string,
      tag: values.tag ?? packageVersion(),
      platform: values.platform ?? "linux/amd64",
      push: !values["no-push"],
    },
    dryRun: values["dry-run"] ?? false,
    ...(extras !== undefined ? { extras } : {}),
  };
}

function readLock(): string {
  return readFileSync(join(PROJECT_ROOT, "runner", "requirements.lock"), "utf8");
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`images:build: ${err.message.replaceAll("\n", "\nimages:build: ")}`);
      console.error(USAGE);
      return 2;
    }
    throw err;
  }
  if (parsed.extras !== undefined) {
    const context = mkdtempSync(join(tmpdir(), "dask-workspace-extras-"));
    const added = writeExtrasContext(context, parsed.extras, readLock());
    parsed.opts.extrasContext = context;
    console.error(
      `images:build: study dependencies for both images: ` +
        [
          ...added.map((a) => `${a.name}==${a.version}`),
          ...parsed.extras.packages.map((p) => `${basename(p)} (local)`),
        ].join(", ") +
        ` (build context ${context})`,
    );
  }
  const metadataDir =
    parsed.opts.push && !parsed.dryRun
      ? mkdtempSync(join(tmpdir(), "dask-workspace-build-"))
      : undefined;
  const plan = buildPlan({ ...parsed.opts, ...(metadataDir !== undefined ? { metadataDir } : {}) });
  if (parsed.dryRun) {
    console.log(`# build context: ${PROJECT_ROOT}`);
    for (const image of plan) {
      console.log(image.command.map(shellWord).join(" "));
    }
    return 0;
  }
  const { execa } = await import("execa");
  try {
    await execa("docker", ["buildx", "version"], { cwd: PROJECT_ROOT });
  } catch {
    console.error(
      "images:build: `docker buildx` is not available (is Docker installed and its engine running?). " +
        "Use --dry-run to see the commands.",
    );
    return 1;
  }
  for (const image of plan) {
    console.error(`images:build: ${image.ref}`);
    const [cmd, ...args] = image.command;
    const result = await execa(cmd as string, args, {
      cwd: PROJECT_ROOT,
      stdio: "inherit",
      reject: false,
    });
    if (result.exitCode !== 0) {
      console.error(`images:build: building ${image.ref} failed (exit ${result.exitCode ?? "?"})`);
      return 1;
    }
  }
  if (parsed.opts.extrasContext !== undefined) {
    rmSync(parsed.opts.extrasContext, { recursive: true, force: true });
  }
  console.error(
    `images:build: ${parsed.opts.push ? "pushed" : "built"} ${plan.map((p) => p.ref).join(", ")}`,
  );
  if (metadataDir !== undefined) {
    // The final image of each name (after its -base when there are extras).
    const finals = IMAGES.map(({ name }) => plan.filter((p) => p.name === name).at(-1)!);
    const pushed = finals.map((p) => {
      let digest: string | undefined;
      try {
        digest = digestFromMetadata(readFileSync(metadataFile(metadataDir, p.ref), "utf8"));
      } catch {
        digest = undefined;
      }
      return { name: p.name, ref: p.ref, digest };
    });
    rmSync(metadataDir, { recursive: true, force: true });
    const missing = pushed.filter((p) => p.digest === undefined).map((p) => p.ref);
    if (missing.length > 0) {
      console.error(`images:build: buildx reported no digest for ${missing.join(", ")}`);
      return 1;
    }
    // On stdout, so it can be captured: paste under `dask-workspace:images:` in the stack file.
    console.log("# pushed; pin them in the stack config (dask-workspace:images):");
    for (const line of pinnedConfigLines(
      pushed as Array<{ name: string; ref: string; digest: string }>,
    )) {
      console.log(`  ${line}`);
    }
  }
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`images:build: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
