/**
 * Study bundles: the study file plus the folder it sits in, so that a study's own Python modules
 * and packages travel with it to the cluster.
 *
 * The selection and the hash are the same as the runner's (`python -m dask_workspace bundle`,
 * checked by test/bundle.test.ts): hidden names, caches, `node_modules`, `results` folders and
 * any folder that holds a results location of ours are skipped; the default skip list is the
 * data file `runner/src/dask_workspace/bundle-ignore.txt`, read by both languages; a study
 * folder's `.studyignore` adds patterns. The hash is sha256 over `relpath \0 sha256(content) \n`
 * of every selected file, sorted by relative POSIX path.
 *
 * On Kubernetes the bundle is carried by the study's ConfigMap (`binaryData`), so it must fit in
 * one: {@link bundleSizeProblem} refuses a bundle that does not, before anything is created.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's default skip list (same syntax as `.studyignore`). */
export const DEFAULT_IGNORE_FILE = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "runner",
  "src",
  "dask_workspace",
  "bundle-ignore.txt",
);

/** The per-study ignore file, in the study folder. */
export const STUDY_IGNORE_FILE = ".studyignore";

/**
 * The most a bundle may weigh once base64-encoded (how a ConfigMap's `binaryData` stores it).
 * Kubernetes refuses a ConfigMap over 1 MiB; this leaves ~100 KiB for keys and metadata.
 */
export const MAX_ENCODED_BUNDLE_BYTES = 900 * 1024;

/** One selected file. */
export interface BundleFile {
  /** Relative POSIX path from the study folder. */
  path: string;
  size: number;
  /** The file's bytes, base64-encoded (as a ConfigMap's `binaryData` takes them). */
  base64: string;
}

export interface StudyBundle {
  /** The study folder (absolute). */
  studyDir: string;
  /** Selected files, sorted by `path` (bytewise on UTF-8). */
  files: BundleFile[];
  totalBytes: number;
  /** sha256 hex of the bundle (the study's code identity). */
  hash: string;
}

/** A bundle that cannot be built (an unsafe symlink, an unreadable ignore file): the message says why. */
export class BundleError extends Error {}

/** One ignore pattern, compiled. */
export interface IgnoreRule {
  /** The pattern as written. */
  pattern: string;
  /** Matches the relative path (true) or the name (false). */
  anchored: boolean;
  /** A trailing "/": folders only. */
  dirOnly: boolean;
  regex: RegExp;
}

/**
 * Python's `fnmatch.translate`, for one pattern: `*` any run of characters (including "/"),
 * `?` one character, `[seq]` / `[!seq]` a set; everything else literal.
 */
export function fnmatchRegex(pattern: string): RegExp {
  let out = "";
  let i = 0;
  const n = pattern.length;
  while (i < n) {
    const c = pattern[i++] as string;
    if (c === "*") {
      out += "[\\s\\S]*";
      while (pattern[i] === "*") i++;
    } else if (c === "?") {
      out += "[\\s\\S]";
    } else if (c === "[") {
      let j = i;
      if (pattern[j] === "!") j++;
      if (pattern[j] === "]") j++;
      while (j < n && pattern[j] !== "]") j++;
      if (j >= n) {
        out += "\\[";
      } else {
        let body = pattern.slice(i, j);
        i = j + 1;
        const negate = body.startsWith("!");
        if (negate) body = body.slice(1);
        const escaped = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
        out += negate ? `[^${escaped}]` : `[${escaped}]`;
      }
    } else {
      out += c.replace(/[.*+?^${}()|[\]\\/]/g, (m) => `\\${m}`);
    }
  }
  return new RegExp(`^${out}$`, "u");
}

/** Parses an ignore file's text: one pattern a line, `#` comments and blank lines ignored. */
export function parseIgnore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const pattern = line;
    const dirOnly = line.endsWith("/");
    if (dirOnly) line = line.replace(/\/+$/, "");
    const anchored = line.includes("/");
    if (anchored) line = line.replace(/^\/+/, "");
    if (line === "") continue;
    rules.push({ pattern, anchored, dirOnly, regex: fnmatchRegex(line) });
  }
  return rules;
}

/** Whether `rules` skip the entry at relative path `rel` (a folder when `isDir`). */
export function isIgnored(rules: readonly IgnoreRule[], rel: string, isDir: boolean): boolean {
  const name = rel.slice(rel.lastIndexOf("/") + 1);
  return rules.some((r) => (!r.dirOnly || isDir) && r.regex.test(r.anchored ? rel : name));
}

/**
 * Whether `dir` is a results location of ours (the runner's `study.json` beside its `manifest/`
 * folder): a results location inside the study folder is never part of the bundle.
 */
export function isResultsLocation(dir: string): boolean {
  try {
    return (
      fs.statSync(path.join(dir, "study.json")).isFile() &&
      fs.statSync(path.join(dir, "manifest")).isDirectory()
    );
  } catch {
    return false;
  }
}

function readIgnoreFile(file: string, required: boolean): IgnoreRule[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new BundleError(`cannot read the ignore file ${file}: ${(err as Error).message}`);
  }
  return parseIgnore(text);
}

/** Relative paths compare bytewise on UTF-8 (as Python sorts `str.encode()`). */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The bundle hash of files given as (relative path, content sha256 hex). Pure. */
export function bundleHash(entries: ReadonlyArray<{ path: string; sha256: string }>): string {
  const h = createHash("sha256");
  for (const e of [...entries].sort((a, b) => compareUtf8(a.path, b.path))) {
    h.update(Buffer.from(`${e.path}\0${e.sha256}\n`, "utf8"));
  }
  return h.digest("hex");
}

/**
 * Builds the bundle of the study file `studyFile`: its folder, recursively, minus what the
 * default skip list, the folder's `.studyignore` and the fixed rules leave out.
 * @throws BundleError for a symlink that leaves the study folder, or an unreadable ignore file.
 */
export function buildBundle(
  studyFile: string,
  opts: { defaultIgnoreFile?: string } = {},
): StudyBundle {
  let studyDir: string;
  try {
    studyDir = path.dirname(fs.realpathSync(path.resolve(studyFile)));
  } catch (err) {
    throw new BundleError(`study file ${studyFile} cannot be read: ${(err as Error).message}`);
  }
  return buildFolderBundle(studyDir, opts);
}

/** The bundle of a folder (the same rules, its own `.studyignore`): see {@link buildBundle}. */
export function buildFolderBundle(
  studyDir: string,
  opts: { defaultIgnoreFile?: string } = {},
): StudyBundle {
  const realRoot = fs.realpathSync(studyDir);
  const rules = [
    ...readIgnoreFile(opts.defaultIgnoreFile ?? DEFAULT_IGNORE_FILE, true),
    ...readIgnoreFile(path.join(studyDir, STUDY_IGNORE_FILE), false),
  ];
  const found: Array<{ path: string; abs: string }> = [];
  const walk = (dir: string, relDir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const name = entry.name;
      const rel = relDir === "" ? name : `${relDir}/${name}`;
      const abs = path.join(dir, name);
      if (name.startsWith(".")) continue; // hidden, including .studyignore itself
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        // Left out anyway: where it points does not matter.
        if (isIgnored(rules, rel, false) || isIgnored(rules, rel, true)) continue;
        let target: string;
        try {
          target = fs.realpathSync(abs);
        } catch {
          throw new BundleError(
            `${abs} is a broken symlink; remove it or add "${rel}" to ${path.join(studyDir, STUDY_IGNORE_FILE)}`,
          );
        }
        if (target !== realRoot && !target.startsWith(`${realRoot}${path.sep}`)) {
          throw new BundleError(
            `${abs} is a symlink to ${target}, outside the study folder ${studyDir}; a bundle ` +
              `only follows links that stay inside it. Copy the file in, or add "${rel}" to ` +
              `${path.join(studyDir, STUDY_IGNORE_FILE)}`,
          );
        }
        const st = fs.statSync(abs);
        isDir = st.isDirectory();
        isFile = st.isFile();
      }
      if (isDir) {
        if (name === "__pycache__" || name === "node_modules" || name === "results") continue;
        if (isIgnored(rules, rel, true) || isResultsLocation(abs)) continue;
        walk(abs, rel);
      } else if (isFile) {
        if (/\.py[co]$/.test(name) || isIgnored(rules, rel, false)) continue;
        found.push({ path: rel, abs });
      }
    }
  };
  walk(studyDir, "");
  found.sort((a, b) => compareUtf8(a.path, b.path));
  const files: BundleFile[] = [];
  const hashed: Array<{ path: string; sha256: string }> = [];
  let totalBytes = 0;
  for (const f of found) {
    const content = fs.readFileSync(f.abs);
    files.push({ path: f.path, size: content.length, base64: content.toString("base64") });
    hashed.push({ path: f.path, sha256: createHash("sha256").update(content).digest("hex") });
    totalBytes += content.length;
  }
  return { studyDir, files, totalBytes, hash: bundleHash(hashed) };
}

/** The bundle's size once base64-encoded (4 bytes per 3, per file). */
export function encodedBundleBytes(bundle: Pick<StudyBundle, "files">): number {
  return bundle.files.reduce((n, f) => n + 4 * Math.ceil(f.size / 3), 0);
}

/** `1.2 MiB`, `340 KiB`, `12 B`. */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} B`;
}

/**
 * Why a bundle cannot travel in a ConfigMap (too large), with its size, its largest files and
 * the fix; undefined when it fits.
 */
export function bundleSizeProblem(bundle: StudyBundle, studyPath: string): string | undefined {
  const encoded = encodedBundleBytes(bundle);
  if (encoded <= MAX_ENCODED_BUNDLE_BYTES) return undefined;
  const largest = [...bundle.files]
    .sort((a, b) => b.size - a.size || compareUtf8(a.path, b.path))
    .slice(0, 5)
    .map((f) => `${f.path} (${formatBytes(f.size)})`)
    .join(", ");
  return (
    `the study bundle of ${studyPath} (the folder ${bundle.studyDir}) is ${formatBytes(bundle.totalBytes)} ` +
    `in ${bundle.files.length} file(s), ${formatBytes(encoded)} base64-encoded: more than the ` +
    `${formatBytes(MAX_ENCODED_BUNDLE_BYTES)} a study ConfigMap can carry. Largest files: ${largest}. ` +
    `Fix: leave data and other large files out with a ${STUDY_IGNORE_FILE} in the study folder, ` +
    `or move the code into an image: npm run images:build -- --registry <registry> --package <dir> ` +
    `(or --requirements <file>), then point images.dask and images.runner at it`
  );
}

/** The short form users see (first 12 hex digits). */
export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}

/**
 * One job's study bundle for the stack config (`jobs.<name>.study`, relative to `baseDir`),
 * refused with a config problem when it cannot be built or a ConfigMap cannot carry it.
 */
export function readJobBundle(
  jobName: string,
  study: string,
  baseDir: string,
): { bundle: StudyBundle } | { problem: { path: string; message: string } } {
  const key = `jobs.${jobName}.study`;
  try {
    const bundle = buildBundle(path.resolve(baseDir, study));
    const tooLarge = bundleSizeProblem(bundle, study);
    return tooLarge === undefined ? { bundle } : { problem: { path: key, message: tooLarge } };
  } catch (e) {
    if (e instanceof BundleError) return { problem: { path: key, message: e.message } };
    throw e;
  }
}
