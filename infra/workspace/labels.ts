/**
 * Labels and names for every object the DaskWorkspace creates.
 *
 * The recommended `app.kubernetes.io/*` labels go on every object and pod template. Selectors use
 * only the immutable subset (name, instance, component): a Deployment's selector cannot change
 * after creation, so a label that changes with the image (`version`) must never be in it.
 */

/** The application name every workspace object carries in `app.kubernetes.io/name`. */
export const APP_NAME = "dask";
/** `app.kubernetes.io/part-of`: the package that provisions the objects. */
export const PART_OF = "dask-workspace";
/** `app.kubernetes.io/managed-by`. */
export const MANAGED_BY = "pulumi";

/** The parts of a workspace, each with its own pods, selectors and network rules. */
export type WorkspaceComponent =
  "config" | "scheduler" | "worker" | "runner" | "network" | "results" | "deletion-cost";

export type Labels = Record<string, string>;

/**
 * The selector labels of one component of one workspace instance. Stable for the life of the
 * Deployment, and the basis of every NetworkPolicy peer.
 */
export function selectorLabels(instance: string, component: WorkspaceComponent): Labels {
  return {
    "app.kubernetes.io/name": APP_NAME,
    "app.kubernetes.io/instance": instance,
    "app.kubernetes.io/component": component,
  };
}

/** Labels that select every pod of one workspace instance, whatever its component. */
export function instanceLabels(instance: string): Labels {
  return {
    "app.kubernetes.io/name": APP_NAME,
    "app.kubernetes.io/instance": instance,
  };
}

/**
 * The full recommended label set. `version` is derived from an image tag and left out when the
 * image has none that is a valid label value (e.g. a digest-only reference).
 */
export function recommendedLabels(
  instance: string,
  component: WorkspaceComponent,
  image?: string,
): Labels {
  const version = image === undefined ? undefined : imageVersion(image);
  return {
    ...selectorLabels(instance, component),
    "app.kubernetes.io/part-of": PART_OF,
    "app.kubernetes.io/managed-by": MANAGED_BY,
    ...(version === undefined ? {} : { "app.kubernetes.io/version": version }),
  };
}

/** A label value: at most 63 characters, alphanumerics with `-_.` inside. */
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)$/;

/**
 * The tag of an image reference, when it is a valid label value: `repo/dask:2026.8.0@sha256:..`
 * → `2026.8.0`; `repo:5000/dask` (a registry port, no tag) → undefined.
 */
export function imageVersion(image: string): string | undefined {
  const withoutDigest = image.split("@")[0] ?? image;
  const lastSlash = withoutDigest.lastIndexOf("/");
  const lastColon = withoutDigest.lastIndexOf(":");
  if (lastColon <= lastSlash) {
    return undefined;
  }
  const tag = withoutDigest.slice(lastColon + 1);
  return LABEL_VALUE.test(tag) ? tag : undefined;
}

/**
 * Kubernetes object names of one workspace instance, all derived from the component's name so two
 * workspaces can share a namespace. Pulumi logical names use the same strings.
 */
export interface WorkspaceNames {
  daskConfig: string;
  scheduler: string;
  worker: string;
  autoscaler: string;
  runner: string;
  defaultDeny: string;
  schedulerComm: string;
  schedulerDashboard: string;
  workerPeers: string;
  /** The results PersistentVolumeClaim. */
  results: string;
}

export function workspaceNames(instance: string): WorkspaceNames {
  return {
    daskConfig: `${instance}-config`,
    scheduler: `${instance}-scheduler`,
    worker: `${instance}-worker`,
    autoscaler: `${instance}-worker`,
    runner: `${instance}-runner`,
    defaultDeny: `${instance}-default-deny`,
    schedulerComm: `${instance}-scheduler-comm`,
    schedulerDashboard: `${instance}-scheduler-dashboard`,
    workerPeers: `${instance}-worker-peers`,
    results: `${instance}-results`,
  };
}

/** Names of the objects for one `jobs.<name>` entry. */
export function jobNames(instance: string, job: string): { job: string; study: string } {
  return { job: `${instance}-job-${job}`, study: `${instance}-study-${job}` };
}
