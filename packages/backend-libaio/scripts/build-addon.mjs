// Builds the native addon with node-gyp. Never fails the install: when the
// addon cannot be built, @vblk/backend-libaio reports the native engines as
// unavailable and the pure-JS `threads` engine serves.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
if (process.env.VBLK_SKIP_ADDON === "1") {
  console.warn("[vblk] VBLK_SKIP_ADDON=1: native addon not built; the threads engine will serve");
  process.exit(0);
}
if (!existsSync(join(here, "binding.gyp"))) process.exit(0);
let gyp;
try {
  gyp = createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js");
} catch {
  console.warn("[vblk] node-gyp not found: native addon not built; the threads engine will serve");
  process.exit(0);
}
const r = spawnSync(process.execPath, [gyp, "rebuild"], { cwd: here, stdio: "inherit" });
if (r.status !== 0) {
  console.warn(
    `[vblk] native addon build failed (exit ${r.status}); io_uring/libaio engines unavailable, threads engine will serve`,
  );
}
process.exit(0);
