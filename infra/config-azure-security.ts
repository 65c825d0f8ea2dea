/**
 * The security baseline keys of the `azure` block (docs/azure.md, "Security baseline"): Entra ID
 * and Azure RBAC, API server exposure, automatic upgrades and their maintenance window, the
 * security and monitoring add-ons, encryption at host, and the results storage account's data
 * protection and network rules.
 *
 * `infra/config.ts` (the only module that reads the stack config) spreads
 * {@link AzureSecurityShape} into its `azure` schema and calls {@link azureSecurityIssues} and
 * {@link azureSecurityChecks}; everything here is pure. The defaults are the secure ones wherever
 * they cost nothing; what costs money (Defender, Container Insights, Prometheus) or needs a
 * subscription feature (encryption at host) is an explicit opt-in.
 */
import { z } from "zod";
import type { Problem } from "./errors.js";
import { encryptionAtHostSupport } from "./azure/vm-sizes.js";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

/** `a.b.c.d` → its four octets, or undefined when it is not a dotted IPv4 address. */
function octets(ip: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : undefined;
}

/** An IPv4 address or CIDR, split; undefined (with the reason) when it is neither. */
export function parseIpv4Range(
  text: string,
): { ok: true; octets: number[]; prefix: number } | { ok: false; reason: string } {
  const [ip, prefixText, extra] = text.trim().split("/");
  const o = octets(ip ?? "");
  if (o === undefined || extra !== undefined) {
    return {
      ok: false,
      reason: `${JSON.stringify(text)} is not an IPv4 address or CIDR range; write it like 203.0.113.7 or 203.0.113.0/24`,
    };
  }
  if (prefixText === undefined) return { ok: true, octets: o, prefix: 32 };
  if (!/^\d{1,2}$/.test(prefixText) || Number(prefixText) > 32) {
    return {
      ok: false,
      reason: `${JSON.stringify(text)} has prefix length /${prefixText}; it must be 0–32`,
    };
  }
  return { ok: true, octets: o, prefix: Number(prefixText) };
}

/** True for 10/8, 172.16/12 and 192.168/16 (RFC 1918). */
function isPrivate(o: number[]): boolean {
  const [a = 0, b = 0] = o;
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
}

const ipRange = z.string().superRefine((v, ctx) => {
  const r = parseIpv4Range(v);
  if (!r.ok) ctx.addIssue({ code: "custom", message: r.reason, input: v });
});

/** Days of the week as AKS spells them in maintenance windows. */
export const WEEK_DAYS = [
  "Monday",
  "Tuesday",
  "Wednesday",
  "Thursday",
  "Friday",
  "Saturday",
  "Sunday",
] as const;

const MaintenanceWindowSchema = z.strictObject({
  /** false: no window, AKS upgrades whenever it likes. Default true. */
  enabled: z.boolean().default(true),
  /** Day of the week the window opens. Default Sunday. */
  day: z.enum(WEEK_DAYS).default("Sunday"),
  /** Hour (0–23, in `utcOffset`) the window opens. Default 0. */
  startHour: int(0, 23).default(0),
  /** Length in hours; AKS accepts 4–24. Default 4. */
  durationHours: int(4, 24).default(4),
  /** The window's time zone as `+HH:mm` / `-HH:mm`. Default `+00:00` (UTC). */
  utcOffset: z
    .string()
    .regex(/^[+-](0\d|1[0-4]):[0-5]\d$/, {
      error: 'must look like "+00:00", "+05:30" or "-07:00" (−14:00 to +14:00)',
    })
    .default("+00:00"),
  /** Every how many weeks (1–4). Default 1. */
  intervalWeeks: int(1, 4).default(1),
});

/** Keys spread into the `azure` schema of config.ts (each documented in docs/configuration.md). */
export const AzureSecurityShape = {
  /** AKS-managed Microsoft Entra ID and who administers the cluster. */
  entraId: z
    .strictObject({
      /**
       * AKS-managed Entra ID: users sign in with their Entra ID account through kubelogin.
       * Default true. false keeps certificate-based local accounts (a warning says so).
       */
      enabled: z.boolean().default(true),
      /** Azure RBAC for Kubernetes authorization (roles assigned in Azure). Default: `enabled`. */
      azureRbac: z.boolean().optional(),
      /**
       * Give whoever runs `pulumi up` the "Azure Kubernetes Service RBAC Cluster Admin" role on
       * the cluster, so the program can deploy the workspace. Default: true unless
       * `adminGroupObjectIds` is set (then those groups get the role instead).
       */
      deployerIsAdmin: z.boolean().optional(),
      /**
       * What the deployer is in Entra ID: `User` (`az login` as yourself) or `ServicePrincipal`
       * (CI with a service principal or managed identity). ARM refuses a role assignment whose
       * type does not match. Default `User`.
       */
      deployerPrincipalType: z.enum(["User", "ServicePrincipal"]).default("User"),
    })
    .prefault({}),
  /** Who may reach the Kubernetes API server. */
  apiServer: z
    .strictObject({
      /** IPv4 addresses or CIDR ranges allowed to reach the public API server (at most 200). */
      authorizedIpRanges: z.array(ipRange).min(1).max(200).optional(),
      /** A private cluster: the API server has no public endpoint. Default false. */
      privateCluster: z.boolean().default(false),
    })
    .prefault({}),
  /** Automatic upgrades and when they may happen. */
  upgrades: z
    .strictObject({
      /** Cluster auto-upgrade channel. Default `patch` (latest patch of the same minor). */
      channel: z.enum(["none", "patch", "stable", "rapid"]).default("patch"),
      /** Node OS upgrade channel. Default `NodeImage` (weekly node images, reimaged nodes). */
      nodeOsChannel: z
        .enum(["None", "Unmanaged", "SecurityPatch", "NodeImage"])
        .default("NodeImage"),
      /** The weekly window both upgrade schedules use. */
      maintenanceWindow: MaintenanceWindowSchema.prefault({}),
    })
    .prefault({}),
  /** Control-plane logs and the optional monitoring add-ons. */
  monitoring: z
    .strictObject({
      /**
       * Control-plane audit logs to a Log Analytics workspace: `admin` (kube-audit-admin: every
       * request except get/list/watch), `all` (kube-audit: every request), `off`. Default `admin`.
       */
      auditLogs: z.enum(["off", "admin", "all"]).default("admin"),
      /** Log Analytics retention in days (30–730). Default 30 (included in the ingestion price). */
      retentionDays: int(30, 730).default(30),
      /** Daily ingestion cap of the workspace in GB; data beyond it is dropped. Default none. */
      dailyQuotaGb: z.number().positive().optional(),
      /** Container Insights (container logs and inventory to Log Analytics). Default false. */
      containerInsights: z.boolean().default(false),
      /** Azure Monitor managed Prometheus (metrics to an Azure Monitor workspace). Default false. */
      prometheus: z.boolean().default(false),
    })
    .prefault({}),
  /**
   * The Microsoft Defender for Containers sensor on the nodes, reporting to the Log Analytics
   * workspace. Billed per vCore; the plan itself is enabled per subscription. Default false.
   */
  defender: z.boolean().default(false),
  /** The Azure Policy add-on (Gatekeeper) that enforces assigned policies. Default false. */
  azurePolicy: z.boolean().default(false),
  /** Image Cleaner removes unused, vulnerable images from the nodes. */
  imageCleaner: z
    .strictObject({
      /** Default true. */
      enabled: z.boolean().default(true),
      /** Scan interval in hours (24–2160). Default 168 (weekly). */
      intervalHours: int(24, 2160).default(168),
    })
    .prefault({}),
  /**
   * Encryption at host for both node pools (temp disks and disk caches encrypted too). Needs the
   * subscription feature `Microsoft.Compute/EncryptionAtHost` and a VM size that supports it.
   * Only takes effect on new node pools. Default false.
   */
  encryptionAtHost: z.boolean().default(false),
  /** Data protection and network access of the results storage account. */
  storage: z
    .strictObject({
      /** Days deleted blobs and containers can be restored (1–365); 0 turns it off. Default 7. */
      softDeleteDays: int(0, 365).default(7),
      /** Blob versioning: overwritten and deleted blobs keep their previous version. Default true. */
      versioning: z.boolean().default(true),
      /**
       * Days previous versions are kept before a lifecycle rule deletes them (1–365). Default:
       * `softDeleteDays` (7), so versions do not pile up and bill forever.
       */
      versionRetentionDays: int(1, 365).optional(),
      /**
       * `Enabled` or `Disabled` public endpoint. Default: `Disabled` with a private endpoint and
       * no `allowedIpRanges`, else `Enabled`.
       */
      publicNetworkAccess: z.enum(["Enabled", "Disabled"]).optional(),
      /**
       * Public IPv4 addresses or ranges that may use the public endpoint (e.g. yours, to read
       * results); everything else is denied. Needs `privateEndpoint` (see docs/azure.md).
       */
      allowedIpRanges: z.array(ipRange).min(1).max(200).optional(),
      /**
       * A private endpoint for blobs in a virtual network the program creates for the node pools,
       * with its private DNS zone. Default false.
       */
      privateEndpoint: z.boolean().default(false),
    })
    .prefault({}),
};

const AzureSecurityObject = z.object(AzureSecurityShape);
/** The parsed security keys, every default applied. */
export type AzureSecurityConfig = z.output<typeof AzureSecurityObject>;

/** Every security key at its default (for tests and fixtures that build an AzureConfig by hand). */
export function defaultAzureSecurity(): AzureSecurityConfig {
  return AzureSecurityObject.parse({});
}

/** Storage IP rules: public IPv4 only, and Azure Storage refuses /31 and /32 ranges. */
function storageIpRuleProblems(ranges: readonly string[]): Problem[] {
  const problems: Problem[] = [];
  ranges.forEach((text, i) => {
    const r = parseIpv4Range(text);
    if (!r.ok) return; // reported by the schema
    const path = `azure.storage.allowedIpRanges.${i}`;
    if (text.includes("/") && r.prefix >= 31) {
      problems.push({
        path,
        message: `${text}: Azure Storage rejects /31 and /32 ranges; write the address${r.prefix === 31 ? "es" : ""} without a prefix (${r.octets.join(".")})`,
      });
    }
    if (isPrivate(r.octets)) {
      problems.push({
        path,
        message: `${text} is a private (RFC 1918) range, which storage IP rules cannot allow; the cluster reaches the account through the private endpoint, list only public addresses here`,
      });
    }
  });
  return problems;
}

/**
 * Cross-key rules of the security keys, for the `azure` schema's superRefine. `a` is the parsed
 * (possibly partly invalid) azure object.
 */
export function azureSecurityIssues(a: {
  adminGroupObjectIds?: readonly string[];
  disableLocalAccounts?: boolean;
  kubernetesVersion?: string;
  entraId?: { enabled?: unknown; azureRbac?: unknown; deployerIsAdmin?: unknown };
  apiServer?: { authorizedIpRanges?: unknown; privateCluster?: unknown };
  upgrades?: { channel?: unknown };
  storage?: { allowedIpRanges?: unknown; privateEndpoint?: unknown; publicNetworkAccess?: unknown };
}): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  const entra = a.entraId?.enabled !== false;
  if (!entra) {
    if (a.disableLocalAccounts === true) {
      issues.push({
        path: ["disableLocalAccounts"],
        message:
          "true needs Entra ID: AKS refuses to disable local accounts without it; remove azure.entraId.enabled: false or this key",
      });
    }
    if (a.entraId?.azureRbac === true) {
      issues.push({
        path: ["entraId", "azureRbac"],
        message:
          "true needs azure.entraId.enabled: Azure RBAC for Kubernetes works only with AKS-managed Entra ID",
      });
    }
    if (a.adminGroupObjectIds !== undefined) {
      issues.push({
        path: ["adminGroupObjectIds"],
        message:
          "names Entra ID admin groups, but azure.entraId.enabled is false; remove one of the two",
      });
    }
    if (a.entraId?.deployerIsAdmin === true) {
      issues.push({
        path: ["entraId", "deployerIsAdmin"],
        message:
          "true needs azure.entraId.enabled: the cluster admin role is an Azure RBAC role for Entra ID clusters",
      });
    }
  }
  if (
    Array.isArray(a.apiServer?.authorizedIpRanges) &&
    a.apiServer?.authorizedIpRanges.length > 0 &&
    a.apiServer?.privateCluster === true
  ) {
    issues.push({
      path: ["apiServer", "authorizedIpRanges"],
      message:
        "cannot be combined with azure.apiServer.privateCluster: true (AKS applies authorized ranges only to a public API server); keep one of the two",
    });
  }
  const channel = a.upgrades?.channel ?? "patch";
  const version = a.kubernetesVersion;
  if (typeof version === "string" && channel !== "none") {
    if (/^\d+\.\d+\.\d+$/.test(version)) {
      issues.push({
        path: ["kubernetesVersion"],
        message: `${version} pins a patch release, but azure.upgrades.channel "${String(channel)}" moves the cluster past it and the next pulumi up would try to go back; write "${version.replace(/\.\d+$/, "")}" or set azure.upgrades.channel: none`,
      });
    } else if (channel === "stable" || channel === "rapid") {
      issues.push({
        path: ["kubernetesVersion"],
        message: `${version} pins a minor release, but azure.upgrades.channel "${channel}" upgrades minors too and the next pulumi up would try to go back; remove kubernetesVersion or use channel patch`,
      });
    }
  }
  const storage = a.storage;
  const privateEndpoint = storage?.privateEndpoint === true;
  if (Array.isArray(storage?.allowedIpRanges) && !privateEndpoint) {
    issues.push({
      path: ["storage", "allowedIpRanges"],
      message:
        "closes the account's public endpoint to everything else, and the runner on AKS (same region, where storage IP rules do not apply) could no longer write results; also set azure.storage.privateEndpoint: true",
    });
  }
  if (storage?.publicNetworkAccess === "Disabled" && !privateEndpoint) {
    issues.push({
      path: ["storage", "publicNetworkAccess"],
      message:
        "Disabled leaves the runner no way to the results; also set azure.storage.privateEndpoint: true",
    });
  }
  if (storage?.publicNetworkAccess === "Disabled" && Array.isArray(storage.allowedIpRanges)) {
    issues.push({
      path: ["storage", "allowedIpRanges"],
      message:
        "is ignored when azure.storage.publicNetworkAccess is Disabled; remove one of the two",
    });
  }
  return issues;
}

/**
 * Checks that need the whole resolved azure block: warnings for an API server open to the
 * internet and for local accounts, storage IP rules Azure would refuse, and encryption at host
 * against the pools' VM sizes (an error for a size known not to support it, a warning for a size
 * the table does not know).
 */
export function azureSecurityChecks(azure: {
  systemPool: { vmSize: string };
  workerPool: { vmSize: string };
  apiServer: AzureSecurityConfig["apiServer"];
  entraId: AzureSecurityConfig["entraId"];
  encryptionAtHost: boolean;
  storage: AzureSecurityConfig["storage"];
}): { problems: Problem[]; warnings: string[] } {
  const problems: Problem[] = [];
  const warnings: string[] = [];
  if (azure.apiServer.authorizedIpRanges === undefined && !azure.apiServer.privateCluster) {
    warnings.push(
      "azure.apiServer: the Kubernetes API server is reachable from the whole internet (Entra ID still guards it); set azure.apiServer.authorizedIpRanges to your addresses or azure.apiServer.privateCluster: true",
    );
  }
  if (azure.apiServer.authorizedIpRanges?.some((r) => parseIpv4Range(r).ok && /\/0$/.test(r))) {
    warnings.push(
      "azure.apiServer.authorizedIpRanges: a /0 range allows every address, which is the same as no restriction",
    );
  }
  if (azure.apiServer.privateCluster) {
    warnings.push(
      'azure.apiServer.privateCluster: the API server resolves only inside the cluster\'s virtual network, so run pulumi up and kubectl from a machine connected to it (docs/azure.md, "API server exposure")',
    );
  }
  if (!azure.storage.versioning && azure.storage.versionRetentionDays !== undefined) {
    warnings.push(
      "azure.storage.versionRetentionDays: ignored because azure.storage.versioning is false",
    );
  }
  if (!azure.entraId.enabled) {
    warnings.push(
      "azure.entraId.enabled: false keeps AKS local accounts: anyone holding the admin kubeconfig is cluster-admin, with no per-user sign-in or audit identity",
    );
  }
  problems.push(...storageIpRuleProblems(azure.storage.allowedIpRanges ?? []));
  if (azure.encryptionAtHost) {
    for (const [key, vmSize] of [
      ["azure.systemPool.vmSize", azure.systemPool.vmSize],
      ["azure.workerPool.vmSize", azure.workerPool.vmSize],
    ] as const) {
      const support = encryptionAtHostSupport(vmSize);
      if (support === "unsupported") {
        problems.push({
          path: key,
          message: `${vmSize} does not support encryption at host (azure.encryptionAtHost: true); choose a current size such as Standard_D4s_v5, or turn encryptionAtHost off`,
        });
      } else if (support === "unknown") {
        warnings.push(
          `${key}: whether ${vmSize} supports encryption at host is not in the VM size table; check with az vm list-skus --size ${vmSize} --query "[0].capabilities[?name=='EncryptionAtHostSupported']"`,
        );
      }
    }
  }
  return { problems, warnings };
}

/** The storage account's public network access after defaults (see the key's JSDoc). */
export function storagePublicNetworkAccess(
  storage: AzureSecurityConfig["storage"],
): "Enabled" | "Disabled" {
  return (
    storage.publicNetworkAccess ??
    (storage.privateEndpoint && storage.allowedIpRanges === undefined ? "Disabled" : "Enabled")
  );
}
