import { defineConfig } from "vitest/config";

/** The image tests (test/images/run.sh): real builds, real containers; not part of `npm test`. */
export default defineConfig({
  test: {
    include: ["test/images/**/*.e2e.ts"],
    pool: "forks",
    // One file, its tests one after another: each starts a container with runc.
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
