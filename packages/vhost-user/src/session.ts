/**
 * One vhost-user front-end connection driving a {@link VirtioBlkDevice}.
 *
 *   front-end (QEMU)                 session                          device
 *   GET/SET_FEATURES, PROTOCOL_*  -> feature state
 *   SET_MEM_TABLE (fds)           -> MemoryTable (mmap, GPA-keyed)  -> setMemory() at next start
 *   SET_VRING_NUM/ADDR/BASE       -> ring state (ADDR in user addresses, translated at start)
 *   SET_VRING_KICK/CALL (fds)     -> ring eventfds
 *   SET_VRING_ENABLE 1            -> every configured ring ready?   -> startQueues(features, rings)
 *   GET_VRING_BASE                -> stop all queues (in-flight done), answer each ring's next avail
 *   anything changing a running ring: stop, apply, start again from the cached positions
 *
 * Messages are handled one at a time, in order (handlers are async: starting
 * and stopping IOThreads takes a round trip). Starting is deferred until no
 * message is waiting, so a burst of ring setup (QEMU sends each ring's
 * NUM/BASE/ADDR/KICK, then the CALLs, then the ENABLEs) starts the device once.
 *
 * Errors: a malformed or unsupported message (VhostUserProtocolError) closes
 * the connection; a well-formed request that cannot be honoured
 * (RequestFailed) is answered with a non-zero REPLY_ACK when asked for, and
 * logged. Either way the server survives and waits for the next connection.
 */
import { EventEmitter } from "node:events";
import { availRingBytes, descTableBytes, isValidQueueSize, usedRingBytes } from "@vblk/core";
import type { QueueActivation, VirtioBlkDevice } from "@vblk/iothread";
import { safeClose, VhostUserChannel } from "./channel.js";
import { MemoryTable } from "./memory-table.js";
import {
  ConfigFlag,
  decodeConfig,
  decodeMemTable,
  decodeU64,
  decodeVringAddr,
  decodeVringState,
  encodeConfig,
  encodeU64,
  encodeVringState,
  Flag,
  MAX_MEM_REGIONS,
  OFFERED_PROTOCOL_FEATURES,
  ProtocolFeature,
  Request,
  requestName,
  VHOST_USER_F_PROTOCOL_FEATURES,
  type VhostUserMessage,
  VhostUserProtocolError,
  VRING_IDX_MASK,
  VRING_NOFD_MASK,
  type VringAddr,
} from "./protocol.js";

/** A well-formed request we refuse: REPLY_ACK gets a non-zero status, the connection stays. */
export class RequestFailed extends Error {
  override readonly name = "RequestFailed";
}

const PROTOCOL_FEATURES_BIT = 1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES);
/** writeback (virtio_blk_config.wce), the one writable config field. */
const CONFIG_WCE_OFFSET = 0x20;

interface Ring {
  num: number | null;
  /** null: not configured since the last stop (GET_VRING_BASE), so not part of the next start. */
  addr: VringAddr | null;
  /** Next avail index to process (SET_VRING_BASE, or where the last stop left it). */
  base: number;
  kickFd: number | null;
  callFd: number | null;
  errFd: number | null;
  enabled: boolean;
}

function newRing(): Ring {
  return { num: null, addr: null, base: 0, kickFd: null, callFd: null, errFd: null, enabled: false };
}

export interface SessionOptions {
  device: VirtioBlkDevice;
  log: (msg: string) => void;
  /** Log every message. */
  debug?: boolean;
  /** Connection number (for log lines). */
  id?: number;
}

export interface SessionStats {
  messages: number;
  starts: number;
  stops: number;
}

/**
 * Events: "started" (queue indices), "stopped", "close" (error | undefined)
 * after every fd is closed and the device is reset.
 */
export class VhostUserBlkSession extends EventEmitter {
  readonly id: number;
  readonly stats: SessionStats = { messages: 0, starts: 0, stops: 0 };
  /** Resolves once the connection is gone and cleaned up (never rejects). */
  readonly closed: Promise<Error | undefined>;
  private readonly device: VirtioBlkDevice;
  private readonly log: (msg: string) => void;
  private readonly debug: boolean;
  private readonly channel: VhostUserChannel;
  private readonly rings: Ring[];
  private readonly pending: VhostUserMessage[] = [];
  private pumping = false;
  private features: bigint | null = null;
  private protocolFeaturesAcked = false;
  private protocolFeatures = 0n;
  private memory: MemoryTable | null = null;
  private memoryDirty = false;
  private running: number[] | null = null;
  private ending = false;
  private endError: Error | undefined;
  private resolveClosed!: (e: Error | undefined) => void;

  constructor(fd: number, opts: SessionOptions) {
    super();
    this.id = opts.id ?? 0;
    this.device = opts.device;
    this.log = opts.log;
    this.debug = opts.debug ?? false;
    this.rings = Array.from({ length: this.device.numQueues }, newRing);
    this.closed = new Promise((r) => {
      this.resolveClosed = r;
    });
    this.channel = new VhostUserChannel(fd, {
      onMessage: (m) => this.onMessage(m),
      onClose: (e) => this.onChannelClose(e),
    });
  }

  /** Queue indices being served right now (null when stopped). */
  get runningQueues(): readonly number[] | null {
    return this.running;
  }

  get negotiatedFeatures(): bigint | null {
    return this.features;
  }

  get memoryTable(): MemoryTable | null {
    return this.memory;
  }

  /** Close the connection (the front-end sees EOF); resolves when cleaned up. */
  end(): Promise<Error | undefined> {
    this.channel.close();
    return this.closed;
  }

  private onMessage(m: VhostUserMessage): void {
    if (this.ending) {
      for (const fd of m.fds) safeClose(fd);
      return;
    }
    this.pending.push(m);
    if (!this.pumping) void this.pump();
  }

  private onChannelClose(e: Error | undefined): void {
    if (this.ending) return;
    this.ending = true;
    this.endError ??= e;
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.ending) {
        const m = this.pending.shift();
        if (m === undefined) break;
        this.stats.messages++;
        try {
          await this.handle(m);
          // Start (or restart) once the burst of configuration messages is over.
          if (this.pending.length === 0 && !this.ending) await this.reconcile();
        } catch (e) {
          const err = e instanceof Error ? e : new Error(String(e));
          if (err instanceof RequestFailed) {
            this.log(`connection ${this.id}: ${requestName(m.request)} refused: ${err.message}`);
            this.ackIfAsked(m, false);
          } else {
            this.log(
              `connection ${this.id}: closing: ${err instanceof VhostUserProtocolError ? "protocol error" : "error"} in ${requestName(m.request)}: ${err.message}`,
            );
            this.endError = err;
            this.channel.close();
          }
        }
      }
      if (this.ending) await this.cleanup();
    } finally {
      this.pumping = false;
    }
  }

  private async cleanup(): Promise<void> {
    for (const m of this.pending.splice(0)) for (const fd of m.fds) safeClose(fd);
    try {
      await this.stop();
    } catch (e) {
      this.log(`connection ${this.id}: stopping the queues failed: ${(e as Error).message}`);
    }
    for (const r of this.rings) this.closeRingFds(r);
    this.memory = null;
    this.features = null;
    try {
      await this.device.reset();
    } catch (e) {
      this.log(`connection ${this.id}: device reset failed: ${(e as Error).message}`);
    }
    this.resolveClosed(this.endError);
    this.emit("close", this.endError);
  }

  private closeRingFds(r: Ring): void {
    safeClose(r.kickFd);
    safeClose(r.callFd);
    safeClose(r.errFd);
    r.kickFd = r.callFd = r.errFd = null;
  }

  // ---- replies -------------------------------------------------------------

  private reply(m: VhostUserMessage, payload: Uint8Array): void {
    this.channel.send(m.request, Flag.VERSION | Flag.REPLY, payload);
  }

  private hasProtocolFeature(bit: number): boolean {
    return (this.protocolFeatures & (1n << BigInt(bit))) !== 0n;
  }

  /** REPLY_ACK: the front-end set need_reply on a request that has no reply of its own. */
  private ackIfAsked(m: VhostUserMessage, ok: boolean): void {
    if ((m.flags & Flag.NEED_REPLY) === 0 || !this.hasProtocolFeature(ProtocolFeature.REPLY_ACK)) return;
    if (HAS_REPLY.has(m.request)) return;
    if (this.channel.isClosed) return;
    this.reply(m, encodeU64(ok ? 0 : 1));
  }

  // ---- message checks ------------------------------------------------------

  private noPayload(m: VhostUserMessage): void {
    // QEMU sends these with size 0; a u64 0 (some front-ends) is tolerated.
    if (m.payload.byteLength !== 0 && m.payload.byteLength !== 8)
      throw new VhostUserProtocolError(
        `${requestName(m.request)}: unexpected payload of ${m.payload.byteLength} bytes`,
      );
  }

  private fdCount(m: VhostUserMessage, n: number): void {
    if (m.fds.length !== n)
      throw new VhostUserProtocolError(
        `${requestName(m.request)}: ${m.fds.length} fd(s) attached, expected ${n}`,
      );
  }

  private ring(m: VhostUserMessage, index: number): Ring {
    const r = this.rings[index];
    if (r === undefined)
      throw new VhostUserProtocolError(
        `${requestName(m.request)}: ring ${index} out of range (the device has ${this.rings.length})`,
      );
    return r;
  }

  // ---- the messages --------------------------------------------------------

  private async handle(m: VhostUserMessage): Promise<void> {
    if (this.debug) this.log(`connection ${this.id}: <- ${describe(m)}`);
    // Any fd not taken over by a handler is closed, whatever happens.
    const fds = m.fds;
    let kept: number[] = [];
    try {
      kept = await this.dispatch(m);
    } finally {
      for (const fd of fds) if (!kept.includes(fd)) safeClose(fd);
    }
    this.ackIfAsked(m, true);
  }

  /** Handle one message; returns the fds it keeps. */
  private async dispatch(m: VhostUserMessage): Promise<number[]> {
    const R = Request;
    switch (m.request) {
      case R.GET_FEATURES: {
        this.noPayload(m);
        this.fdCount(m, 0);
        this.reply(m, encodeU64(this.device.deviceFeatures | PROTOCOL_FEATURES_BIT));
        return [];
      }
      case R.SET_FEATURES: {
        this.fdCount(m, 0);
        const v = decodeU64(m.request, m.payload);
        const f = v & ~PROTOCOL_FEATURES_BIT;
        const unknown = f & ~this.device.deviceFeatures;
        if (unknown !== 0n) throw new RequestFailed(`features 0x${unknown.toString(16)} were not offered`);
        if (this.running !== null && f !== this.features) await this.stop();
        const err = this.device.negotiate(f);
        if (err !== undefined) throw new RequestFailed(err);
        this.features = f;
        this.protocolFeaturesAcked = (v & PROTOCOL_FEATURES_BIT) !== 0n;
        return [];
      }
      case R.GET_PROTOCOL_FEATURES: {
        this.noPayload(m);
        this.fdCount(m, 0);
        this.reply(m, encodeU64(OFFERED_PROTOCOL_FEATURES));
        return [];
      }
      case R.SET_PROTOCOL_FEATURES: {
        this.fdCount(m, 0);
        const v = decodeU64(m.request, m.payload);
        const unknown = v & ~OFFERED_PROTOCOL_FEATURES;
        if (unknown !== 0n)
          throw new VhostUserProtocolError(`protocol features 0x${unknown.toString(16)} were not offered`);
        this.protocolFeatures = v;
        return [];
      }
      case R.SET_OWNER: {
        this.noPayload(m);
        this.fdCount(m, 0);
        return [];
      }
      case R.RESET_OWNER: {
        // Deprecated; the spec recommends "disable all rings".
        this.noPayload(m);
        this.fdCount(m, 0);
        await this.stop();
        for (const r of this.rings) r.enabled = false;
        return [];
      }
      case R.RESET_DEVICE: {
        this.noPayload(m);
        this.fdCount(m, 0);
        await this.stop();
        for (let i = 0; i < this.rings.length; i++) {
          this.closeRingFds(this.rings[i]!);
          this.rings[i] = newRing();
        }
        this.features = null;
        this.protocolFeaturesAcked = false;
        this.device.config.reset();
        return [];
      }
      case R.GET_QUEUE_NUM: {
        this.noPayload(m);
        this.fdCount(m, 0);
        this.reply(m, encodeU64(this.device.numQueues));
        return [];
      }
      case R.GET_MAX_MEM_SLOTS: {
        this.noPayload(m);
        this.fdCount(m, 0);
        this.reply(m, encodeU64(MAX_MEM_REGIONS));
        return [];
      }
      case R.SET_MEM_TABLE: {
        const descs = decodeMemTable(m.request, m.payload);
        this.fdCount(m, descs.length);
        const table = MemoryTable.map(descs, m.fds);
        // Memory changes under running rings: stop, swap, start again (reconcile).
        await this.stop();
        this.memory = table;
        this.memoryDirty = true;
        this.log(`connection ${this.id}: memory table: ${table.describe()}`);
        return [];
      }
      case R.SET_VRING_NUM: {
        this.fdCount(m, 0);
        const s = decodeVringState(m.request, m.payload);
        const r = this.ring(m, s.index);
        if (!isValidQueueSize(s.num) || s.num > this.device.queueMaxSize)
          throw new VhostUserProtocolError(
            `ring ${s.index}: size ${s.num} is not a power of two <= ${this.device.queueMaxSize} (--queue-size)`,
          );
        await this.stopIfRunning(s.index);
        r.num = s.num;
        return [];
      }
      case R.SET_VRING_ADDR: {
        this.fdCount(m, 0);
        const a = decodeVringAddr(m.request, m.payload);
        const r = this.ring(m, a.index);
        await this.stopIfRunning(a.index);
        r.addr = a;
        return [];
      }
      case R.SET_VRING_BASE: {
        this.fdCount(m, 0);
        const s = decodeVringState(m.request, m.payload);
        const r = this.ring(m, s.index);
        if (s.num > 0xffff)
          throw new VhostUserProtocolError(
            `ring ${s.index}: base ${s.num} does not fit a split ring's 16-bit index`,
          );
        await this.stopIfRunning(s.index);
        r.base = s.num;
        return [];
      }
      case R.GET_VRING_BASE: {
        this.fdCount(m, 0);
        const s = decodeVringState(m.request, m.payload);
        const r = this.ring(m, s.index);
        // Our device stops every queue at once: the first GET_VRING_BASE stops
        // them all and caches each ring's position; the others read the cache.
        await this.stop();
        r.addr = null;
        this.reply(m, encodeVringState({ index: s.index, num: r.base }));
        return [];
      }
      case R.SET_VRING_KICK:
      case R.SET_VRING_CALL:
      case R.SET_VRING_ERR: {
        const v = decodeU64(m.request, m.payload);
        const index = Number(v & BigInt(VRING_IDX_MASK));
        const noFd = (v & BigInt(VRING_NOFD_MASK)) !== 0n;
        if (v >> 9n !== 0n)
          throw new VhostUserProtocolError(
            `${requestName(m.request)}: reserved bits set in 0x${v.toString(16)}`,
          );
        this.fdCount(m, noFd ? 0 : 1);
        const r = this.ring(m, index);
        const fd = noFd ? null : m.fds[0]!;
        if (m.request === R.SET_VRING_KICK) {
          if (fd === null)
            throw new VhostUserProtocolError(
              `ring ${index}: no kick fd (polling mode) is not supported: IOThreads sleep on kick eventfds`,
            );
          await this.stopIfRunning(index);
          safeClose(r.kickFd);
          r.kickFd = fd;
        } else if (m.request === R.SET_VRING_CALL) {
          await this.stopIfRunning(index);
          safeClose(r.callFd);
          r.callFd = fd;
        } else {
          safeClose(r.errFd);
          r.errFd = fd;
        }
        return fd === null ? [] : [fd];
      }
      case R.SET_VRING_ENABLE: {
        this.fdCount(m, 0);
        const s = decodeVringState(m.request, m.payload);
        const r = this.ring(m, s.index);
        if (s.num > 1) throw new VhostUserProtocolError(`ring ${s.index}: enable value ${s.num} (0 or 1)`);
        if (s.num === 0) await this.stopIfRunning(s.index);
        r.enabled = s.num === 1;
        return [];
      }
      case R.GET_CONFIG: {
        this.fdCount(m, 0);
        const c = decodeConfig(m.request, m.payload);
        const all = this.device.config.bytes();
        const bytes = new Uint8Array(c.size);
        bytes.set(all.subarray(Math.min(c.offset, all.length), Math.min(c.offset + c.size, all.length)));
        this.reply(m, encodeConfig({ offset: c.offset, size: c.size, flags: c.flags, bytes }));
        return [];
      }
      case R.SET_CONFIG: {
        this.fdCount(m, 0);
        const c = decodeConfig(m.request, m.payload);
        if (c.flags !== ConfigFlag.WRITABLE && c.flags !== ConfigFlag.MIGRATION)
          throw new RequestFailed(`SET_CONFIG flags ${c.flags}`);
        // Only writeback (1 byte at 0x20) is writable.
        if (c.offset !== CONFIG_WCE_OFFSET || c.size !== 1)
          throw new RequestFailed(`config [0x${c.offset.toString(16)}, +${c.size}) is read-only`);
        const before = this.device.config.writeback;
        const warnings: string[] = [];
        const onWarn = (w: string) => warnings.push(w);
        this.device.on("warning", onWarn);
        try {
          this.device.config.write(CONFIG_WCE_OFFSET, 1, c.bytes[0]!);
        } finally {
          this.device.off("warning", onWarn);
        }
        if (warnings.length > 0) throw new RequestFailed(warnings.join("; "));
        if (before !== this.device.config.writeback)
          this.log(
            `connection ${this.id}: write cache ${this.device.config.writeback ? "on (writeback)" : "off (writethrough)"}`,
          );
        return [];
      }
      default:
        throw new VhostUserProtocolError(`unsupported request ${requestName(m.request)} (${m.request})`);
    }
  }

  // ---- starting and stopping ----------------------------------------------

  private async stopIfRunning(index: number): Promise<void> {
    if (this.running?.includes(index)) await this.stop();
  }

  /** Stop every queue (in-flight requests complete first); remember where each ring is. */
  private async stop(): Promise<void> {
    if (this.running === null) return;
    const was = this.running;
    this.running = null;
    const positions = await this.device.stopQueues();
    for (const p of positions) {
      const r = this.rings[p.index];
      if (r !== undefined) r.base = p.nextAvail;
    }
    this.stats.stops++;
    if (this.debug) this.log(`connection ${this.id}: stopped queues ${was.join(",")}`);
    this.emit("stopped");
  }

  /**
   * The rings to start: every ring configured since the last stop (it has an
   * address), each with a size, a kick fd and enabled (rings are enabled from
   * the start when VHOST_USER_F_PROTOCOL_FEATURES was not negotiated).
   * null while any of them is incomplete.
   */
  private plan(): number[] | null {
    if (this.memory === null || this.features === null) return null;
    const wanted: number[] = [];
    for (let i = 0; i < this.rings.length; i++) {
      const r = this.rings[i]!;
      if (r.addr === null) continue;
      if (r.num === null || r.kickFd === null) return null;
      if (!r.enabled && this.protocolFeaturesAcked) return null;
      wanted.push(i);
    }
    return wanted.length > 0 ? wanted : null;
  }

  private async reconcile(): Promise<void> {
    const plan = this.plan();
    if (plan === null) return;
    if (this.running !== null) {
      if (plan.length === this.running.length && plan.every((q, i) => q === this.running![i])) return;
      await this.stop();
    }
    await this.start(plan);
  }

  private async start(plan: number[]): Promise<void> {
    const mem = this.memory!;
    const acts: QueueActivation[] = plan.map((i) => {
      const r = this.rings[i]!;
      const size = r.num!;
      const a = r.addr!;
      const descAddr = this.translate(i, "descriptor table", a.desc, descTableBytes(size));
      const availAddr = this.translate(i, "available ring", a.avail, availRingBytes(size));
      const usedAddr = this.translate(i, "used ring", a.used, usedRingBytes(size));
      if (descAddr % 16 !== 0 || availAddr % 2 !== 0 || usedAddr % 4 !== 0)
        throw new VhostUserProtocolError(
          `ring ${i}: misaligned (desc 0x${descAddr.toString(16)}, avail 0x${availAddr.toString(16)}, used 0x${usedAddr.toString(16)})`,
        );
      // Where the used ring really is: after a front-end restart the guest's
      // ring is the truth (requests in flight at a crash are lost without
      // INFLIGHT_SHMFD, as in QEMU).
      const u = mem.guest.slice(usedAddr + 2, 2);
      const usedIdx = u[0]! | (u[1]! << 8);
      return {
        index: i,
        ready: true,
        size,
        descAddr,
        availAddr,
        usedAddr,
        lastAvailIdx: r.base,
        usedIdx,
        kickFd: r.kickFd!,
        call: r.callFd !== null ? { kind: "eventfd", fd: r.callFd } : { kind: "none" },
      };
    });
    if (this.memoryDirty) {
      this.device.setMemory(mem.guest);
      this.memoryDirty = false;
    }
    try {
      await this.device.startQueues(this.features!, acts);
    } catch (e) {
      await this.device.stopQueues().catch(() => {});
      throw new Error(`starting queues ${plan.join(",")} failed: ${(e as Error).message}`);
    }
    this.running = plan;
    this.stats.starts++;
    this.log(
      `connection ${this.id}: started queue(s) ${plan.join(",")} (size ${acts.map((a) => a.size).join(",")}, features 0x${this.features!.toString(16)})`,
    );
    this.emit("started", plan);
  }

  private translate(ring: number, what: string, ua: bigint, len: number): number {
    const gpa = this.memory!.uaToGpa(ua, len);
    if (gpa < 0)
      throw new VhostUserProtocolError(
        `ring ${ring}: ${what} at user address 0x${ua.toString(16)} (+${len}) is outside the memory table`,
      );
    return gpa;
  }
}

/** Requests that carry a reply of their own (need_reply adds nothing). */
const HAS_REPLY = new Set<number>([
  Request.GET_FEATURES,
  Request.GET_PROTOCOL_FEATURES,
  Request.GET_VRING_BASE,
  Request.GET_QUEUE_NUM,
  Request.GET_CONFIG,
  Request.GET_MAX_MEM_SLOTS,
]);

function describe(m: VhostUserMessage): string {
  const p = m.payload;
  let detail = "";
  if (p.byteLength === 8) {
    const v = new DataView(p.buffer, p.byteOffset, 8);
    detail = ` [${v.getUint32(0, true)}, ${v.getUint32(4, true)}]`;
  } else if (p.byteLength > 0) detail = ` (${p.byteLength} bytes)`;
  return `${requestName(m.request)} flags 0x${m.flags.toString(16)}${detail}${m.fds.length ? ` fds ${m.fds.length}` : ""}`;
}
