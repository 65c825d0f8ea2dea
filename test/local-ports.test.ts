/**
 * `npm run local` when its scheduler ports are taken: by a second local workspace, a parallel
 * test, or anything else on this machine. The workspace must end up talking to its own scheduler,
 * never to whatever holds the configured port. Real processes: a real `dask scheduler` and a real
 * `dask worker` pod.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isAddressInUse, LocalWorkspace } from "../infra/local/launcher.js";
import { PROJECT_ROOT, workspaceConfig } from "./helpers/config.js";

/** A plain TCP listener on a kernel-chosen loopback port that counts who connects to it. */
async function squatter(): Promise<{ port: number; connections: () => number; close: () => void }> {
  let connections = 0;
  const srv = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    connections: () => connections,
    close: () => srv.close(),
  };
}

describe("the scheduler's ports", () => {
  it("a real scheduler whose port is taken says so in words the launcher recognises", async () => {
    const held = await squatter();
    try {
      const dask = path.join(PROJECT_ROOT, ".venv", "bin", "dask");
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "port-taken-"));
      const r = spawnSync(
        dask,
        [
          "scheduler",
          "--host",
          "127.0.0.1",
          "--port",
          String(held.port),
          "--dashboard-address",
          "127.0.0.1:0",
          "--scheduler-file",
          path.join(dir, "s.json"),
        ],
        { encoding: "utf8", timeout: 60_000 },
      );
      expect(r.status).not.toBe(0);
      expect(isAddressInUse(r.stderr)).toBe(true);
      // It never wrote a scheduler file: the launcher cannot mistake it for a live scheduler.
      expect(fs.existsSync(path.join(dir, "s.json"))).toBe(false);
    } finally {
      held.close();
    }
  });

  describe("a workspace whose configured ports are held by another process", () => {
    let ws: LocalWorkspace | undefined;
    const comm = squatter();
    const dashboard = squatter();
    afterAll(async () => {
      await ws?.stop();
      (await comm).close();
      (await dashboard).close();
    });

    it("runs its own scheduler elsewhere, says where, and its workers join it", async () => {
      const [c, d] = [await comm, await dashboard];
      const cfg = workspaceConfig({
        scheduler: { port: c.port, dashboardPort: d.port },
        workers: { replicas: 1, nprocs: 2, podMemory: "2Gi", cpu: "1" },
      });
      const lines: string[] = [];
      ws = await LocalWorkspace.start(cfg, { root: PROJECT_ROOT, log: (l) => lines.push(l) });

      expect(ws.config.scheduler.port).not.toBe(c.port);
      expect(ws.config.scheduler.dashboardPort).not.toBe(d.port);
      expect(ws.schedulerAddress).toBe(`tcp://127.0.0.1:${ws.config.scheduler.port}`);
      expect(lines.join("\n")).toContain(
        `scheduler port ${c.port} is busy here; using ${ws.config.scheduler.port}`,
      );
      expect(lines.join("\n")).toContain(
        `dashboard port ${d.port} is busy here; using ${ws.config.scheduler.dashboardPort}`,
      );
      // The worker count comes from our scheduler's dashboard, and it counts our pod's processes.
      expect(await ws.workerCount()).toBe(2);
      // Nothing of ours ever talked to the processes holding the configured ports.
      expect(c.connections()).toBe(0);
      expect(d.connections()).toBe(0);
    });
  });
});
