/**
 * Engine names a user may ask for, QEMU style (`aio=`), and the resolved
 * spec an IOThread builds its engine from.
 *
 *   null      every request succeeds at once, no data moves (fio's null)
 *   memory    the disk is a SharedArrayBuffer
 *   threads   pure JS: a pool of I/O worker threads doing pread/pwrite
 *   io_uring  native addon, io_uring
 *   native    native addon, Linux AIO (QEMU calls libaio "native"); alias libaio
 *   auto      io_uring if it works here, else libaio, else threads
 */
import type { EngineSpec } from "@vblk/core";

export const ENGINE_NAMES = ["null", "memory", "threads", "io_uring", "native", "libaio", "auto"] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

export type EngineSpecResolved = EngineSpec;

export function assertEngineName(name: string, option = "engine"): asserts name is EngineName {
  if (!(ENGINE_NAMES as readonly string[]).includes(name))
    throw new Error(`${option}: unknown engine "${name}"; allowed: ${ENGINE_NAMES.join(", ")}`);
}
