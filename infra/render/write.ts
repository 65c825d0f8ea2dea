/**
 * Writes render output all-or-nothing: everything goes to a temporary directory beside the
 * output first, and only a complete render replaces `<out>/kubernetes` and `<out>/azure`.
 * Nothing else in `<out>` is touched, so `--out .` cannot delete a user's files.
 */
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { RenderedFile } from "./manifests.js";

/** The subdirectories a render owns inside the output directory. */
export const RENDER_SUBDIRS = ["kubernetes", "azure"] as const;

export async function writeRenderOutput(outDir: string, files: RenderedFile[]): Promise<void> {
  const out = resolve(outDir);
  const parent = dirname(out);
  await mkdir(parent, { recursive: true });
  // Same parent directory, so the final renames stay on one filesystem.
  const staging = await mkdtemp(join(parent, `.${basename(out)}.render-`));
  try {
    for (const sub of RENDER_SUBDIRS) {
      await mkdir(join(staging, sub), { recursive: true });
    }
    for (const file of files) {
      const target = resolve(staging, file.path);
      if (!RENDER_SUBDIRS.some((sub) => target.startsWith(join(staging, sub) + "/"))) {
        throw new Error(`render file ${file.path} is outside ${RENDER_SUBDIRS.join("/ and ")}/`);
      }
      await writeFile(target, file.content, { flag: "wx" });
    }
    await mkdir(out, { recursive: true });
    for (const sub of RENDER_SUBDIRS) {
      await rm(join(out, sub), { recursive: true, force: true });
      await rename(join(staging, sub), join(out, sub));
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
