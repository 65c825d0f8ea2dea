/**
 * What a kubelet would run, as an OCI runtime configuration: from a container of a rendered pod
 * spec (`npm run render`) and its image's config, the runc `config.json` that starts the same
 * process with the same user, groups, environment, working directory, read-only root filesystem,
 * dropped capabilities, memory and CPU limits, and exactly the pod's volume mounts.
 *
 * Pure functions only; `real.e2e.ts` materializes the volumes and runs runc on built images.
 * Not modelled (a real kubelet's business, see docs/images.md): the seccomp RuntimeDefault
 * profile, /etc/hosts and resolv.conf, and the Service environment variables.
 */

/** The parts of a Kubernetes pod spec this module reads (plain objects from YAML). */
export interface PodSpec {
  securityContext?: SecurityContext & { fsGroup?: number; supplementalGroups?: number[] };
  automountServiceAccountToken?: boolean;
  containers: Container[];
  volumes?: Volume[];
}

export interface SecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  securityContext?: SecurityContext;
  resources?: { limits?: { memory?: string; cpu?: string } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
}

export interface Volume {
  name: string;
  emptyDir?: object;
  configMap?: { name: string; items?: Array<{ key: string; path: string }> };
  secret?: { secretName: string };
  persistentVolumeClaim?: { claimName: string };
}

/** A ConfigMap as rendered: text `data` and base64 `binaryData`. */
export interface ConfigMapData {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

/** The image config fields a kubelet combines with the container spec. */
export interface ImageConfig {
  User?: string;
  Env?: string[];
  WorkingDir?: string;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
}

/** One volume mount as the container sees it, and what its host directory must hold. */
export interface MountPlan {
  volume: string;
  kind: "emptyDir" | "configMap" | "secret" | "persistentVolumeClaim" | "serviceAccountToken";
  mountPath: string;
  readOnly: boolean;
  /** Files to write into the host directory (relative path -> content), for configMap volumes. */
  files: Record<string, Buffer>;
}

export class PodSpecError extends Error {}

/** Where Kubernetes mounts the service account token when `automountServiceAccountToken`. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export function findContainer(pod: PodSpec, name: string): Container {
  const c = pod.containers.find((x) => x.name === name);
  if (c === undefined) {
    throw new PodSpecError(
      `no container ${name} in the pod spec (it has ${pod.containers.map((x) => x.name).join(", ")})`,
    );
  }
  return c;
}

/**
 * The numeric user a kubelet runs the container as: the container's securityContext wins over
 * the pod's, which wins over the image's USER. fsGroup and supplementalGroups become
 * additional groups. Refuses what `runAsNonRoot` would refuse.
 */
export function runtimeUser(
  pod: PodSpec,
  container: Container,
  image: ImageConfig,
): { uid: number; gid: number; additionalGids: number[] } {
  const imageUser = parseUser(image.User ?? "");
  const uid =
    container.securityContext?.runAsUser ?? pod.securityContext?.runAsUser ?? imageUser?.uid;
  const gid =
    container.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup ?? imageUser?.gid ?? 0;
  const nonRoot = container.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
  if (uid === undefined) {
    throw new PodSpecError(
      `container ${container.name}: no numeric user in its securityContext, the pod's, or the image (USER ${JSON.stringify(image.User ?? "")}); runAsNonRoot cannot be verified`,
    );
  }
  if (nonRoot === true && uid === 0) {
    throw new PodSpecError(`container ${container.name}: runAsNonRoot is set but the user is 0`);
  }
  const extra = [
    ...(pod.securityContext?.fsGroup !== undefined ? [pod.securityContext.fsGroup] : []),
    ...(pod.securityContext?.supplementalGroups ?? []),
  ];
  return { uid, gid, additionalGids: [...new Set([gid, ...extra])] };
}

/** `USER 10001:10001` / `10001` / `name` -> numeric uid and gid, or undefined when not numeric. */
export function parseUser(user: string): { uid: number; gid?: number } | undefined {
  const m = /^(\d+)(?::(\d+))?$/.exec(user.trim());
  if (m === null) return undefined;
  return { uid: Number(m[1]), ...(m[2] !== undefined ? { gid: Number(m[2]) } : {}) };
}

/** The argument of a Dockerfile's last USER instruction (what the image runs as). */
export function dockerfileUser(text: string): string {
  const users = [...text.matchAll(/^\s*USER\s+(\S+)\s*$/gim)].map((m) => m[1] as string);
  const last = users.at(-1);
  if (last === undefined) throw new PodSpecError("the Dockerfile has no USER instruction");
  return last;
}

/**
 * The environment a kubelet gives the process: the image's ENV, then the container's `env`
 * (a later name wins); `fieldRef` values for the pod's name and namespace.
 */
export function containerEnv(
  container: Container,
  image: ImageConfig,
  pod: { name: string; namespace: string },
): string[] {
  const env = new Map<string, string>();
  for (const kv of image.Env ?? []) {
    const i = kv.indexOf("=");
    env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) {
      env.set(e.name, e.value);
      continue;
    }
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (field === "metadata.name") env.set(e.name, pod.name);
    else if (field === "metadata.namespace") env.set(e.name, pod.namespace);
    else {
      throw new PodSpecError(
        `container ${container.name}: env ${e.name} comes from ${JSON.stringify(e.valueFrom)}, which this check does not resolve`,
      );
    }
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/** The pod's volumes as the container mounts them, plus the service account token volume. */
export function mountPlan(
  pod: PodSpec,
  container: Container,
  configMaps: Record<string, ConfigMapData>,
): MountPlan[] {
  const plans: MountPlan[] = [];
  for (const m of container.volumeMounts ?? []) {
    if (m.subPath !== undefined) {
      throw new PodSpecError(`container ${container.name}: subPath mounts are not modelled`);
    }
    const v = (pod.volumes ?? []).find((x) => x.name === m.name);
    if (v === undefined) {
      throw new PodSpecError(
        `container ${container.name} mounts ${m.name}, which is not a volume of the pod`,
      );
    }
    const base = { volume: m.name, mountPath: m.mountPath, readOnly: m.readOnly === true };
    if (v.emptyDir !== undefined) plans.push({ ...base, kind: "emptyDir", files: {} });
    else if (v.persistentVolumeClaim !== undefined)
      plans.push({ ...base, kind: "persistentVolumeClaim", files: {} });
    else if (v.secret !== undefined) plans.push({ ...base, kind: "secret", files: {} });
    else if (v.configMap !== undefined) {
      const cm = configMaps[v.configMap.name];
      if (cm === undefined) {
        throw new PodSpecError(`volume ${m.name}: ConfigMap ${v.configMap.name} is not rendered`);
      }
      plans.push({
        ...base,
        // A kubelet always mounts ConfigMap volumes read-only.
        readOnly: true,
        kind: "configMap",
        files: configMapFiles(cm, v.configMap.items),
      });
    } else {
      throw new PodSpecError(`volume ${m.name}: its type is not modelled (${Object.keys(v)})`);
    }
  }
  if (
    pod.automountServiceAccountToken === true &&
    !plans.some((p) => p.mountPath === SERVICE_ACCOUNT_DIR)
  ) {
    plans.push({
      volume: "kube-api-access",
      kind: "serviceAccountToken",
      mountPath: SERVICE_ACCOUNT_DIR,
      readOnly: true,
      files: {
        token: Buffer.from("not-a-token"),
        namespace: Buffer.from("default"),
        "ca.crt": Buffer.from(""),
      },
    });
  }
  return plans;
}

/** The files a ConfigMap volume shows: every key, or only `items` at their paths. */
export function configMapFiles(
  cm: ConfigMapData,
  items?: Array<{ key: string; path: string }>,
): Record<string, Buffer> {
  const all = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(cm.data ?? {})) all.set(k, Buffer.from(v, "utf8"));
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) all.set(k, Buffer.from(v, "base64"));
  const out: Record<string, Buffer> = {};
  if (items === undefined) {
    for (const [k, v] of all) out[k] = v;
    return out;
  }
  for (const it of items) {
    const content = all.get(it.key);
    if (content === undefined) throw new PodSpecError(`ConfigMap item ${it.key} has no data`);
    out[it.path] = content;
  }
  return out;
}

/** A Kubernetes memory quantity in bytes ("512Mi", "2Gi", "1G", "1000"). */
export function memoryBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]i?|[kMGT]|e\d+)?$/.exec(q.trim());
  if (m === null) throw new PodSpecError(`not a memory quantity: ${JSON.stringify(q)}`);
  const n = Number(m[1]);
  const unit = m[2] ?? "";
  const bin: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  const dec: Record<string, number> = { k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  const f = unit.startsWith("e") ? 10 ** Number(unit.slice(1)) : (bin[unit] ?? dec[unit] ?? 1);
  return Math.floor(n * f);
}

/** A CPU quantity ("500m", "2") in millicores. */
export function cpuMillis(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(m)?$/.exec(q.trim());
  if (m === null) throw new PodSpecError(`not a CPU quantity: ${JSON.stringify(q)}`);
  return m[2] === "m" ? Number(m[1]) : Math.round(Number(m[1]) * 1000);
}

/**
 * The runc config.json for `args` in `container` of `pod` on the unpacked image `rootfs`, with
 * each plan mounted from `sources[volume]` (a host directory).
 */
export function ociConfig(opts: {
  pod: PodSpec;
  container: Container;
  image: ImageConfig;
  rootfs: string;
  args: string[];
  mounts: MountPlan[];
  sources: Record<string, string>;
  podName: string;
  namespace: string;
}): Record<string, unknown> {
  const { pod, container, image } = opts;
  const sc = container.securityContext ?? {};
  if (sc.privileged === true) throw new PodSpecError(`container ${container.name} is privileged`);
  const dropAll = (sc.capabilities?.drop ?? []).includes("ALL");
  const caps = dropAll ? (sc.capabilities?.add ?? []).map((c) => `CAP_${c}`) : DEFAULT_CAPS;
  const capabilities = Object.fromEntries(
    ["bounding", "effective", "permitted", "inheritable", "ambient"].map((k) => [k, caps]),
  );
  const limits = container.resources?.limits ?? {};
  const resources: Record<string, unknown> = {
    devices: [{ allow: false, access: "rwm" }],
  };
  if (limits.memory !== undefined) {
    const bytes = memoryBytes(limits.memory);
    // As a kubelet does: no swap beyond the limit.
    resources.memory = { limit: bytes, swap: bytes };
  }
  if (limits.cpu !== undefined) {
    resources.cpu = { quota: cpuMillis(limits.cpu) * 100, period: 100000 };
  }
  const volumeMounts = opts.mounts.map((p) => {
    const source = opts.sources[p.volume];
    if (source === undefined) throw new PodSpecError(`no host directory for volume ${p.volume}`);
    return {
      destination: p.mountPath,
      type: "bind",
      source,
      options: ["rbind", "nosuid", "nodev", p.readOnly ? "ro" : "rw"],
    };
  });
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: runtimeUser(pod, container, image),
      args: opts.args,
      env: containerEnv(container, image, { name: opts.podName, namespace: opts.namespace }),
      cwd: container.workingDir ?? (image.WorkingDir || "/"),
      capabilities,
      noNewPrivileges: sc.allowPrivilegeEscalation === false,
    },
    root: { path: opts.rootfs, readonly: sc.readOnlyRootFilesystem === true },
    hostname: opts.podName,
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      ...volumeMounts,
    ],
    linux: {
      resources,
      namespaces: ["pid", "network", "ipc", "uts", "mount"].map((type) => ({ type })),
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
      ],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}

/** A container runtime's default capabilities (containerd's), when `drop: [ALL]` is not set. */
const DEFAULT_CAPS = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** PEP 503 normalized distribution name. */
export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "-");
}

/** name -> version pins of a pip-compile lockfile (names normalized). */
export function lockPins(text: string): Map<string, string> {
  const pins = new Map<string, string>();
  for (const m of text.matchAll(/^([A-Za-z0-9_.-]+)==([^\s\\;]+)/gm)) {
    pins.set(normalizeName(m[1] as string), m[2] as string);
  }
  return pins;
}

/**
 * What an image installed on top of its base, against the lock: `added` are the distributions
 * the image has and the base has not (name -> version), which must equal the lock exactly;
 * `resolved` is what the image's Python resolves for each locked name (first on sys.path).
 */
export function packageProblems(opts: {
  lock: Map<string, string>;
  added: Map<string, string>;
  resolved: Map<string, string | null>;
}): string[] {
  const problems: string[] = [];
  for (const [name, version] of opts.lock) {
    const got = opts.added.get(name);
    if (got === undefined) problems.push(`${name}==${version} is locked but was not installed`);
    else if (got !== version)
      problems.push(`${name} is ${got} in the image, ${version} in the lock`);
    const seen = opts.resolved.get(name);
    if (seen !== version) {
      problems.push(`import resolves ${name} to ${seen ?? "nothing"}, not the locked ${version}`);
    }
  }
  for (const [name, version] of opts.added) {
    if (!opts.lock.has(name)) problems.push(`${name}==${version} is installed but not in the lock`);
  }
  return problems;
}
