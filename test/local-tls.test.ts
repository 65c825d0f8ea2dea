/**
 * `npm run local` with Dask TLS, for real: the launcher makes the run's certificates (the same
 * function as the program's Secret), starts `dask scheduler --protocol tls` and worker pods that
 * join over `tls://`, and the runner completes a study through it. Then, with the workspace still
 * up, clients knock: one with the run's Dask config gets in; a plain-TCP client and a TLS client
 * whose certificate another CA signed are refused.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseWorkspaceConfig } from "../infra/config.js";
import { daskConfigYaml } from "../infra/dask.js";
import type { LocalWorkspace } from "../infra/local/launcher.js";
import { launchWorkspace } from "../infra/local/run.js";
import { localTlsSpec } from "../infra/local/tls.js";
import { generateTlsMaterial, writeTlsFiles } from "../infra/tls.js";
import { ROOT, STUDIES, tempDir } from "./reliability/helpers.js";

const tmp = tempDir("local-tls-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const PYTHON = path.join(ROOT, ".venv", "bin", "python");

/** Connects a Dask client and prints the workers' addresses as JSON (exit 1 when refused). */
const CLIENT = `
import json, sys
from distributed import Client
try:
    with Client(sys.argv[1], timeout=5, set_as_default=False) as c:
        print(json.dumps(sorted(c.scheduler_info(n_workers=-1)["workers"])))
except Exception as exc:
    print(f"refused: {type(exc).__name__}: {exc}")
    sys.exit(1)
`;

function client(address: string, daskConfigDir: string) {
  const r = spawnSync(PYTHON, ["-c", CLIENT, address], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, DASK_CONFIG: daskConfigDir },
  });
  return { code: r.status, out: r.stdout.trim() };
}

function config() {
  const r = parseWorkspaceConfig(
    {
      target: "kubernetes",
      workers: { replicas: 2, nprocs: 1, threadsPerProcess: 1, podMemory: "1Gi", cpu: "1" },
      tls: { enabled: true },
    },
    { baseDir: ROOT, stack: "local" },
  );
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

describe("npm run local with tls.enabled", () => {
  it("runs the study over TLS and refuses clients without the run's certificate", async () => {
    const logs: string[] = [];
    const probes: Record<string, { code: number | null; out: string }> = {};
    let schedulerLogBefore = "";
    let address = "";
    let tlsFiles: string[] = [];
    const result = await launchWorkspace(config(), {
      root: ROOT,
      studyFile: path.join(STUDIES, "sir-grid.yaml"),
      results: path.join(tmp, "results"),
      log: (l) => logs.push(l),
      out: (l) => logs.push(l),
      afterRun: async (ws: LocalWorkspace) => {
        address = ws.schedulerAddress;
        tlsFiles = fs.readdirSync(path.join(ws.tmpDir, "tls")).sort();
        schedulerLogBefore = fs.readFileSync(path.join(ws.logDir, "scheduler.log"), "utf8");
        probes.own = client(address, ws.env.DASK_CONFIG!);

        // Plain TCP, no TLS settings at all.
        const empty = path.join(tmp, "no-config");
        fs.mkdirSync(empty, { recursive: true });
        probes.plain = client(address.replace(/^tls:/, "tcp:"), empty);

        // TLS, but with a certificate from another CA (another run's, say).
        const foreign = path.join(tmp, "foreign");
        writeTlsFiles(
          path.join(foreign, "tls"),
          await generateTlsMaterial(localTlsSpec(ws.config)),
        );
        fs.writeFileSync(
          path.join(foreign, "dask.yaml"),
          daskConfigYaml(ws.config, { tlsDir: path.join(foreign, "tls") }),
        );
        probes.foreign = client(address, foreign);
        probes.schedulerLog = {
          code: 0,
          out: fs.readFileSync(path.join(ws.logDir, "scheduler.log"), "utf8"),
        };
      },
    });

    expect(result.exitCode, logs.slice(-30).join("\n")).toBe(0);
    expect(result.summary).toMatchObject({ groups_total: 40, groups_persisted: 40 });
    expect(logs.join("\n")).toMatch(/running: .* --scheduler tls:\/\/127\.0\.0\.1:\d+ /);
    expect(address).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    expect(tlsFiles).toEqual(["ca.crt", "tls.crt", "tls.key"]);
    // Our own probes (the launcher's, the runner's) never cut a handshake.
    expect(schedulerLogBefore).not.toMatch(/TLS handshake failed/);

    // The run's own config: in, and every worker listens on tls:// too.
    expect(probes.own!.code, probes.own!.out).toBe(0);
    const workers = JSON.parse(probes.own!.out) as string[];
    expect(workers).toHaveLength(2);
    for (const w of workers) expect(w).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);

    // Plain TCP and a foreign CA: refused (the scheduler logs why for the plain one).
    expect(probes.plain!.code, probes.plain!.out).toBe(1);
    expect(probes.plain!.out).toMatch(/^refused: /);
    expect(probes.foreign!.code, probes.foreign!.out).toBe(1);
    expect(probes.foreign!.out).toMatch(/^refused: /);
    const after = probes.schedulerLog!.out.slice(schedulerLogBefore.length);
    expect(after).toMatch(/TLS handshake failed[^\n]*WRONG_VERSION_NUMBER/);
    // Verification fails on both ends; the client says so in Dask's words.
    expect(probes.foreign!.out).toMatch(/TLS certificate does not match/);
  }, 240_000);
});
