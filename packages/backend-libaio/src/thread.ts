import { requireNative } from "./native.js";

/**
 * Pin the calling thread to these CPUs. Uses sched_setaffinity(0, ...), which
 * acts on the calling thread only, so it pins a worker_thread when called
 * inside it.
 */
export function setThreadAffinity(cpus: number[]): void {
  requireNative("setThreadAffinity").setThreadAffinity(cpus);
}

/** CPUs the calling thread may run on. */
export function getThreadAffinity(): number[] {
  return requireNative("getThreadAffinity").getThreadAffinity();
}

/** Kernel thread id of the calling thread (differs per worker_thread). */
export function gettid(): number {
  return requireNative("gettid").gettid();
}

/**
 * sched_yield(2) for the calling thread: lets any runnable task on this CPU
 * (a kworker completing block I/O, say) run now. For spinning threads.
 */
export function schedYield(): void {
  requireNative("schedYield").schedYield();
}

/**
 * Spin with the CPU's PAUSE instruction until `u16[index] !== value` or `ns`
 * nanoseconds pass; true when it changed. For a thread waiting for another
 * thread's store to shared memory (a driver waiting for used.idx).
 */
export function spinWait16(u16: Uint16Array, index: number, value: number, ns: number): boolean {
  return requireNative("spinWait16").spinWait16(u16, index, value, ns);
}
