// A hand-written vhost-user front-end (what QEMU does), for the tests: it
// connects with the addon's socket calls, shares memfd guest memory through
// SET_MEM_TABLE, lays split rings out in it, and plays the guest's driver with
// DriverQueue / BlkDriver from @vblk/core. Not a test file itself.
import {
  allocGuestMemory,
  closeFd,
  eventfd,
  eventfdRead,
  eventfdWrite,
  unixConnect,
} from "@vblk/backend-libaio";
import {
  BlkDriver,
  DriverQueue,
  GuestMemory,
  layoutSplitRing,
  type RingAddresses,
  VirtioFeature,
} from "@vblk/core";
import {
  encodeMemTable,
  encodeU64,
  encodeVringAddr,
  encodeVringState,
  Flag,
  type MemRegionDesc,
  Request,
  requestName,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VhostUserChannel,
  type VhostUserMessage,
} from "../dist/index.js";

export const MiB = 1024 * 1024;

export class TestFrontend {
  readonly channel: VhostUserChannel;
  readonly closed: Promise<Error | undefined>;
  private replies: VhostUserMessage[] = [];
  private waiters: ((m: VhostUserMessage | null) => void)[] = [];
  private isClosed = false;

  private constructor(fd: number) {
    let done!: (e: Error | undefined) => void;
    this.closed = new Promise((r) => {
      done = r;
    });
    this.channel = new VhostUserChannel(
      fd,
      {
        onMessage: (m) => {
          const w = this.waiters.shift();
          if (w) w(m);
          else this.replies.push(m);
        },
        onClose: (e) => {
          this.isClosed = true;
          for (const w of this.waiters.splice(0)) w(null);
          done(e);
        },
      },
      { expectReplies: true },
    );
  }

  static connect(path: string): TestFrontend {
    return new TestFrontend(unixConnect(path));
  }

  get closedByPeer(): boolean {
    return this.isClosed;
  }

  send(request: number, payload?: Uint8Array, fds?: number[], flags: number = Flag.VERSION): void {
    this.channel.send(request, flags, payload, fds);
  }

  /** The next message from the back-end (a reply), or null when the connection closed. */
  next(timeoutMs = 10_000): Promise<VhostUserMessage | null> {
    const m = this.replies.shift();
    if (m) return Promise.resolve(m);
    if (this.isClosed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const w = (x: VhostUserMessage | null) => {
        clearTimeout(t);
        resolve(x);
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Send and wait for the reply of the same request. */
  async call(request: number, payload?: Uint8Array, fds?: number[]): Promise<VhostUserMessage> {
    this.send(request, payload, fds);
    const r = await this.next();
    if (r === null) throw new Error(`${requestName(request)}: connection closed instead of a reply`);
    if (r.request !== request)
      throw new Error(`${requestName(request)}: got a reply to ${requestName(r.request)}`);
    if ((r.flags & Flag.REPLY) === 0) throw new Error("reply without the reply flag");
    return r;
  }

  async callU64(request: number, payload?: Uint8Array): Promise<bigint> {
    const r = await this.call(request, payload);
    return new DataView(r.payload.buffer, r.payload.byteOffset).getBigUint64(0, true);
  }

  /** Send with need_reply (REPLY_ACK) and return the ack status (0 = ok). */
  async ack(request: number, payload?: Uint8Array, fds?: number[]): Promise<bigint> {
    this.send(request, payload, fds, Flag.VERSION | Flag.NEED_REPLY);
    const r = await this.next();
    if (r === null) throw new Error(`${requestName(request)}: connection closed instead of an ack`);
    if (r.request !== request) throw new Error(`${requestName(request)}: ack for ${requestName(r.request)}`);
    return new DataView(r.payload.buffer, r.payload.byteOffset).getBigUint64(0, true);
  }

  close(): void {
    this.channel.close();
  }
}

/** Guest RAM shared through one memfd, split into two regions (a hole between, a non-zero mmap offset). */
export interface SharedGuestRam {
  fd: number;
  buffer: SharedArrayBuffer;
  mem: GuestMemory;
  regions: MemRegionDesc[];
  /** front-end "user address" of a GPA (what SET_VRING_ADDR carries) */
  ua(gpa: number): bigint;
  close(): void;
}

export const REGION_B_GPA = 0x1000_0000;
const UA_A = 0x7f00_0000_0000n;
const UA_B = 0x7f10_0000_0000n;

export function sharedGuestRam(sizeMiB = 16): SharedGuestRam {
  const size = sizeMiB * MiB;
  const { buffer, fd } = allocGuestMemory(size, "vblk-test-frontend");
  const aSize = 1 * MiB;
  const bSize = size - aSize;
  const mem = new GuestMemory([
    { gpa: 0, size: aSize, buffer, byteOffset: 0 },
    { gpa: REGION_B_GPA, size: bSize, buffer, byteOffset: aSize },
  ]);
  const regions: MemRegionDesc[] = [
    { guestPhysAddr: 0n, size: BigInt(aSize), userAddr: UA_A, mmapOffset: 0n },
    { guestPhysAddr: BigInt(REGION_B_GPA), size: BigInt(bSize), userAddr: UA_B, mmapOffset: BigInt(aSize) },
  ];
  return {
    fd,
    buffer,
    mem,
    regions,
    ua(gpa) {
      if (gpa >= REGION_B_GPA) return UA_B + BigInt(gpa - REGION_B_GPA);
      return UA_A + BigInt(gpa);
    },
    close() {
      closeFd(fd);
    },
  };
}

export interface TestQueue {
  index: number;
  size: number;
  ring: RingAddresses;
  q: DriverQueue;
  blk: BlkDriver;
  kickFd: number;
  callFd: number;
  /** GPA of this queue's data area (64 KiB). */
  data: number;
  kick(): void;
  /** Wait until `n` completions were popped; returns their statuses by head order of popping. */
  complete(n: number, timeoutMs?: number): Promise<{ head: number; status: number; len: number }[]>;
}

const FEATURES_PROTOCOL = 1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES);

export interface SetupOptions {
  numQueues: number;
  queueSize?: number;
  /** Accept everything offered (default) or these features. */
  features?: bigint;
  /** Skip SET_VRING_ENABLE (tests the "no enable" paths). */
  enable?: boolean;
  /** Protocol features to ask for (default: all offered). */
  protocolFeatures?: bigint;
}

/**
 * The QEMU start sequence: features, protocol features, owner, memory table,
 * then per ring NUM/BASE/ADDR/KICK/CALL and ENABLE.
 */
export async function setupQueues(
  fe: TestFrontend,
  ram: SharedGuestRam,
  o: SetupOptions,
): Promise<{ features: bigint; queues: TestQueue[] }> {
  const size = o.queueSize ?? 128;
  const offered = await fe.callU64(Request.GET_FEATURES);
  const protocol = await fe.callU64(Request.GET_PROTOCOL_FEATURES);
  fe.send(Request.SET_PROTOCOL_FEATURES, encodeU64(o.protocolFeatures ?? protocol));
  fe.send(Request.SET_OWNER);
  const features = (o.features ?? offered & ~FEATURES_PROTOCOL) | FEATURES_PROTOCOL;
  fe.send(Request.SET_FEATURES, encodeU64(features));
  expectZero(
    await fe.ack(
      Request.SET_MEM_TABLE,
      encodeMemTable(ram.regions),
      ram.regions.map(() => ram.fd),
    ),
  );
  const eventIdx = (features & (1n << BigInt(VirtioFeature.RING_EVENT_IDX))) !== 0n;
  const queues: TestQueue[] = [];
  for (let i = 0; i < o.numQueues; i++) {
    // per queue, in region B: ring | scratch | data (64 KiB)
    const base = REGION_B_GPA + i * 0x4_0000;
    const ring = layoutSplitRing(size, base);
    const scratch = ring.end;
    const data = scratch + BlkDriver.scratchBytes(size);
    const q = new DriverQueue(ram.mem, { ...ring, eventIdx });
    const blk = new BlkDriver(q, ram.mem, scratch);
    const kickFd = eventfd(0, true);
    const callFd = eventfd(0, true);
    const tq = makeTestQueue(i, ring, q, blk, kickFd, callFd, data);
    sendRing(fe, ram, tq, 0);
    fe.send(Request.SET_VRING_CALL, encodeU64(i), [callFd]);
    queues.push(tq);
  }
  if (o.enable ?? true)
    for (let i = 0; i < o.numQueues; i++)
      fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: i, num: 1 }));
  return { features: features & ~FEATURES_PROTOCOL, queues };
}

/** QEMU's per-ring start messages: NUM, BASE, ADDR (user addresses), KICK. */
export function sendRing(fe: TestFrontend, ram: SharedGuestRam, q: TestQueue, base: number): void {
  fe.send(Request.SET_VRING_NUM, encodeVringState({ index: q.index, num: q.size }));
  fe.send(Request.SET_VRING_BASE, encodeVringState({ index: q.index, num: base }));
  fe.send(
    Request.SET_VRING_ADDR,
    encodeVringAddr({
      index: q.index,
      flags: 0,
      desc: ram.ua(q.ring.descAddr),
      used: ram.ua(q.ring.usedAddr),
      avail: ram.ua(q.ring.availAddr),
      log: 0n,
    }),
  );
  fe.send(Request.SET_VRING_KICK, encodeU64(q.index), [q.kickFd]);
}

export function makeTestQueue(
  index: number,
  ring: RingAddresses,
  q: DriverQueue,
  blk: BlkDriver,
  kickFd: number,
  callFd: number,
  data: number,
): TestQueue {
  return {
    index,
    size: ring.size,
    ring: { size: ring.size, descAddr: ring.descAddr, availAddr: ring.availAddr, usedAddr: ring.usedAddr },
    q,
    blk,
    kickFd,
    callFd,
    data,
    kick() {
      q.publish();
      if (q.kickNeeded()) eventfdWrite(kickFd, 1);
    },
    async complete(n, timeoutMs = 15_000) {
      const out: { head: number; status: number; len: number }[] = [];
      const t0 = Date.now();
      while (out.length < n) {
        const head = blk.popCompletion();
        if (head >= 0) {
          out.push({ head, status: blk.lastStatus, len: blk.lastLen });
          continue;
        }
        if (Date.now() - t0 > timeoutMs)
          throw new Error(`queue ${index}: ${out.length}/${n} completions after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 1));
      }
      return out;
    },
  };
}

export function expectZero(v: bigint): void {
  if (v !== 0n) throw new Error(`REPLY_ACK status ${v}, expected 0`);
}

export function closeQueueFds(queues: TestQueue[]): void {
  for (const q of queues) {
    closeFd(q.kickFd);
    closeFd(q.callFd);
  }
}

/** Read the call eventfd's counter (0 when no interrupt was signalled). */
export function interrupts(q: TestQueue): number {
  return eventfdRead(q.callFd);
}

export async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
