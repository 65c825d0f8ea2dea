/**
 * The `tls` key of the stack config: Dask TLS between the scheduler, the workers and the runner.
 * The schema and the pure resolution of its defaults; `infra/config.ts` (the only module that
 * reads the stack config) puts the schema into the stack schema and calls {@link resolveTls}.
 *
 * On by default on `target: azure`, where the cluster network is shared with whatever else runs
 * in the subscription's virtual network; off by default on `target: kubernetes` (and so in
 * `npm run local` of such a stack), where a stack that rendered before keeps its meaning. What it
 * costs is measured in bench/REPORT.md ("Dask TLS").
 */
import { z } from "zod";
import type { Target } from "./types.js";

/** The resolved `tls` settings. */
export interface TlsConfig {
  /**
   * Mutual TLS for every Dask connection: `tls://` addresses, certificates from a Secret the
   * program generates, plain `tcp://` refused.
   */
  enabled: boolean;
  /** Days the generated CA and certificate are valid from when they are made. */
  validityDays: number;
  /** A counter that is part of the Secret's name: increase it to issue new certificates. */
  rotation: number;
}

/** Ten years: the certificates never leave the workspace, and rotation is one key away. */
export const DEFAULT_TLS_VALIDITY_DAYS = 3650;

/** The `tls` mapping of the stack config. */
export const TlsSchema = z.strictObject({
  /** Dask TLS on or off. Default: true on target azure, false on target kubernetes. */
  enabled: z.boolean().optional(),
  /** Validity of the generated CA and certificate, days (1 to 36500). Default 3650. */
  validityDays: z.number().int().min(1).max(36_500).default(DEFAULT_TLS_VALIDITY_DAYS),
  /**
   * Increase to issue new certificates: a new Secret, and the scheduler, workers and runner Jobs
   * are replaced to use it. Default 0.
   */
  rotation: z.number().int().min(0).default(0),
});

/** The default of `tls.enabled` for a target. Pure. */
export function defaultTlsEnabled(target: Target): boolean {
  return target === "azure";
}

/** The `tls` settings with their defaults for `target`, and what the user should know. Pure. */
export function resolveTls(
  target: Target,
  raw: z.output<typeof TlsSchema>,
): { tls: TlsConfig; warnings: string[] } {
  const enabled = raw.enabled ?? defaultTlsEnabled(target);
  const warnings: string[] = [];
  if (target === "azure" && !enabled) {
    warnings.push(
      "tls.enabled: false on target azure: the scheduler, workers and runner talk plain text (study parameters and results readable on the cluster network); remove the key to use Dask TLS, the default on azure",
    );
  }
  return {
    tls: { enabled, validityDays: raw.validityDays, rotation: raw.rotation },
    warnings,
  };
}

/** Whether Dask TLS is on; a config built without the `tls` key has it off. */
export function tlsEnabled(cfg: { tls?: TlsConfig }): boolean {
  return cfg.tls?.enabled === true;
}
