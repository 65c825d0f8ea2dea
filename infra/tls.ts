/**
 * Dask TLS: the certificate authority and certificate that encrypt and authenticate every Dask
 * connection (scheduler, workers, runner), and the Dask config that uses them.
 *
 * One function makes the material for both places it is used: the Pulumi program stores it in a
 * Kubernetes Secret (`infra/workspace/tls.ts`), and `npm run local` writes it into the run's
 * temporary directory. Nothing here talks to a cloud, so no provider plugin is needed.
 *
 * The trust model is Dask's own (`distributed/security.py`): every side of a connection presents
 * a certificate and requires the peer's to be signed by the workspace's CA (mutual TLS); host
 * names are not checked, because workers connect to each other by pod IP. So one certificate,
 * valid for both server and client use, serves all three roles, and what protects the workspace
 * is who may read its Secret. The CA's private key only exists while the material is made: it is
 * never written anywhere, so nothing can sign another certificate for this workspace later.
 */
import { createHash, generateKeyPair, randomBytes, sign } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import forge from "node-forge";

const generateKeyPairAsync = promisify(generateKeyPair);

/** Where pods mount the TLS Secret (outside `/etc/dask`, whose YAML files Dask reads as config). */
export const TLS_MOUNT_DIR = "/etc/dask-tls";

/** The file names inside the TLS directory; also the keys of a `kubernetes.io/tls` Secret. */
export const TLS_FILES = { ca: "ca.crt", cert: "tls.crt", key: "tls.key" } as const;

/**
 * Bumped when the way material is made changes (key type, extensions), so that every workspace's
 * Secret name, and with it the certificates, change with it.
 */
export const TLS_FORMAT_VERSION = 1;

/** RSA modulus size: 2048 bits is what NIST SP 800-57 accepts through 2030. */
export const RSA_BITS = 2048;

/** What the certificate says: everything except the random keys and the dates. */
export interface TlsSpec {
  /** Subject CN of the workspace's CA, e.g. `dask-workspace dask CA (dask-dev)`. */
  caCommonName: string;
  /** Subject CN of the certificate: the scheduler's host name. */
  commonName: string;
  /** DNS subjectAltNames (the scheduler Service's names, `localhost`). */
  dnsNames: string[];
  /** IP subjectAltNames (`127.0.0.1` for the local workspace). */
  ipAddresses: string[];
  /** Validity of the CA and the certificate, days from the moment they are made. */
  validityDays: number;
}

/** The PEM texts of one workspace's TLS material. */
export interface TlsMaterial {
  /** The CA's certificate: what every side trusts. */
  caCert: string;
  /** The certificate every Dask process presents (server and client use), signed by the CA. */
  cert: string;
  /** Its private key (PKCS#1 PEM). */
  key: string;
}

/**
 * Ten hex digits that change whenever the spec, the rotation counter or the format change. The
 * Secret's name carries them, so new names (or validity, or a rotation) mean a new Secret with
 * new certificates, and pods that mount it are replaced, while the same inputs always give the
 * same name: a `pulumi preview` with nothing changed shows nothing. Pure.
 */
export function tlsSpecHash(spec: TlsSpec, rotation: number): string {
  const canonical = JSON.stringify({
    v: TLS_FORMAT_VERSION,
    rotation,
    ca: spec.caCommonName,
    cn: spec.commonName,
    dns: [...spec.dnsNames].sort(),
    ip: [...spec.ipAddresses].sort(),
    days: spec.validityDays,
  });
  return createHash("sha256").update(canonical).digest("hex").slice(0, 10);
}

/** A positive serial number of 16 random bytes (RFC 5280: at most 20 octets, positive). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString("hex");
}

/** An RSA key pair (PEM) from Node's native generator, off the event loop. */
async function rsaKeyPair(): Promise<{ privateKey: string; publicKey: forge.pki.PublicKey }> {
  const { privateKey, publicKey } = await generateKeyPairAsync("rsa", {
    modulusLength: RSA_BITS,
    publicExponent: 0x10001,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  return { privateKey, publicKey: forge.pki.publicKeyFromPem(publicKey) };
}

/** node-forge exports this (lib/x509.js) but its type definitions leave it out. */
interface ForgeTbs {
  getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1;
}

/**
 * `cert.sign(...)` of node-forge, with the RSA signature made by Node's native crypto: forge's
 * pure-JavaScript RSA takes about 0.4 s per signature, this takes about a millisecond.
 */
function signCertificate(cert: forge.pki.Certificate, signerKeyPem: string): void {
  const oid = forge.pki.oids["sha256WithRSAEncryption"]!;
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  cert.tbsCertificate = (forge.pki as unknown as ForgeTbs).getTBSCertificate(cert);
  const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), "binary");
  cert.signature = sign("sha256", tbs, signerKeyPem).toString("binary");
}

function validity(cert: forge.pki.Certificate, now: Date, days: number): void {
  // A minute of back-dating absorbs small clock differences between nodes.
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = new Date(now.getTime() + days * 86_400_000);
}

/**
 * Makes a fresh CA and a certificate signed by it for `spec`. Random every call (new keys, new
 * serials, dates from `now`): callers that must stay stable keep the first result (the program's
 * Secret ignores later changes to its data; see `infra/workspace/tls.ts`).
 */
export async function generateTlsMaterial(
  spec: TlsSpec,
  opts: { now?: Date } = {},
): Promise<TlsMaterial> {
  const now = opts.now ?? new Date();
  const [caKeys, keys] = await Promise.all([rsaKeyPair(), rsaKeyPair()]);
  const ca = forge.pki.createCertificate();
  ca.publicKey = caKeys.publicKey;
  ca.serialNumber = serialNumber();
  validity(ca, now, spec.validityDays);
  const caSubject = [{ name: "commonName", value: spec.caCommonName }];
  ca.setSubject(caSubject);
  ca.setIssuer(caSubject);
  ca.setExtensions([
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  signCertificate(ca, caKeys.privateKey);

  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  validity(cert, now, spec.validityDays);
  cert.setSubject([{ name: "commonName", value: spec.commonName }]);
  cert.setIssuer(caSubject);
  cert.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    // Every Dask process both listens (server) and connects (client).
    { name: "extKeyUsage", serverAuth: true, clientAuth: true },
    {
      name: "subjectAltName",
      altNames: [
        ...spec.dnsNames.map((value) => ({ type: 2, value })),
        ...spec.ipAddresses.map((ip) => ({ type: 7, ip })),
      ],
    },
    { name: "subjectKeyIdentifier" },
    {
      name: "authorityKeyIdentifier",
      keyIdentifier: ca.generateSubjectKeyIdentifier().getBytes(),
    },
  ]);
  signCertificate(cert, caKeys.privateKey);

  return {
    caCert: forge.pki.certificateToPem(ca),
    cert: forge.pki.certificateToPem(cert),
    key: keys.privateKey,
  };
}

/**
 * The Dask config that turns TLS on, for files in `dir` (to merge under `distributed.comm`).
 * Every role gets the same certificate and key; `require-encryption` makes every Dask process
 * refuse a plain `tcp://` connection instead of falling back to it. Pure.
 */
export function daskTlsCommConfig(dir: string): Record<string, unknown> {
  const cert = path.posix.join(dir, TLS_FILES.cert);
  const key = path.posix.join(dir, TLS_FILES.key);
  const role = { cert, key };
  return {
    "require-encryption": true,
    tls: {
      "ca-file": path.posix.join(dir, TLS_FILES.ca),
      scheduler: role,
      worker: role,
      client: role,
    },
  };
}

/**
 * Writes the material into `dir` (created, mode 0700): the key file is 0600, readable only by
 * this user, like a Secret volume file readable only by the pod's group.
 */
export function writeTlsFiles(dir: string, material: TlsMaterial): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, TLS_FILES.ca), material.caCert, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, TLS_FILES.cert), material.cert, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, TLS_FILES.key), material.key, { mode: 0o600 });
}
