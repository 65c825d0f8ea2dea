/**
 * Image names on `target: azure`: the workspace's images live in the stack's own registry.
 * Pure functions; the program applies them to the registry's login server (an Output).
 */

/**
 * Whether an image reference names its registry: by Docker's rule, the part before the first `/`
 * is a registry host when it contains `.` or `:` or is `localhost` (`ghcr.io/x/y:1`,
 * `myacr.azurecr.io/y`, `localhost:5000/y`); otherwise the reference is relative
 * (`dask-workspace/dask:0.1.0`, `python:3.11`).
 */
export function hasRegistryHost(image: string): boolean {
  const slash = image.indexOf("/");
  if (slash < 0) return false;
  const first = image.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost";
}

/**
 * `dask-workspace/dask:0.1.0` → `<loginServer>/dask-workspace/dask:0.1.0`; an image that already
 * names a registry is left alone. So the defaults (and any registry-less name) resolve against
 * the stack's registry, where `npm run images:build` pushes them, while `ghcr.io/...` or
 * `docker.io/...` still mean what they say. On `target: azure` a Docker Hub image must therefore
 * be written with its host (`docker.io/library/python:3.11`).
 */
export function qualifyImage(image: string, loginServer: string): string {
  return hasRegistryHost(image) ? image : `${loginServer.replace(/\/+$/, "")}/${image}`;
}
