// vblk's vhost-user-blk back-end driven by a hand-written front-end over a
// real Unix socket: memfd guest memory shared through SET_MEM_TABLE, split
// rings, kick/call eventfds, real I/O on a temp image (io_uring when it works
// here, else libaio).
import { closeSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nativeAvailable, nativeLoadError, probeEngines } from "@vblk/backend-libaio";
import { BLK_CONFIG_SIZE, BlkConfigOffset, BlkFeature, BlkStatus, VirtioFeature } from "@vblk/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CONFIG_HDR_SIZE,
  decodeConfig,
  decodeVringState,
  encodeConfig,
  encodeMemTable,
  encodeU64,
  encodeVringState,
  OFFERED_PROTOCOL_FEATURES,
  ProtocolFeature,
  Request,
  type RunningServe,
  startServe,
  VHOST_USER_F_PROTOCOL_FEATURES,
} from "../dist/index.js";
import {
  closeQueueFds,
  expectZero,
  interrupts,
  MiB,
  sendRing,
  setupQueues,
  sharedGuestRam,
  TestFrontend,
  waitFor,
} from "./frontend.js";

const native = nativeAvailable();
if (!native) console.warn(`[vhost-user] native addon not loaded, tests SKIPPED: ${nativeLoadError()}`);
const probe = native ? probeEngines() : { io_uring: false, libaio: false };
const ENGINE = probe.io_uring === true ? "io_uring" : probe.libaio === true ? "libaio" : "null";
console.info(`[vhost-user] engine for the server tests: ${ENGINE}`);

const IMAGE_BYTES = 8 * MiB;

let dir: string;
let image: string;
let serve: RunningServe | null = null;
const frontends: TestFrontend[] = [];
const logs: string[] = [];

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

function readImage(off: number, len: number): Buffer {
  const fd = openSync(image, "r");
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, off);
    return b;
  } finally {
    closeSync(fd);
  }
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

async function start(
  o: { numQueues?: number; iothreads?: number; queueSize?: number; readOnly?: boolean } = {},
) {
  serve = await startServe({
    socket: join(dir, "vu.sock"),
    image,
    engine: ENGINE,
    ...(ENGINE === "null" ? { sizeBytes: IMAGE_BYTES } : {}),
    numQueues: o.numQueues ?? 2,
    iothreads: o.iothreads ?? 1,
    queueSize: o.queueSize ?? 256,
    readOnly: o.readOnly ?? false,
    serial: "vu-test-serial",
    log: (m) => logs.push(m),
  });
  return serve;
}

function connect(): TestFrontend {
  const fe = TestFrontend.connect(join(dir, "vu.sock"));
  frontends.push(fe);
  return fe;
}

async function running(queues: number[]): Promise<void> {
  await waitFor(
    () => JSON.stringify(serve?.server.session?.runningQueues ?? null) === JSON.stringify(queues),
    10_000,
    `queues ${queues} running`,
  );
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "vblk-vu-"));
  image = join(dir, "disk.img");
  writeFileSync(image, Buffer.alloc(IMAGE_BYTES));
  logs.length = 0;
});

afterEach(async () => {
  for (const fe of frontends.splice(0)) if (!fe.closedByPeer) fe.close();
  if (serve) await serve.stop();
  serve = null;
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!native)("vhost-user-blk back-end", () => {
  it("negotiates: features with PROTOCOL_FEATURES, protocol features, queue count, config space", async () => {
    const s = await start({ numQueues: 3 });
    const fe = connect();
    const f = await fe.callU64(Request.GET_FEATURES);
    expect(f & (1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES))).not.toBe(0n);
    expect(f & ~(1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES))).toBe(s.device.deviceFeatures);
    for (const bit of [
      VirtioFeature.VERSION_1,
      BlkFeature.MQ,
      BlkFeature.FLUSH,
      VirtioFeature.RING_EVENT_IDX,
    ])
      expect(f & (1n << BigInt(bit)), `feature bit ${bit}`).not.toBe(0n);
    const p = await fe.callU64(Request.GET_PROTOCOL_FEATURES);
    expect(p).toBe(OFFERED_PROTOCOL_FEATURES);
    for (const bit of [ProtocolFeature.MQ, ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIG])
      expect(p & (1n << BigInt(bit))).not.toBe(0n);
    expect(p & (1n << BigInt(ProtocolFeature.LOG_SHMFD))).toBe(0n);
    fe.send(Request.SET_PROTOCOL_FEATURES, encodeU64(p));
    expect(await fe.callU64(Request.GET_QUEUE_NUM)).toBe(3n);
    expect(await fe.callU64(Request.GET_MAX_MEM_SLOTS)).toBe(8n);
    // GET_CONFIG of 60 bytes, and of a window past the end (zeros)
    const r = await fe.call(
      Request.GET_CONFIG,
      encodeConfig({ offset: 0, size: BLK_CONFIG_SIZE, flags: 0, bytes: new Uint8Array(BLK_CONFIG_SIZE) }),
    );
    const c = decodeConfig(r.request, r.payload);
    expect(c.size).toBe(BLK_CONFIG_SIZE);
    const v = new DataView(c.bytes.buffer, c.bytes.byteOffset);
    expect(Number(v.getBigUint64(BlkConfigOffset.CAPACITY, true))).toBe(IMAGE_BYTES / 512);
    expect(v.getUint16(BlkConfigOffset.NUM_QUEUES, true)).toBe(3);
    expect(v.getUint32(BlkConfigOffset.SEG_MAX, true)).toBe(254);
    const r2 = await fe.call(
      Request.GET_CONFIG,
      encodeConfig({ offset: 0x30, size: 0x40, flags: 0, bytes: new Uint8Array(0x40) }),
    );
    expect(r2.payload.byteLength).toBe(CONFIG_HDR_SIZE + 0x40);
    expect([...r2.payload.subarray(CONFIG_HDR_SIZE + 0x10)].every((b) => b === 0)).toBe(true);
  });

  it("REPLY_ACK: 0 for a good request, non-zero for a refused one (the connection stays)", async () => {
    await start();
    const fe = connect();
    const f = await fe.callU64(Request.GET_FEATURES);
    fe.send(Request.SET_PROTOCOL_FEATURES, encodeU64(OFFERED_PROTOCOL_FEATURES));
    expect(await fe.ack(Request.SET_OWNER)).toBe(0n);
    expect(await fe.ack(Request.SET_FEATURES, encodeU64(f))).toBe(0n);
    expect(await fe.ack(Request.SET_VRING_NUM, encodeVringState({ index: 1, num: 64 }))).toBe(0n);
    // a feature that was never offered
    expect(await fe.ack(Request.SET_FEATURES, encodeU64(f | (1n << 34n)))).not.toBe(0n);
    // config writes: writeback is writable (CONFIG_WCE negotiated), capacity is not
    const wce = (v: number) =>
      encodeConfig({ offset: BlkConfigOffset.WRITEBACK, size: 1, flags: 0, bytes: Uint8Array.of(v) });
    expect(await fe.ack(Request.SET_CONFIG, wce(0))).toBe(0n);
    expect(serve!.device.config.writeback).toBe(false);
    expect(await fe.ack(Request.SET_CONFIG, wce(1))).toBe(0n);
    expect(serve!.device.config.writeback).toBe(true);
    expect(
      await fe.ack(
        Request.SET_CONFIG,
        encodeConfig({ offset: 0, size: 8, flags: 0, bytes: new Uint8Array(8) }),
      ),
    ).not.toBe(0n);
    expect(await fe.callU64(Request.GET_QUEUE_NUM)).toBe(2n);
    expect(fe.closedByPeer).toBe(false);
  });

  it(`serves I/O on 2 queues over 2 IOThreads (${ENGINE}): write, read back on the other queue, flush, GET_ID, discard; interrupts on the call eventfds`, async () => {
    await start({ numQueues: 2, iothreads: 2 });
    const fe = connect();
    const ram = sharedGuestRam(16);
    try {
      const { queues } = await setupQueues(fe, ram, { numQueues: 2, queueSize: 128 });
      await running([0, 1]);
      const [q0, q1] = queues as [(typeof queues)[0], (typeof queues)[0]];
      // write 8 x 4 KiB on q0
      const data = pattern(32 * 1024, 1);
      ram.mem.write(q0.data, data);
      for (let i = 0; i < 8; i++)
        expect(q0.blk.write(64 + i * 8, q0.data + i * 4096, 4096)).toBeGreaterThanOrEqual(0);
      q0.kick();
      for (const c of await q0.complete(8)) expect(c.status).toBe(BlkStatus.OK);
      q0.blk.flush();
      q0.kick();
      expect((await q0.complete(1))[0]!.status).toBe(BlkStatus.OK);
      if (ENGINE !== "null")
        expect(Buffer.compare(readImage(64 * 512, data.length), Buffer.from(data))).toBe(0);
      // read it back on q1, in one 32 KiB request
      ram.mem.slice(q1.data, data.length).fill(0);
      q1.blk.read(64, q1.data, data.length);
      q1.kick();
      const rd = await q1.complete(1);
      expect(rd[0]!.status).toBe(BlkStatus.OK);
      expect(rd[0]!.len).toBe(data.length + 1);
      if (ENGINE !== "null")
        expect(Buffer.from(ram.mem.slice(q1.data, data.length)).equals(Buffer.from(data))).toBe(true);
      // GET_ID
      q1.blk.getId(q1.data, 20);
      q1.kick();
      expect((await q1.complete(1))[0]!.status).toBe(BlkStatus.OK);
      expect(Buffer.from(ram.mem.slice(q1.data, 14)).toString()).toBe("vu-test-serial");
      // discard the first 4 KiB written: reads back as zeros in the image
      q0.blk.discard(64, 8);
      q0.kick();
      expect((await q0.complete(1))[0]!.status).toBe(BlkStatus.OK);
      if (ENGINE !== "null") expect(readImage(64 * 512, 4096).every((b) => b === 0)).toBe(true);
      // interrupts arrived on the call eventfds
      expect(interrupts(q0)).toBeGreaterThan(0);
      expect(interrupts(q1)).toBeGreaterThan(0);
      // both IOThreads served requests
      const st = serve!.stats();
      expect(st.iothreads.map((t) => t.queues)).toEqual([[0], [1]]);
      expect(st.iothreads[0]!.requests).toBe(10); // 8 writes, flush, discard
      expect(st.iothreads[1]!.requests).toBe(2); // read, GET_ID
      expect(st.queues[0]!.writes).toBe(8);
      expect(st.queues[1]!.bytesRead).toBe(data.length);
      closeQueueFds(queues);
    } finally {
      ram.close();
    }
  });

  it("GET_VRING_BASE stops every queue and returns the next avail index; the rings resume from it", async () => {
    await start({ numQueues: 2 });
    const fe = connect();
    const ram = sharedGuestRam(8);
    try {
      const { queues } = await setupQueues(fe, ram, { numQueues: 2, queueSize: 64 });
      await running([0, 1]);
      const [q0, q1] = queues as [(typeof queues)[0], (typeof queues)[0]];
      for (let i = 0; i < 5; i++) q0.blk.read(i, q0.data, 512);
      q0.kick();
      await q0.complete(5);
      for (let i = 0; i < 3; i++) q1.blk.read(i, q1.data, 512);
      q1.kick();
      await q1.complete(3);
      // QEMU's stop: disable, then GET_VRING_BASE per ring
      fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 0 }));
      fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: 1, num: 0 }));
      const b0 = decodeVringState(
        0,
        (await fe.call(Request.GET_VRING_BASE, encodeVringState({ index: 0, num: 0 }))).payload,
      );
      const b1 = decodeVringState(
        0,
        (await fe.call(Request.GET_VRING_BASE, encodeVringState({ index: 1, num: 0 }))).payload,
      );
      expect(b0).toEqual({ index: 0, num: 5 });
      expect(b1).toEqual({ index: 1, num: 3 });
      expect(serve!.server.session!.runningQueues).toBeNull();
      // a request submitted while stopped waits...
      q0.blk.read(9, q0.data, 512);
      q0.kick();
      await new Promise((r) => setTimeout(r, 50));
      expect(q0.q.hasUsed()).toBe(false);
      // ...until QEMU's start sequence runs again
      for (const [q, base] of [
        [q0, 5],
        [q1, 3],
      ] as const) {
        sendRing(fe, ram, q, base); // same rings, bases from GET_VRING_BASE
      }
      fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }));
      fe.send(Request.SET_VRING_ENABLE, encodeVringState({ index: 1, num: 1 }));
      await running([0, 1]);
      expect((await q0.complete(1))[0]!.status).toBe(BlkStatus.OK);
      q1.blk.read(1, q1.data, 512);
      q1.kick();
      expect((await q1.complete(1))[0]!.status).toBe(BlkStatus.OK);
      closeQueueFds(queues);
    } finally {
      ram.close();
    }
  });

  it("rings start on their kick fd alone when VHOST_USER_F_PROTOCOL_FEATURES is not negotiated", async () => {
    await start({ numQueues: 1 });
    const fe = connect();
    const ram = sharedGuestRam(8);
    try {
      const offered = await fe.callU64(Request.GET_FEATURES);
      const { queues } = await setupQueues(fe, ram, {
        numQueues: 1,
        enable: false,
        // legacy-style front-end: accepts the device features but not bit 30
        features: offered & ~(1n << 30n),
      });
      // setupQueues always sets bit 30 in SET_FEATURES: clear it again
      fe.send(Request.SET_FEATURES, encodeU64(offered & ~(1n << 30n)));
      await running([0]);
      queues[0]!.blk.read(0, queues[0]!.data, 4096);
      queues[0]!.kick();
      expect((await queues[0]!.complete(1))[0]!.status).toBe(BlkStatus.OK);
      closeQueueFds(queues);
    } finally {
      ram.close();
    }
  });

  it("SET_MEM_TABLE under running rings: stop, swap the memory, start again where the rings were", async () => {
    await start({ numQueues: 1 });
    const fe = connect();
    const ram = sharedGuestRam(8);
    try {
      const { queues } = await setupQueues(fe, ram, { numQueues: 1 });
      await running([0]);
      const q = queues[0]!;
      q.blk.read(0, q.data, 4096);
      q.kick();
      await q.complete(1);
      const starts = serve!.server.session!.stats.starts;
      expectZero(
        await fe.ack(
          Request.SET_MEM_TABLE,
          encodeMemTable(ram.regions),
          ram.regions.map(() => ram.fd),
        ),
      );
      await waitFor(() => serve!.server.session!.stats.starts === starts + 1, 5000, "restart");
      q.blk.read(8, q.data, 4096);
      q.kick();
      expect((await q.complete(1))[0]!.status).toBe(BlkStatus.OK);
      closeQueueFds(queues);
    } finally {
      ram.close();
    }
  });

  it("a front-end that disconnects mid-I/O: in-flight requests finish, every fd is closed, the next front-end is served", async () => {
    await start({ numQueues: 2, iothreads: 2 });
    const before = openFds();
    for (let round = 0; round < 3; round++) {
      const fe = connect();
      const ram = sharedGuestRam(8);
      const { queues } = await setupQueues(fe, ram, { numQueues: 2, queueSize: 128 });
      await running([0, 1]);
      for (const q of queues) {
        for (let i = 0; i < 60; i++) q.blk.write(i * 8, q.data, 4096);
        q.kick();
      }
      fe.close();
      await waitFor(() => serve!.server.session === null, 10_000, "session cleanup");
      closeQueueFds(queues);
      ram.close();
    }
    expect(serve!.server.stats.connections).toBe(3);
    expect(serve!.server.stats.errors).toBe(0);
    // the fds the back-end received (memfds, kick/call/err eventfds, sockets) are all closed
    await waitFor(() => openFds() <= before, 5000, `fds back to ${before} (now ${openFds()})`);
    // and a fourth front-end gets a working device
    const fe = connect();
    const ram = sharedGuestRam(8);
    const { queues } = await setupQueues(fe, ram, { numQueues: 2 });
    await running([0, 1]);
    queues[1]!.blk.read(0, queues[1]!.data, 4096);
    queues[1]!.kick();
    expect((await queues[1]!.complete(1))[0]!.status).toBe(BlkStatus.OK);
    closeQueueFds(queues);
    ram.close();
  });

  it("one front-end at a time: a second one waits in the backlog until the first leaves", async () => {
    await start({ numQueues: 1 });
    const a = connect();
    expect(await a.callU64(Request.GET_QUEUE_NUM)).toBe(1n);
    const b = connect();
    b.send(Request.GET_QUEUE_NUM);
    await expect(b.next(300)).rejects.toThrow(/no reply/);
    a.close();
    const r = await b.next(5000);
    expect(r?.request).toBe(Request.GET_QUEUE_NUM);
  });

  it("read-only export: RO offered, writes fail with IOERR, reads work", async () => {
    await start({ numQueues: 1, readOnly: true });
    const fe = connect();
    const ram = sharedGuestRam(8);
    try {
      const { features, queues } = await setupQueues(fe, ram, { numQueues: 1 });
      expect(features & (1n << BigInt(BlkFeature.RO))).not.toBe(0n);
      await running([0]);
      const q = queues[0]!;
      q.blk.write(0, q.data, 4096);
      q.blk.read(0, q.data, 4096);
      q.kick();
      const done = await q.complete(2);
      expect(done.map((d) => d.status).sort()).toEqual([BlkStatus.OK, BlkStatus.IOERR]);
      closeQueueFds(queues);
    } finally {
      ram.close();
    }
  });
});
