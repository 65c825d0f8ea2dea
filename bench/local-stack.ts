/**
 * Prints, as JSON, the local workspace's process commands and Dask config for a stack, built by
 * the same pure functions as `npm run local` and the Kubernetes objects (`infra/local/launcher.ts`,
 * `infra/dask.ts`), so `bench/workspace_bench.py` starts exactly the workspace's scheduler and
 * worker pods.
 *
 *   npx tsx bench/local-stack.ts --stack local --port 8786 --dashboard-port 8787
 *   npx tsx bench/local-stack.ts --config-file bench/stacks/slots16.yaml --port 8786 ...
 *   npx tsx bench/local-stack.ts --stack local --tls on --tls-dir /tmp/x/tls ...  # Dask TLS
 *
 * `--tls on|off` overrides the stack's `tls.enabled`; with TLS on, the run's certificates are
 * written into `--tls-dir` (as `npm run local` does) and the Dask config names them there.
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { formatProblems, parseWorkspaceConfig, readStackConfigFile } from "../infra/config.js";
import { daskConfigYaml, schedulerAddress, schedulerEnv, workerEnv } from "../infra/dask.js";
import { tlsEnabled } from "../infra/config-tls.js";
import { localTlsSpec } from "../infra/local/tls.js";
import { generateTlsMaterial, writeTlsFiles } from "../infra/tls.js";
import {
  LOCAL_HOST,
  localSchedulerArgv,
  localWorkerArgv,
  podName,
  withPorts,
} from "../infra/local/launcher.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The value after `--name`, or `fallback`. */
function flag(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
}

const argv = process.argv.slice(2);
const configFile = flag(argv, "--config-file", "");
const stack = configFile
  ? path.basename(configFile).replace(/\.ya?ml$/, "")
  : flag(argv, "--stack", "local");
const raw = readStackConfigFile(
  configFile ? path.resolve(ROOT, configFile) : path.join(ROOT, `Pulumi.${stack}.yaml`),
);
const parsed = parseWorkspaceConfig(raw, { baseDir: ROOT, stack });
if (!parsed.ok) {
  process.stderr.write(`invalid stack config ${stack}:\n${formatProblems(parsed.problems)}\n`);
  process.exit(2);
}
const tlsFlag = flag(argv, "--tls", "");
const stackCfg = parsed.config;
const withTls =
  tlsFlag === ""
    ? stackCfg
    : {
        ...stackCfg,
        // Without a tls key in the stack: one day of validity is plenty for a bench run.
        tls: { validityDays: 1, rotation: 0, ...stackCfg.tls, enabled: tlsFlag === "on" },
      };
const cfg = withPorts(withTls, {
  port: Number(flag(argv, "--port", "8786")),
  dashboardPort: Number(flag(argv, "--dashboard-port", "8787")),
});
const tlsDir = tlsEnabled(cfg) ? flag(argv, "--tls-dir", "") : "";
if (tlsEnabled(cfg)) {
  if (tlsDir === "") {
    process.stderr.write("--tls-dir is required when TLS is on\n");
    process.exit(2);
  }
  writeTlsFiles(tlsDir, await generateTlsMaterial(localTlsSpec(cfg)));
}
const pods = Array.from({ length: cfg.workers.replicas }, (_, i) => podName(i));
process.stdout.write(
  JSON.stringify({
    stack,
    address: schedulerAddress(cfg, LOCAL_HOST),
    schedulerArgv: localSchedulerArgv(cfg),
    schedulerEnv: schedulerEnv(cfg),
    workers: pods.map((name) => ({ name, argv: localWorkerArgv(cfg, { name }) })),
    workerEnv: workerEnv(cfg),
    daskConfigYaml: daskConfigYaml(cfg, tlsDir === "" ? {} : { tlsDir }),
    tlsDir: tlsDir === "" ? null : tlsDir,
    replicas: cfg.workers.replicas,
    nprocs: cfg.workers.nprocs,
    threadsPerProcess: cfg.workers.threadsPerProcess,
    memoryPerProcessBytes: cfg.workers.memoryPerProcess.bytes,
    podMemoryBytes: cfg.workers.podMemory.bytes,
  }) + "\n",
);
