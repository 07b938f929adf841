// Types for fuzz-core.mjs and fuzz-device.mjs (plain .mjs shared with scripts/fuzz.mjs).
import type fc from "fast-check";

export type Outcomes = Record<string, number>;
export interface GuardedMemory {
  buffer: SharedArrayBuffer;
  bytes: Uint8Array;
  reset(): void;
  firstBadGuard(): number;
}
export interface GuardedDisk {
  buffer: SharedArrayBuffer;
  bytes: Uint8Array;
  cap: number;
  reset(seed: number): void;
  firstBadGuard(): number;
}
export type Stream = unknown;
export type Geometry = unknown;
export declare const streamArb: fc.Arbitrary<Stream>;
export declare const geometryArb: fc.Arbitrary<Geometry>;
export declare function guardedMemory(): GuardedMemory;
export declare function guardedDisk(sectors?: number): GuardedDisk;
export declare function runStepCase(
  g: GuardedMemory,
  d: GuardedDisk,
  s: Stream,
): { outcome: string; popped: number; verified: number; n: number; k: number };
export declare function runGeometryCase(g: GuardedMemory, d: GuardedDisk, c: Geometry): { outcome: string };
export declare function tally(map: Outcomes, key: string): void;
