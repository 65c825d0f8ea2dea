/**
 * The kubeconfig the Kubernetes provider uses, from AKS's `listClusterUserCredential` result.
 * Pure functions; `AksCluster` wraps the result in `pulumi.secret`.
 */
import { parse, stringify } from "yaml";

/** One entry of `kubeconfigs` in the credential result: a name and the base64 kubeconfig. */
export interface CredentialResult {
  name: string;
  value: string;
}

/**
 * The cluster's kubeconfig as YAML text.
 *
 * With Entra ID integration the credential is an exec kubeconfig for `kubelogin` whose login mode
 * is `devicecode`, which would stop `pulumi up` at an interactive prompt. `azureCliLogin`
 * rewrites it to `--login azurecli`: kubelogin then reuses the `az login` session of whoever runs
 * `pulumi up` (the same account that creates the cluster), the way `kubelogin convert-kubeconfig
 * -l azurecli` does. Without Entra ID the kubeconfig holds a client certificate and is returned
 * unchanged.
 */
export function kubeconfigFromCredentials(
  kubeconfigs: readonly CredentialResult[] | undefined,
  opts: { azureCliLogin: boolean },
): string {
  const first = kubeconfigs?.[0];
  if (first === undefined) {
    throw new Error("AKS returned no user credentials for the cluster (kubeconfigs is empty)");
  }
  const text = Buffer.from(first.value, "base64").toString("utf8");
  return opts.azureCliLogin ? useAzureCliLogin(text) : text;
}

interface ExecConfig {
  command?: string;
  args?: string[];
}

/** Rewrites every kubelogin exec user of a kubeconfig to `--login azurecli`. */
export function useAzureCliLogin(kubeconfigYaml: string): string {
  const doc = parse(kubeconfigYaml) as { users?: { user?: { exec?: ExecConfig } }[] } | null;
  let changed = false;
  for (const entry of doc?.users ?? []) {
    const exec = entry.user?.exec;
    if (exec === undefined || !/(^|\/)kubelogin$/.test(exec.command ?? "")) continue;
    exec.args = azureCliArgs(exec.args ?? []);
    changed = true;
  }
  return changed ? stringify(doc) : kubeconfigYaml;
}

/**
 * `kubelogin get-token` arguments for the Azure CLI login mode: `--login azurecli`, and without
 * `--client-id`/`--client-secret`, which only the other modes read.
 */
export function azureCliArgs(args: readonly string[]): string[] {
  const drop = new Set(["--client-id", "--client-secret", "--login", "-l"]);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const flag = arg.split("=")[0] as string;
    if (drop.has(flag)) {
      if (!arg.includes("=")) i++; // skip the flag's separate value too
      continue;
    }
    out.push(arg);
  }
  return [...out, "--login", "azurecli"];
}
