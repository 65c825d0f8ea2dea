/**
 * A stack whose worker processes' memory limits add up to the whole pod (no headroom for the nanny
 * host process) is refused by `npm run local` before anything starts (docs/why.md, failure 1).
 */
import * as path from "node:path";
import { expect, it } from "vitest";
import { leftovers, runCli, STACKS, tempDirsOf } from "./helpers.js";

it("refuses a zero-headroom stack, naming the problem, and starts nothing", async () => {
  const run = await runCli(["--config-file", path.join(STACKS, "zero-headroom.yaml")]);
  expect(run.code).toBe(2);
  // The message names the key, the numbers, what the memory is missing for, and a fix.
  expect(run.stderr).toMatch(
    /workers\.memoryPerProcess: 2 × 512Mi = 1Gi leaves 0 of podMemory 1Gi/,
  );
  expect(run.stderr).toMatch(/for the nanny/);
  expect(run.stderr).toMatch(/use at most 351Mi per process or raise podMemory/);
  expect(run.stderr).toMatch(/nothing was started/);
  expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
  // Nothing was started: no run cgroup, no temp dir, no process of the run, no runner output.
  expect(leftovers(run.pid)).toEqual({ pids: [] });
  expect(tempDirsOf(run.pid)).toEqual([]);
  expect(run.stdout).toBe("");
});
