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
