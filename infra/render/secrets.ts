/**
 * Secret values in recorded inputs. Pulumi's mock runtime hands a secret Input (such as the Dask
 * TLS Secret's data, `pulumi.secret(...)`) to the mocks wrapped in its wire form, a mapping with
 * a signature key. The render never writes such a value: like `pulumi preview`, it shows that a
 * secret is there and keeps its shape (the keys of a Secret's `data`), not what it holds.
 */

/** Pulumi's signature key and the value that marks a secret (`@pulumi/pulumi/runtime/rpc`). */
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/**
 * What the render writes in place of every secret string: `[secret]` in base64, so that it is
 * still a valid value where the schema wants base64 (a Secret's `data`) and reads as what it is
 * once decoded.
 */
export const REDACTED = Buffer.from("[secret]", "utf8").toString("base64");

/** Whether `v` is a secret in Pulumi's wire form. */
export function isSecretValue(v: unknown): v is { value: unknown } {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as Record<string, unknown>)[SIG_KEY] === SECRET_SIG &&
    "value" in v
  );
}

/** `v` with every leaf inside a secret replaced by {@link REDACTED} (shape kept). Pure. */
export function redactSecrets(v: unknown, inSecret = false): unknown {
  if (isSecretValue(v)) return redactSecrets(v.value, true);
  if (Array.isArray(v)) return v.map((x) => redactSecrets(x, inSecret));
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactSecrets(x, inSecret)]));
  }
  return inSecret && v !== null && v !== undefined ? REDACTED : v;
}

/** `v` with every secret unwrapped to its value: for tests that check what a secret holds. Pure. */
export function revealSecrets(v: unknown): unknown {
  if (isSecretValue(v)) return revealSecrets(v.value);
  if (Array.isArray(v)) return v.map(revealSecrets);
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revealSecrets(x)]));
  }
  return v;
}
