/**
 * `npm run scan [-- --rendered <dir>] [--keep <dir>] [--json <file>] [--report-only]`
 *
 * Independent scanners over the rendered stacks (docs/security.md, "Scanners"):
 *
 * 1. installs the scanners (scripts/scan-tools.sh; cached, so a second run installs nothing);
 * 2. renders the `local` and `dev` stacks and the test fixture stack file with `npm run render`
 *    (or, with `--rendered <dir>`, scans `<dir>/<stack>/kubernetes/` as they are);
 * 3. runs kubeconform (strict, against the Kubernetes JSON schemas of the PyPI package
 *    kubernetes-validate), kube-score and checkov over every stack;
 * 4. judges each finding against scan/allow-list.yaml, where every entry says why its findings
 *    are acceptable, prints the counts per tool and every unjustified finding.
 *
 * Exit codes: 0 no unjustified finding; 1 unjustified findings (or, with `--report-only`, never);
 * 2 bad flags, an allow-list that is not valid, a tool that cannot be installed or run.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import {
  AllowListError,
  checkovFindings,
  counts,
  type Finding,
  judge,
  kubeconformFindings,
  kubeScoreFindings,
  parseAllowList,
  TOOLS,
} from "./findings.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The Kubernetes version the schemas are checked for (the e2e control plane's minor). */
export const K8S_VERSION = "1.36.0";

/** The stacks to scan: name → stack file. */
export const STACKS: ReadonlyArray<{ name: string; file: string }> = [
  { name: "local", file: "Pulumi.local.yaml" },
  { name: "dev", file: "Pulumi.dev.yaml" },
  { name: "stack-good", file: "test/fixtures/config/stack-good.yaml" },
];

class ScanError extends Error {}

function log(line: string): void {
  console.error(`scan: ${line}`);
}

function run(cmd: string, args: string[], opts: { okCodes?: number[] } = {}): string {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, BC_SKIP_MAPPING: "TRUE" },
  });
  if (r.error !== undefined) throw new ScanError(`cannot run ${cmd}: ${r.error.message}`);
  if (!(opts.okCodes ?? [0]).includes(r.status ?? -1)) {
    throw new ScanError(
      `${cmd} ${args.join(" ")} exited ${r.status}:\n${(r.stderr || r.stdout).slice(-3000)}`,
    );
  }
  return r.stdout;
}

/** The stack of a rendered file: the directory above its `kubernetes/`. */
export function stackOfFile(file: string): string {
  const parts = file.split(/[\\/]/);
  const i = parts.lastIndexOf("kubernetes");
  return i > 0 ? (parts[i - 1] ?? "?") : "?";
}

function toolEnv(): Record<string, string> {
  const out = execFileSync("bash", [join(ROOT, "scripts/scan-tools.sh"), "--env"], {
    encoding: "utf8",
  });
  const env: Record<string, string> = {};
  for (const m of out.matchAll(/^export (\w+)='([^']*)'$/gm)) env[m[1]!] = m[2]!;
  return env;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => join(dir, f));
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        rendered: { type: "string" },
        keep: { type: "string" },
        json: { type: "string" },
        "report-only": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(`scan: ${(err as Error).message}`);
    return 2;
  }
  if (values.help) {
    console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("*/")[0]);
    return 0;
  }

  const allowFile = join(ROOT, "scan", "allow-list.yaml");
  const entries = parseAllowList(readFileSync(allowFile, "utf8"));

  log("tools (scripts/scan-tools.sh)");
  run("bash", [join(ROOT, "scripts/scan-tools.sh")]);
  const env = toolEnv();
  log(env.SCAN_VERSIONS ?? "");

  // Render (or take) the stacks.
  let renderRoot: string;
  let cleanup: (() => void) | undefined;
  if (values.rendered !== undefined) {
    renderRoot = resolve(values.rendered);
  } else {
    renderRoot =
      values.keep !== undefined ? resolve(values.keep) : mkdtempSync(join(tmpdir(), "scan-"));
    if (values.keep === undefined)
      cleanup = () => rmSync(renderRoot, { recursive: true, force: true });
    mkdirSync(renderRoot, { recursive: true });
    for (const s of STACKS) {
      log(`render ${s.name} (${s.file})`);
      rmSync(join(renderRoot, s.name), { recursive: true, force: true });
      run(join(ROOT, "node_modules/.bin/tsx"), [
        join(ROOT, "infra/render.ts"),
        "--stack",
        s.name,
        "--config-file",
        s.file,
        "--out",
        join(renderRoot, s.name),
      ]);
    }
  }
  try {
    const stacks = readdirSync(renderRoot)
      .filter((d) => {
        try {
          return readdirSync(join(renderRoot, d, "kubernetes")).length >= 0;
        } catch {
          return false;
        }
      })
      .sort();
    if (stacks.length === 0) throw new ScanError(`no <stack>/kubernetes/ under ${renderRoot}`);
    const dirs = stacks.map((s) => join(renderRoot, s, "kubernetes"));
    const files = dirs.flatMap(yamlFiles);

    // Standalone schemas for the kinds present (kubernetes-validate's refs made local).
    const kinds = new Set<string>();
    for (const f of files) {
      const doc = parseYaml(readFileSync(f, "utf8")) as { kind: string; apiVersion: string };
      kinds.add(`${doc.kind}:${doc.apiVersion}`);
    }
    const schemaDir = join(dirname(env.SCAN_PYTHON ?? ""), "..", "..", "schemas");
    run(env.SCAN_PYTHON!, [
      join(ROOT, "scan/schemas.py"),
      "--k8s-version",
      K8S_VERSION,
      "--out",
      schemaDir,
      ...[...kinds].sort(),
    ]);

    const findings: Finding[] = [];
    log(`kubeconform -strict (Kubernetes ${K8S_VERSION}) over ${files.length} objects`);
    findings.push(
      ...kubeconformFindings(
        run(
          env.SCAN_KUBECONFORM!,
          [
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            K8S_VERSION,
            "-schema-location",
            `${schemaDir}${sep}{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}${sep}{{ .ResourceKind }}{{ .KindSuffix }}.json`,
            ...dirs,
          ],
          { okCodes: [0, 1] },
        ),
        stackOfFile,
      ),
    );
    for (const dir of dirs) {
      log(`kube-score ${stackOfFile(join(dir, "x"))}`);
      findings.push(
        ...kubeScoreFindings(
          run(env.SCAN_KUBE_SCORE!, ["score", "-o", "json", ...yamlFiles(dir)], {
            okCodes: [0, 1],
          }),
          stackOfFile,
        ),
      );
    }
    log("checkov");
    findings.push(
      ...checkovFindings(
        run(
          env.SCAN_CHECKOV!,
          [
            "-d",
            renderRoot,
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
          ],
          { okCodes: [0, 1] },
        ),
        (file) => stackOfFile(file.startsWith("/") ? file : `/${file}`),
      ),
    );

    const judged = judge(findings, entries);
    const table = counts(judged);
    console.log(`\nscan: ${stacks.join(", ")} (${files.length} objects)`);
    console.log("tool          findings  allowed  unjustified");
    for (const t of TOOLS) {
      const c = table[t];
      console.log(
        `${t.padEnd(13)} ${String(c.total).padStart(8)} ${String(c.allowed).padStart(8)} ${String(c.unjustified).padStart(12)}`,
      );
    }
    for (const f of judged.unjustified) {
      console.log(
        `UNJUSTIFIED ${f.tool} ${f.check} [${f.stack}] ${f.object}${f.container !== undefined ? ` (${f.container})` : ""}: ${f.message}`,
      );
    }
    for (const e of judged.unused) {
      console.log(`note: allow-list entry ${e.tool} ${e.check} matched nothing (remove it?)`);
    }
    if (values.json !== undefined) {
      writeFileSync(
        values.json,
        JSON.stringify(
          { stacks, counts: table, findings, unjustified: judged.unjustified },
          null,
          2,
        ),
      );
    }
    if (judged.unjustified.length > 0) {
      console.log(
        `\nscan: ${judged.unjustified.length} unjustified finding(s): fix them, or add an entry with its reason to scan/allow-list.yaml`,
      );
      return values["report-only"] ? 0 : 1;
    }
    console.log("\nscan: 0 unjustified findings");
    return 0;
  } finally {
    cleanup?.();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      if (err instanceof ScanError || err instanceof AllowListError) {
        console.error(`scan: ${err.message}`);
        process.exit(2);
      }
      console.error(err);
      process.exit(2);
    },
  );
}
