import { defineConfig } from "vitest/config";

// Real-guest tests: one guest at a time (2 shared cores), long timeouts (TCG).
export default defineConfig({
  test: {
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/guest/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", "test/guest/cache/**"],
    testTimeout: 300_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    pool: "forks",
    poolOptions: { forks: { singleFork: true } },
  },
});
