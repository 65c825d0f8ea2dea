/**
 * The worker Deployment: N Dask worker processes per pod, a Guaranteed-QoS memory limit with
 * headroom (decided in `infra/memory.ts`), graceful retirement before the pod goes away.
 */
import type * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { retireCommand, workerCommand, workerEnv } from "../dask.js";
import type { WorkspaceConfig } from "../types.js";
import {
  daskConfigChecksum,
  daskConfigEnv,
  daskConfigMount,
  daskConfigVolume,
} from "./daskconfig.js";
import { recommendedLabels, selectorLabels, type WorkspaceNames } from "./labels.js";
import { type NodePlacement, placementFields } from "./placement.js";
import { NANNY_PRELOAD_ARGS, workerLivenessProbe } from "./probes.js";
import {
  SCRATCH_DIR,
  restrictedContainerSecurityContext,
  restrictedPodSecurityContext,
  scratchVolume,
  scratchVolumeMount,
  withEphemeralStorage,
} from "./security.js";
import { tlsVolumeMounts, tlsVolumes } from "./tls.js";

/** The env var holding the pod's name (downward API); `--name` and the preStop hook use it. */
export const POD_NAME_ENV = "POD_NAME";

/**
 * Seconds added to the retirement timeout for the rest of the shutdown: starting the retire
 * command's Python, and, after SIGTERM, the nanny closing its worker processes.
 */
export const RETIRE_MARGIN_SECONDS = 30;

/**
 * `terminationGracePeriodSeconds`: the kubelet's budget covers the preStop hook AND the SIGTERM
 * shutdown after it; when it runs out the pod is SIGKILLed mid-retirement and its results are
 * lost, so it must exceed the retirement timeout.
 */
export function workerGracePeriodSeconds(retireTimeoutSeconds: number): number {
  return retireTimeoutSeconds + RETIRE_MARGIN_SECONDS;
}

/** Single-quote one word for `sh`. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The preStop hook: `retireCommand` run through `sh -c`. The kubelet does not expand `$(VAR)` in
 * lifecycle hooks (only in command/args/env), so the pod name reaches `--name-prefix` through the
 * shell instead: every other word is single-quoted, the pod name alone is `"$POD_NAME"`. `exec`
 * keeps the retire process as the hook's only process.
 */
export function workerPreStopCommand(cfg: WorkspaceConfig, scheduler: string): string[] {
  const podName = `$${POD_NAME_ENV}`;
  const argv = retireCommand({
    schedulerAddress: scheduler,
    namePrefix: podName,
    timeoutSeconds: cfg.workers.retireTimeoutSeconds,
  });
  const words = argv.map((word) => (word === podName ? `"${podName}"` : shellQuote(word)));
  return ["sh", "-c", `exec ${words.join(" ")}`];
}

/** The worker container's environment: the pod name, Dask config location, `workerEnv`. */
export function workerContainerEnv(cfg: WorkspaceConfig): k8s.types.input.core.v1.EnvVar[] {
  const extra = Object.entries(workerEnv(cfg))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => ({ name, value }));
  return [
    { name: POD_NAME_ENV, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ...daskConfigEnv(),
    { name: "HOME", value: SCRATCH_DIR },
    ...extra,
  ];
}

export interface WorkersContext {
  cfg: WorkspaceConfig;
  instance: string;
  names: WorkspaceNames;
  /** `tcp://...` of the scheduler Service. */
  schedulerAddress: string;
  placement?: NodePlacement;
  /** Container image; default `cfg.images.dask`. */
  image?: pulumi.Input<string>;
}

export function workerDeployment(ctx: WorkersContext): k8s.types.input.apps.v1.Deployment {
  const { cfg, instance, names } = ctx;
  const labels = recommendedLabels(instance, "worker", cfg.images.dask);
  // requests = limits for every resource of the only container: QoS class Guaranteed, so the
  // kubelet evicts these pods last and the memory limit is the pod's cgroup limit exactly.
  const resources = { cpu: cfg.workers.cpu, memory: cfg.workers.podMemory.quantity };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: names.worker, namespace: cfg.namespace, labels },
    spec: {
      // When the HPA owns the size, `replicas` must be absent: every `pulumi up` would otherwise
      // reset the HPA's choice, deleting pods that hold results.
      ...(cfg.autoscaling.enabled ? {} : { replicas: cfg.workers.replicas }),
      selector: { matchLabels: selectorLabels(instance, "worker") },
      // Replace one pod at a time and never surge: worker pods are sized to their nodes, so a
      // surge pod often cannot be scheduled and would stall the rollout.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } },
      template: {
        metadata: { labels, annotations: daskConfigChecksum(cfg) },
        spec: {
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: workerGracePeriodSeconds(cfg.workers.retireTimeoutSeconds),
          securityContext: restrictedPodSecurityContext(),
          ...placementFields(ctx.placement),
          containers: [
            {
              name: "worker",
              image: ctx.image ?? cfg.images.dask,
              imagePullPolicy: cfg.images.pullPolicy,
              // `$(POD_NAME)` is expanded by the kubelet from the env below: each process is
              // named `<pod>-<i>`, which is what the preStop hook retires by prefix.
              command: [
                ...workerCommand(cfg, {
                  schedulerAddress: ctx.schedulerAddress,
                  name: `$(${POD_NAME_ENV})`,
                }),
                // The nanny heartbeat behind the liveness probe (infra/workspace/probes.ts).
                ...NANNY_PRELOAD_ARGS,
              ],
              env: workerContainerEnv(cfg),
              resources: withEphemeralStorage(resources, cfg.hardening.storage.worker),
              // Liveness watches the nanny host loop only (its heartbeat file), never a worker
              // process: the nanny itself restarts a stuck or over-budget worker process, and a
              // kubelet restart would kill all N processes and their results at once.
              livenessProbe: workerLivenessProbe(),
              lifecycle: {
                preStop: { exec: { command: workerPreStopCommand(cfg, ctx.schedulerAddress) } },
              },
              securityContext: restrictedContainerSecurityContext(),
              volumeMounts: [daskConfigMount(), scratchVolumeMount(), ...tlsVolumeMounts(cfg)],
            },
          ],
          volumes: [
            daskConfigVolume(names.daskConfig),
            scratchVolume(cfg.hardening.storage.worker),
            ...tlsVolumes(cfg, instance, names),
          ],
        },
      },
    },
  };
}
