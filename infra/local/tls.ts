/**
 * Dask TLS for `npm run local`: with `tls.enabled`, a fresh CA and certificate for every run,
 * made by the same `generateTlsMaterial` as the program's Secret and written into the run's
 * temporary directory (mode 0700, the key 0600), which teardown removes with everything else.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import { DEFAULT_TLS_VALIDITY_DAYS, tlsEnabled } from "../config-tls.js";
import { generateTlsMaterial, TLS_FILES, type TlsSpec, writeTlsFiles } from "../tls.js";
import type { WorkspaceConfig } from "../types.js";

/** The local certificate: every local process listens and connects on 127.0.0.1. Pure. */
export function localTlsSpec(cfg: WorkspaceConfig): TlsSpec {
  return {
    caCommonName: "dask-workspace CA (npm run local)",
    commonName: "127.0.0.1",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    validityDays: cfg.tls?.validityDays ?? DEFAULT_TLS_VALIDITY_DAYS,
  };
}

/**
 * Writes the run's TLS files under `tmpDir` and returns their directory for the Dask config;
 * undefined (and nothing written) when TLS is off.
 */
export async function prepareLocalTls(
  cfg: WorkspaceConfig,
  tmpDir: string,
): Promise<string | undefined> {
  if (!tlsEnabled(cfg)) return undefined;
  const dir = path.join(tmpDir, "tls");
  writeTlsFiles(dir, await generateTlsMaterial(localTlsSpec(cfg)));
  return dir;
}

/**
 * Whether a TLS server with this run's CA accepts a handshake at host:port (our certificate as
 * the client's). The launcher's readiness probe with TLS: a bare TCP connect would make the
 * scheduler log a failed TLS handshake as a warning on every probe.
 */
export function canConnectTls(host: string, port: number, dir: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host,
      port,
      ca: fs.readFileSync(path.join(dir, TLS_FILES.ca)),
      cert: fs.readFileSync(path.join(dir, TLS_FILES.cert)),
      key: fs.readFileSync(path.join(dir, TLS_FILES.key)),
      // Dask checks the chain, not host names (infra/tls.ts); the probe does the same.
      checkServerIdentity: () => undefined,
    });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    // end(), not destroy(): with TLS 1.3 our last handshake message may still be unsent, and
    // the scheduler would log the cut handshake as a warning.
    s.once("secureConnect", () => {
      s.end();
      resolve(true);
    });
    s.once("error", () => done(false));
    s.setTimeout(2_000, () => done(false));
  });
}
