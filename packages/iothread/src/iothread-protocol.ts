/**
 * What the main thread and an IOThread say to each other: the shared control
 * block, the worker's init data, and the start/stop messages.
 */
import type { BlkParams, GuestRegionInit } from "@vblk/core";
import type { EngineSpecResolved } from "./engine-spec.js";
import type { PolicyStart } from "./error-policy.js";
import type { NotifierDesc } from "./notifier.js";

export const Cmd = { IDLE: 0, RUN: 1, STOP: 2, /** tests: make the loop throw */ FAULT: 3 } as const;
export const State = { IDLE: 0, RUNNING: 1, BROKEN: 2, EXITING: 3 } as const;
/** Int32 words of the control block. */
export const CTL_CMD = 0;
export const CTL_STATE = 1;
export const CTL_WORDS = 4;

export interface IoThreadInit {
  index: number;
  name: string;
  memory: GuestRegionInit[];
  engine: EngineSpecResolved;
  control: SharedArrayBuffer;
  counters: SharedArrayBuffer;
  /** How the IOThread sleeps: on this doorbell, or in epoll on wakeFd. */
  wake: { kind: "doorbell"; buffer: SharedArrayBuffer; index: number } | { kind: "eventfd"; fd: number };
  pollMaxNs: number;
  pollGrow: number;
  pollShrink: number;
  /** Keep polling while native I/O is in flight (else sleep in epoll until it completes or a kick). */
  pollEngine: boolean;
  /** io_uring engines: sleep in io_uring_enter with the eventfds watched in the ring (else epoll). */
  sleepInEngine: boolean;
  cpus?: number[];
}

export interface QueueStart {
  index: number;
  /** Position of this queue in the IOThread's mapped queue list (its counter block). */
  slot: number;
  size: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  lastAvailIdx?: number;
  usedIdx?: number;
  call: NotifierDesc;
  /** An extra eventfd that kicks this queue (vhost-user); waited on in epoll. */
  kickFd?: number;
}

export interface StartMessage {
  type: "start";
  queues: QueueStart[];
  eventIdx: boolean;
  indirect: boolean;
  blk: BlkParams;
  /** Replace guest memory before starting (vhost-user SET_MEM_TABLE). */
  memory?: GuestRegionInit[];
  /** rerror/werror, requestTimeoutMs and the device's shared stop state (error-policy.ts). Default: werror=enospc, rerror=report, no timeout. */
  policy?: PolicyStart;
}

export type FromIoThread =
  | { type: "ready"; engine: string }
  | { type: "started" }
  | { type: "stopped"; queues: { index: number; nextAvail: number; nextUsed: number }[]; cancelled: number }
  | { type: "needs-reset"; queue: number; code: string; message: string }
  | { type: "fatal"; message: string }
  | { type: "closed" };
