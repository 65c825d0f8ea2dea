/**
 * `npm run local` checks the study before it starts anything (infra/local/preflight.ts): the
 * decision from the check's report, and the real CLI against the real runner's
 * `python -m dask_workspace check`: a typo refused with nothing started, a finished location
 * not started again, a failed group's retry command, `-- --retry-failed` passed through, and
 * `--keep` holding the workspace and its dashboard until Ctrl-C.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { retryCommand } from "../infra/local/args.js";
import {
  checkArgv,
  type CheckReport,
  decideFromRun,
  parseReport,
  preflightDecision,
} from "../infra/local/preflight.js";
import { leftovers, removeKeptLogs, runCli, STACKS, tempDir } from "./reliability/helpers.js";

const opts = { runnerArgs: [] as string[], results: "/r", retryCommand: "npm run local -- X" };
const report = (r: Partial<CheckReport>): CheckReport => ({ ok: true, problems: [], ...r });

describe("preflight decision (pure)", () => {
  it("refuses problems with exit 2, listing each", () => {
    const d = preflightDecision(
      report({
        ok: false,
        problems: [{ path: "model", message: "no module named 'epimodle'" }, "second"],
      }),
      opts,
    );
    expect(d).toEqual({
      action: "exit",
      exitCode: 2,
      message:
        "the study is not ready; nothing was started:\n  model: no module named 'epimodle'\n  second",
    });
  });

  it("exits 0 without starting when every group is persisted", () => {
    const d = preflightDecision(
      report({ groups_total: 4, groups_persisted: 4, groups_failed: 0 }),
      opts,
    );
    expect(d.action).toBe("exit");
    expect(d.action === "exit" && d.exitCode).toBe(0);
    expect(d.action === "exit" && d.message).toContain("all 4 groups are already persisted in /r");
  });

  it("every group done but some failed: exit 3 with the retry command, or start when retrying", () => {
    const done = report({ groups_total: 4, groups_persisted: 3, groups_failed: 1 });
    const d = preflightDecision(done, opts);
    expect(d).toMatchObject({ action: "exit", exitCode: 3 });
    expect(d.action === "exit" && d.message).toContain("1 of 4 failed");
    expect(d.action === "exit" && d.message).toContain("npm run local -- X");
    expect(preflightDecision(done, { ...opts, runnerArgs: ["--retry-failed"] })).toEqual({
      action: "start",
      note: "/r already holds 3 of 4 groups (1 failed); the run resumes and retries the failed ones",
    });
  });

  it("starts a new or partly done location", () => {
    expect(preflightDecision(report({ groups_total: 4, groups_persisted: 0 }), opts)).toEqual({
      action: "start",
    });
    expect(preflightDecision(report({ groups_total: 4, groups_persisted: 2 }), opts)).toMatchObject(
      { action: "start", note: expect.stringContaining("2 of 4 groups") },
    );
  });

  it("a check that crashed or printed no report is a refusal, with its output", () => {
    const d = decideFromRun(
      { exitCode: 1, stdout: "", stderr: "Traceback...\nImportError: boom", seconds: 1 },
      opts,
    );
    expect(d).toMatchObject({ action: "exit", exitCode: 2 });
    expect(d.action === "exit" && d.message).toContain("ImportError: boom");
  });

  it("reads the report from the last JSON line; builds argv and the retry command", () => {
    expect(parseReport('log line\n{"ok": true, "groups_total": 3}\n')).toEqual({
      ok: true,
      groups_total: 3,
    });
    expect(parseReport("no json")).toBeUndefined();
    expect(checkArgv({ studyFile: "/s/study.yaml", results: "/r" })).toEqual([
      "-m",
      "dask_workspace",
      "check",
      "/s/study.yaml",
      "--no-run",
      "--json",
      "--results",
      "/r",
    ]);
    expect(
      checkArgv({ studyFile: "/s.yaml", results: "/r", runnerArgs: ["--retry-failed", "-x"] }),
    ).toContain("--retry-failed");
    expect(retryCommand(["--study", "my study.yaml", "--keep", "--", "--mode", "batch"])).toBe(
      "npm run local -- --study 'my study.yaml' -- --mode batch --retry-failed",
    );
    expect(retryCommand(["--study", "s.yaml", "--", "--retry-failed"])).toBe(
      "npm run local -- --study s.yaml -- --retry-failed",
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The real CLI and the real runner
// ---------------------------------------------------------------------------------------------

const tmp = tempDir("local-preflight-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const STACK = path.join(STACKS, "leak-1gi.yaml");

/** A study folder outside the repository with its own model package. */
function ownStudy(name: string, opts: { model?: string; failK?: number } = {}): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(path.join(dir, "teammodel"), { recursive: true });
  fs.writeFileSync(path.join(dir, "teammodel", "__init__.py"), "");
  fs.writeFileSync(
    path.join(dir, "teammodel", "sim.py"),
    [
      "from __future__ import annotations",
      "import numpy as np",
      `FAIL_K = ${opts.failK ?? -1}`,
      "def simulate(params, seed):",
      "    if params['k'] == FAIL_K:",
      "        raise ValueError('bad parameter set')",
      "    return {'value': float(np.random.default_rng(seed).random())}",
      "def mean(replicates, params):",
      "    return float(np.mean([r['value'] for r in replicates]))",
      "",
    ].join("\n"),
  );
  fs.writeFileSync(
    path.join(dir, "study.yaml"),
    [
      `name: ${name}`,
      `model: ${opts.model ?? "teammodel.sim:simulate"}`,
      "targets:",
      "  mean: teammodel.sim:mean",
      "parameters:",
      "  sets: [{k: 0}, {k: 1}, {k: 2}, {k: 3}]",
      "replicates: 2",
      "seed: 5",
      "",
    ].join("\n"),
  );
  return path.join(dir, "study.yaml");
}

describe("npm run local: the check before start", () => {
  it("reports a typo in the model's module with exit 2 and starts nothing", async () => {
    const study = ownStudy("typo", { model: "teamodel.sim:simulate" });
    const run = await runCli([
      "--config-file",
      STACK,
      "--study",
      study,
      "--results",
      path.join(tmp, "typo-r"),
    ]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain("teamodel");
    expect(run.stderr).toContain("nothing was started");
    expect(run.stderr).not.toContain("workspace up");
    expect(run.stdout).not.toContain("summary:");
    expect(leftovers(run.pid)).toEqual({ pids: [] });
    expect(fs.existsSync(path.join(tmp, "typo-r"))).toBe(false);
  }, 60_000);

  it("failed group → retry command without starting → -- --retry-failed after the fix → nothing left to run", async () => {
    const study = ownStudy("retry", { failK: 2 });
    const results = path.join(tmp, "retry-r");
    const args = ["--config-file", STACK, "--study", study, "--results", results];
    const first = await runCli(args);
    removeKeptLogs(first.pid);
    expect(first.code, first.stderr.slice(-3000)).toBe(3);
    expect(first.stderr).toContain("retry the 1 failed group(s) with: npm run local -- ");

    const again = await runCli(args);
    expect(again.code, again.stderr).toBe(3);
    expect(again.stderr).toContain("1 of 4 failed; nothing was started");
    expect(again.stderr).toContain(`-- --retry-failed`);
    expect(again.stderr).not.toContain("workspace up");

    // The fix, then the retry the launcher printed (the code changed, on purpose).
    fs.writeFileSync(
      path.join(path.dirname(study), "teammodel", "sim.py"),
      fs
        .readFileSync(path.join(path.dirname(study), "teammodel", "sim.py"), "utf8")
        .replace("FAIL_K = 2", "FAIL_K = -1"),
    );
    const retry = await runCli([...args, "--", "--retry-failed", "--allow-code-change"]);
    removeKeptLogs(retry.pid);
    expect(retry.code, retry.stderr.slice(-3000)).toBe(0);
    expect(retry.stderr).toMatch(/running: python -m dask_workspace run .* --retry-failed/);

    const done = await runCli(args);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain("all 4 groups are already persisted");
    expect(done.stderr).not.toContain("workspace up");
    for (const r of [first, again, retry, done]) expect(leftovers(r.pid)).toEqual({ pids: [] });
  }, 300_000);

  it("--keep: the dashboard stays up after the study until Ctrl-C, then everything goes", async () => {
    const study = ownStudy("keep");
    let dashboard: string | undefined;
    let dashboardStatus: number | undefined;
    let sent = false;
    const run = await runCli(
      ["--config-file", STACK, "--study", study, "--results", path.join(tmp, "keep-r"), "--keep"],
      {
        onLine: (line, pid) => {
          const m = /dashboard\s+(http:\/\/\S+)/.exec(line);
          if (m !== null) dashboard = m[1];
          if (!sent && line.includes("press Ctrl-C to tear it down")) {
            sent = true;
            // Give the remaining lines a moment, then ask the dashboard and press Ctrl-C.
            setTimeout(() => {
              void fetch(dashboard ?? "http://127.0.0.1:1/")
                .then((r) => (dashboardStatus = r.status))
                .catch(() => (dashboardStatus = -1))
                .finally(() => process.kill(pid, "SIGINT"));
            }, 500);
          }
        },
      },
    );
    expect(run.code, run.stderr.slice(-3000)).toBe(0);
    expect(run.stdout).toMatch(/summary:\n\s+groups_total\s+4/);
    expect(dashboard).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/status$/);
    expect(dashboardStatus).toBe(200);
    expect(run.stderr).toMatch(/connect\s+.*Client\("tcp:\/\/127\.0\.0\.1:\d+"\)/);
    expect(run.stderr).toContain("workspace torn down; exit 0");
    expect(leftovers(run.pid)).toEqual({ pids: [] });
  }, 240_000);
});
