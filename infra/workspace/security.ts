/**
 * The restricted security settings every workspace pod and container gets, and the writable
 * scratch volumes that make a read-only root filesystem workable for Dask.
 *
 * The settings meet the Kubernetes "restricted" Pod Security Standard, so the namespace enforces
 * it (see `namespaceLabels`) and any object that slips below it is refused by the API server.
 */
import type * as k8s from "@pulumi/kubernetes";
import type { PodStorage } from "../config-security.js";

export type SecurityContext = k8s.types.input.core.v1.SecurityContext;
export type PodSecurityContext = k8s.types.input.core.v1.PodSecurityContext;
export type Volume = k8s.types.input.core.v1.Volume;
export type VolumeMount = k8s.types.input.core.v1.VolumeMount;

/**
 * The numeric user (and group) the containers run as. Numeric, because `runAsNonRoot` can only be
 * verified by the kubelet for a numeric user; the images in `images/` create this user.
 */
export const RUN_AS_USER = 10001;

/** Pod-level: non-root, a fixed uid/gid, files on volumes owned by that group, seccomp on. */
export function restrictedPodSecurityContext(): PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: RUN_AS_USER,
    runAsGroup: RUN_AS_USER,
    fsGroup: RUN_AS_USER,
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/**
 * Container-level: repeats the pod's user settings (a container-level value wins, so nothing in
 * the image can undo them), no privilege escalation, no capabilities, read-only root filesystem.
 * Writable paths come only from `scratchVolumes`.
 */
export function restrictedContainerSecurityContext(): SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: RUN_AS_USER,
    runAsGroup: RUN_AS_USER,
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** Where the scratch emptyDir is mounted. Also `HOME`, so Python tools that cache under `~` work. */
export const SCRATCH_DIR = "/tmp";

/**
 * The scratch volume: `/tmp` as an emptyDir. Dask's local directory (worker spill files, the
 * scheduler's and nanny's lock files) defaults to `<tempdir>/dask-scratch-space`, i.e. under
 * `/tmp`, so this one volume is what lets every Dask process run on a read-only root. Its
 * `sizeLimit` (from `workers.spillStorage` / `*.scratchStorage`, infra/config-security.ts) makes
 * the kubelet evict a pod that spills past it instead of letting one study fill the node's disk
 * and get every pod on the node evicted.
 */
export function scratchVolume(storage?: PodStorage): Volume {
  return {
    name: "scratch",
    emptyDir: storage === undefined ? {} : { sizeLimit: storage.scratch.quantity },
  };
}

/**
 * A container's resources with its ephemeral storage added: request = limit, so the scheduler
 * only places the pod where its disk is free and the kubelet evicts it at that limit.
 */
export function withEphemeralStorage(
  resources: Record<string, string>,
  storage: PodStorage,
): { requests: Record<string, string>; limits: Record<string, string> } {
  const all = { ...resources, "ephemeral-storage": storage.ephemeral.quantity };
  return { requests: all, limits: all };
}

export function scratchVolumeMount(): VolumeMount {
  return { name: "scratch", mountPath: SCRATCH_DIR };
}

/**
 * Labels for the namespace: the Pod Security Admission "restricted" level is enforced, so the API
 * server itself rejects a pod that loses any of the settings above.
 */
export function podSecurityLabels(): Record<string, string> {
  return {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
  };
}
