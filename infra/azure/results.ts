/**
 * Results URIs on Azure: `az://<container>/<prefix>` (docs/runner.md, "Results"). The
 * storage account is not part of the URI; the runner reads it from `AZURE_STORAGE_ACCOUNT_NAME`.
 */

/** The results container when `runner.results` names none (config.ts defaults to `az://results`). */
export const DEFAULT_RESULTS_CONTAINER = "results";

/** `az://<container>/<prefix>`, without leading or trailing slashes in the prefix. */
export function resultsUri(container: string, prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, "");
  return p === "" ? `az://${container}` : `az://${container}/${p}`;
}

/** The container and prefix of an `az://` URI; undefined for anything else (a local path). */
export function parseAzUri(uri: string): { container: string; prefix: string } | undefined {
  const m = /^az:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!m) return undefined;
  return { container: m[1] as string, prefix: (m[2] as string).replace(/\/+$/, "") };
}
