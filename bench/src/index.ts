/**
 * vblk-bench as a library: run jobs programmatically (runBench), format
 * reports, compare with fio, sweep. The CLI is cli.ts.
 */

export { main } from "./cli.js";
export * from "./compare.js";
export * from "./crc32c.js";
export * from "./image.js";
export * from "./job-types.js";
export * from "./options.js";
export * from "./prng.js";
export * from "./progress.js";
export * from "./report.js";
export * from "./runner.js";
export * from "./stats.js";
export * from "./svg.js";
export * from "./sweep.js";
export * from "./units.js";
export * from "./verify.js";
