/**
 * A study's own dependencies for the workspace images (`npm run images:build -- --requirements
 * <file> --package <dir>`): checks them and prepares the build context of
 * `images/extras.Dockerfile`. Pure apart from reading the inputs and writing the context folder.
 *
 * Everything is pinned: a requirements line must be `name==version` (hashes allowed); a package
 * the base image already pins (runner/requirements.lock) must keep that version, so a study can
 * never move dask, distributed or numpy under the workspace. Local packages are installed
 * without dependency resolution, and the build's `pip check` refuses a dependency that is not
 * pinned in the requirements file.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { buildFolderBundle } from "../infra/workspace/bundle.js";

/** A requirement's canonical name (PEP 503): lower case, runs of `-_.` as `-`. */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

/** name → version pins of a pip-compile lockfile or a pinned requirements file. */
export function pinsOf(text: string): Map<string, string> {
  const pins = new Map<string, string>();
  for (const m of text.matchAll(/^([A-Za-z0-9][A-Za-z0-9_.-]*)(?:\[[^\]]*\])?==([^\s\\;]+)/gm)) {
    pins.set(canonicalName(m[1] as string), m[2] as string);
  }
  return pins;
}

export interface CheckedRequirements {
  /** The requirements to install (lines the base image already has are left out). */
  text: string;
  /** Pins added on top of the base image. */
  added: Array<{ name: string; version: string }>;
  problems: string[];
}

/**
 * Checks a requirements file against the base lockfile: every requirement pinned with `==`, no
 * version that differs from the base image's. Continuation lines (`--hash=...`) and comments are
 * kept; options that change where packages come from are refused.
 */
export function checkRequirements(
  text: string,
  opts: { file: string; lock: string },
): CheckedRequirements {
  const base = pinsOf(opts.lock);
  const problems: string[] = [];
  const added: Array<{ name: string; version: string }> = [];
  const kept: string[] = [];
  // Join continuation lines so that each requirement is one entry with its hashes.
  const entries = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  entries.forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    const where = `${opts.file}:${i + 1}`;
    if (line.startsWith("-")) {
      problems.push(
        `${where}: "${line.split(/\s+/)[0]}" is not allowed; list pinned packages only (name==version, optionally with --hash=...)`,
      );
      return;
    }
    const m =
      /^([A-Za-z0-9][A-Za-z0-9_.-]*)(\[[^\]]*\])?\s*==\s*([A-Za-z0-9_.+!-]+)(\s*;[^-]*)?(\s+--hash=\S+)*\s*$/.exec(
        line,
      );
    if (m === null) {
      problems.push(
        `${where}: "${line}" is not pinned; write name==version (e.g. numba==0.61.2) so that every image build installs the same code`,
      );
      return;
    }
    const name = canonicalName(m[1] as string);
    const version = m[3] as string;
    const pinned = base.get(name);
    if (pinned !== undefined) {
      if (pinned !== version) {
        problems.push(
          `${where}: ${m[1]}==${version} conflicts with the workspace image's ${m[1]}==${pinned} (runner/requirements.lock); use ${pinned}, or leave it out (it is installed already)`,
        );
      }
      return; // already in the base image at this version
    }
    added.push({ name, version });
    kept.push(line);
  });
  return { text: kept.length > 0 ? `${kept.join("\n")}\n` : "", added, problems };
}

/** How a `--package` folder is installed. */
export type PackageKind = "dist" | "plain";

/** A distribution (pyproject.toml / setup.py) or a plain package folder (`__init__.py`). */
export function packageKind(dir: string): PackageKind | undefined {
  if (["pyproject.toml", "setup.py"].some((f) => fs.existsSync(path.join(dir, f)))) return "dist";
  if (fs.existsSync(path.join(dir, "__init__.py"))) return "plain";
  return undefined;
}

export interface ExtrasInput {
  requirements?: string;
  packages: string[];
}

/** Problems with `--requirements` / `--package` (empty when they can be built). */
export function extrasProblems(input: ExtrasInput, lock: string): string[] {
  const problems: string[] = [];
  if (input.requirements !== undefined) {
    let text: string | undefined;
    try {
      text = fs.readFileSync(input.requirements, "utf8");
    } catch (err) {
      problems.push(
        `--requirements ${input.requirements}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
      );
    }
    if (text !== undefined) {
      problems.push(...checkRequirements(text, { file: input.requirements, lock }).problems);
    }
  }
  const names = new Set<string>();
  for (const dir of input.packages) {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      problems.push(`--package ${dir}: not a folder`);
      continue;
    }
    if (packageKind(dir) === undefined) {
      problems.push(
        `--package ${dir}: neither a distribution (pyproject.toml or setup.py) nor a package folder (__init__.py)`,
      );
    }
    const name = path.basename(path.resolve(dir));
    if (names.has(name)) problems.push(`--package ${dir}: a second package folder named ${name}`);
    names.add(name);
  }
  return problems;
}

/**
 * Writes the build context of images/extras.Dockerfile into `dir` (which must be empty):
 * `requirements.txt`, `dists/<name>/`, `site/<name>/`. Package folders are copied with the study
 * bundle's rules (no caches, hidden files or results). Returns the pins added.
 */
export function writeExtrasContext(
  dir: string,
  input: ExtrasInput,
  lock: string,
): Array<{ name: string; version: string }> {
  const req =
    input.requirements === undefined
      ? { text: "", added: [], problems: [] }
      : checkRequirements(fs.readFileSync(input.requirements, "utf8"), {
          file: input.requirements,
          lock,
        });
  if (req.problems.length > 0) throw new Error(req.problems.join("\n"));
  fs.mkdirSync(path.join(dir, "dists"), { recursive: true });
  fs.mkdirSync(path.join(dir, "site"), { recursive: true });
  fs.writeFileSync(path.join(dir, "requirements.txt"), req.text);
  for (const pkg of input.packages) {
    const src = path.resolve(pkg);
    const name = path.basename(src);
    const dest = path.join(dir, packageKind(src) === "dist" ? "dists" : "site", name);
    for (const f of buildFolderBundle(fs.realpathSync(src)).files) {
      const target = path.join(dest, ...f.path.split("/"));
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, Buffer.from(f.base64, "base64"));
    }
  }
  return req.added;
}
