/**
 * Counters an IOThread keeps while it works, readable from any thread at
 * any time (plain Float64 stores by the one writer; readers may see a value
 * one update old, never a torn one on x86-64).
 *
 *   Float64Array per IOThread:
 *   [0 .. IOTHREAD_FIELDS)                   IOThread counters
 *   [IOTHREAD_FIELDS + q*QUEUE_FIELDS ...]   one block per owned queue, in
 *                                            the order of its queue list
 */
export const IoThreadCounter = {
  loops: 0,
  wakeups: 1,
  pollHits: 2,
  pollMisses: 3,
  busyNs: 4,
  idleNs: 5,
  submits: 6,
  reaped: 7,
  pollNs: 8,
  errors: 9,
} as const;
export const IOTHREAD_FIELDS = 12;

export const QueueCounter = {
  requests: 0,
  reads: 1,
  writes: 2,
  flushes: 3,
  others: 4,
  bytesRead: 5,
  bytesWritten: 6,
  batches: 7,
  interrupts: 8,
  errors: 9,
  kicks: 10,
  maxBatch: 11,
} as const;
export const QUEUE_FIELDS = 12;

export interface QueueCounters {
  queue: number;
  iothread: string;
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  others: number;
  bytesRead: number;
  bytesWritten: number;
  batches: number;
  interrupts: number;
  errors: number;
  kicks: number;
  maxBatch: number;
}

export interface IoThreadCounters {
  name: string;
  queues: number[];
  loops: number;
  wakeups: number;
  pollHits: number;
  pollMisses: number;
  busyNs: number;
  idleNs: number;
  submits: number;
  reaped: number;
  /** Current adaptive poll window. */
  pollNs: number;
  errors: number;
}

export function counterBuffer(numQueues: number): SharedArrayBuffer {
  return new SharedArrayBuffer((IOTHREAD_FIELDS + numQueues * QUEUE_FIELDS) * 8);
}

export function readIoThreadCounters(
  name: string,
  queues: number[],
  buf: SharedArrayBuffer,
): IoThreadCounters {
  const f = new Float64Array(buf);
  const out: IoThreadCounters = { name, queues: [...queues] } as IoThreadCounters;
  for (const [k, i] of Object.entries(IoThreadCounter)) (out as unknown as Record<string, number>)[k] = f[i]!;
  return out;
}

export function readQueueCounters(
  iothread: string,
  queues: number[],
  buf: SharedArrayBuffer,
): QueueCounters[] {
  const f = new Float64Array(buf);
  return queues.map((queue, j) => {
    const base = IOTHREAD_FIELDS + j * QUEUE_FIELDS;
    const out = { queue, iothread } as QueueCounters;
    for (const [k, i] of Object.entries(QueueCounter))
      (out as unknown as Record<string, number>)[k] = f[base + i]!;
    return out;
  });
}
