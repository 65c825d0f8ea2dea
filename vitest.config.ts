import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Pulumi's mock runtime is process-global state: each test file gets its own fork.
    pool: "forks",
    // At least two files at once, even on two cores: most test time is spent waiting on real
    // Dask processes, installs and clones. Local workspaces do not collide when they run in
    // parallel: each has its own cgroup, temp dir and scheduler ports (LocalWorkspace.start).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
