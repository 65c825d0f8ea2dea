/**
 * `npm run local` applies the worker pods' spill limit (`workers.spillStorage`, the `/tmp`
 * emptyDir's sizeLimit on Kubernetes): each pod spills into its own directory, and a pod whose
 * directory grows past the limit is evicted like the kubelet would. Real processes: a real
 * `dask scheduler` and a real `dask worker` pod.
 */
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  dirUsageBytes,
  podScratchDir,
  SpillWatch,
  spillSpaceWarning,
} from "../infra/local/ephemeral.js";
import { LocalWorkspace, podName } from "../infra/local/launcher.js";
import { PROJECT_ROOT, workspaceConfig } from "./helpers/config.js";

const MiB = 1024 ** 2;

describe("spill watch", () => {
  it("measures allocated bytes and fires once past the limit", () => {
    const dir = mkdtempSync(join(tmpdir(), "spill-"));
    const seen: number[] = [];
    const watch = new SpillWatch({ dir, limitBytes: 2 * MiB, onExceeded: (u) => seen.push(u) });
    writeFileSync(join(dir, "a"), Buffer.alloc(MiB, 1));
    expect(dirUsageBytes(dir)).toBeGreaterThanOrEqual(MiB);
    expect(watch.check()).toBe(false);
    writeFileSync(join(dir, "b"), Buffer.alloc(2 * MiB, 1));
    expect(watch.check()).toBe(true);
    expect(watch.check()).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeGreaterThanOrEqual(3 * MiB);
  });

  it("warns when the local disk cannot hold every pod's limit", () => {
    expect(
      spillSpaceWarning({
        freeBytes: 10 * 1024 ** 3,
        pods: 2,
        limitBytes: 4 * 1024 ** 3,
        dir: "/t",
      }),
    ).toBeUndefined();
    expect(
      spillSpaceWarning({
        freeBytes: 10 * 1024 ** 3,
        pods: 2,
        limitBytes: 8 * 1024 ** 3,
        dir: "/t",
      }),
    ).toBe(
      "2 pod(s) × workers.spillStorage 8.0Gi = 16.0Gi is more than the 10.0Gi free under /t; a study that spills that much fills this disk first: lower workers.spillStorage or free some space",
    );
  });
});

describe("npm run local: a pod that spills past workers.spillStorage is evicted", () => {
  let ws: LocalWorkspace | undefined;
  afterAll(async () => {
    await ws?.stop();
  });

  it("gives each pod its own spill directory and evicts the pod past the limit", async () => {
    const cfg = workspaceConfig({
      workers: { replicas: 1, nprocs: 1, podMemory: "2Gi", cpu: "1", spillStorage: "8Mi" },
    });
    expect(cfg.hardening.storage.worker.scratch.bytes).toBe(8 * MiB);
    const lines: string[] = [];
    ws = await LocalWorkspace.start(cfg, { root: PROJECT_ROOT, log: (l) => lines.push(l) });
    const scratch = podScratchDir(ws.tmpDir, podName(0));
    // The worker really uses it (Dask makes its worker directory there).
    expect(readdirSync(scratch).length).toBeGreaterThan(0);
    expect(ws.pods.get(podName(0))!.process.running).toBe(true);

    // Spill files past the limit, as a worker writing to disk would.
    writeFileSync(join(scratch, "spilled.bin"), Buffer.alloc(16 * MiB, 1));
    const deadline = Date.now() + 20_000;
    while (ws.pods.get(podName(0))!.process.running && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(ws.pods.get(podName(0))!.process.running).toBe(false);
    expect(ws.evictions).toEqual([podName(0)]);
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^pod local-worker-0 evicted: its spill directory holds 1\dMi, over workers\.spillStorage 8Mi/,
      ),
    );
  });
});
