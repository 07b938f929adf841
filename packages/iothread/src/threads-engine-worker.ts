/**
 * One I/O worker of the threads engine (see threads-engine.ts for the rings).
 * It opens the file itself, then loops: pop a request from its SQ, do it with
 * blocking syscalls on views of guest memory, post (id, result) to its CQ,
 * ring the IOThread's doorbell. With nothing to do it busy-polls for pollUs,
 * then sleeps on its own doorbell. On STOP it finishes what was published,
 * closes its fds, sets STATE = EXITED and returns (the thread then ends).
 */
import {
  closeSync,
  fdatasyncSync,
  constants as fsc,
  openSync,
  readSync,
  readvSync,
  writeSync,
  writevSync,
} from "node:fs";
import { workerData } from "node:worker_threads";
import { Doorbell, IoOp } from "@vblk/core";
import {
  alignedBytes,
  CTL,
  ERRNO,
  RingLayout,
  type ThreadsWorkerData,
  WorkerState,
} from "./threads-engine.js";

const d = workerData as ThreadsWorkerData;
const ring = new RingLayout(d.sab, d.slots, d.segs);
const ctl = ring.ctl;
const bell = new Doorbell(d.sab, CTL.BELL);
const done = Doorbell.from(d.done);
const slotMask = d.slots - 1;
const segMask = d.segs - 1;
const A = d.blockSize;
const size = d.sizeBytes;

const regions = d.regions.map((r) => new Uint8Array(r.buffer, r.byteOffset ?? 0, r.size));
const regionBase = d.regions.map((r) => r.byteOffset ?? 0);
/** Per region: 0 unknown, 1 direct I/O on its memory works, -1 it fails (the base is not aligned). */
const regionDirect = new Int8Array(regions.length);

const accessFlags = d.readOnly ? fsc.O_RDONLY : fsc.O_RDWR;
let fdDirect = -1;
let fdBuffered = -1;
let openErrno = 0;
try {
  if (d.direct) fdDirect = openSync(d.path, accessFlags | fsc.O_DIRECT);
  else fdBuffered = openSync(d.path, accessFlags);
} catch (e) {
  openErrno = errnoOf(e);
  Atomics.store(ctl, CTL.OPEN_ERRNO, openErrno);
}
Atomics.store(ctl, CTL.STATE, WorkerState.RUNNING);

function errnoOf(e: unknown): number {
  const n = (e as NodeJS.ErrnoException | null)?.errno;
  return typeof n === "number" && n !== 0 ? Math.abs(n) : ERRNO.EIO;
}

function isEinval(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === "EINVAL";
}

/** A buffered fd for requests O_DIRECT cannot take (opened on first use). */
function buffered(): number {
  if (fdBuffered < 0) fdBuffered = openSync(d.path, accessFlags);
  return fdBuffered;
}

// Page-aligned scratch memory: V8 allocates WebAssembly memory page aligned.
const CHUNK = 1 << 20;
let bounceBuf: Uint8Array | null = null;
let zeroBuf: Uint8Array | null = null;
function bounce(): Uint8Array {
  bounceBuf ??= alignedBytes(CHUNK);
  return bounceBuf;
}
function zeroes(): Uint8Array {
  zeroBuf ??= alignedBytes(CHUNK);
  return zeroBuf;
}

/** Drop the first n bytes of a list of views. */
function advance(list: Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const v of list) {
    if (n >= v.length) {
      n -= v.length;
      continue;
    }
    out.push(n > 0 ? v.subarray(n) : v);
    n = 0;
  }
  return out;
}

/** preadv/pwritev the whole list (loops on partial transfers). Returns bytes moved (short only at EOF for reads). */
function xfer(fd: number, views: Uint8Array[], pos: number, write: boolean): number {
  let list = views;
  let total = 0;
  for (;;) {
    let want = 0;
    for (const v of list) want += v.length;
    if (want === 0) return total;
    const n =
      list.length === 1
        ? write
          ? writeSync(fd, list[0]!, 0, want, pos + total)
          : readSync(fd, list[0]!, 0, want, pos + total)
        : write
          ? writevSync(fd, list, pos + total)
          : readvSync(fd, list, pos + total);
    total += n;
    if (n === want) return total;
    if (n === 0) {
      if (write) throw Object.assign(new Error("write made no progress"), { errno: -ERRNO.EIO, code: "EIO" });
      return total;
    }
    list = advance(list, n);
  }
}

/** Read or write `len` bytes of `buf` at pos, looping on partial transfers. */
function xferFlat(fd: number, buf: Uint8Array, len: number, pos: number, write: boolean): number {
  let got = 0;
  while (got < len) {
    const n = write
      ? writeSync(fd, buf, got, len - got, pos + got)
      : readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) {
      if (write) throw Object.assign(new Error("write made no progress"), { errno: -ERRNO.EIO, code: "EIO" });
      break;
    }
    got += n;
  }
  return got;
}

/** Copy between the views (from byte `skip` on) and buf[0, n). */
function copyViews(views: Uint8Array[], skip: number, buf: Uint8Array, n: number, toViews: boolean): void {
  let at = 0;
  for (const v of views) {
    if (at >= n) return;
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    const take = Math.min(v.length - skip, n - at);
    if (toViews) v.set(buf.subarray(at, at + take), skip);
    else buf.set(v.subarray(skip, skip + take), at);
    at += take;
    skip = 0;
  }
}

/** Through the aligned bounce buffer on the O_DIRECT fd, in 1 MiB chunks. */
function bounced(views: Uint8Array[], total: number, pos: number, write: boolean): number {
  const b = bounce();
  let moved = 0;
  while (moved < total) {
    const chunk = Math.min(CHUNK, total - moved);
    if (write) {
      copyViews(views, moved, b, chunk, false);
      xferFlat(fdDirect, b, chunk, pos + moved, true);
      moved += chunk;
    } else {
      // Read whole blocks; copy out only what was asked for.
      const len = Math.min(CHUNK, Math.ceil(chunk / A) * A);
      const n = Math.min(xferFlat(fdDirect, b, len, pos + moved, false), chunk);
      copyViews(views, moved, b, n, true);
      moved += n;
      if (n < chunk) break; // end of file
    }
  }
  return moved;
}

const views: Uint8Array[] = [];
const viewRegion: number[] = [];

function readWrite(
  write: boolean,
  segStart: number,
  segCount: number,
  offset: number,
  length: number,
): number {
  views.length = 0;
  viewRegion.length = 0;
  let total = 0;
  let aligned = offset % A === 0;
  let misaligned = false;
  for (let i = 0; i < segCount; i++) {
    const j = (segStart + i) & segMask;
    const r = ring.segRegion[j]!;
    const o = ring.segOffset[j]!;
    const n = ring.segLen[j]!;
    const mem = regions[r];
    if (mem === undefined || !(o >= 0) || o + n > mem.length) return -ERRNO.EFAULT;
    if (n === 0) continue;
    views.push(mem.subarray(o, o + n));
    viewRegion.push(r);
    total += n;
    if ((regionBase[r]! + o) % A !== 0 || n % A !== 0) aligned = false;
    if (regionDirect[r] === -1) misaligned = true;
  }
  if (total !== length || !(offset >= 0)) return -ERRNO.EINVAL;
  let list = views;
  if (write) {
    if (offset + total > size) return -ERRNO.EIO;
  } else {
    // Never read past the disk's end, even if the file is longer: a short result.
    const limit = Math.max(0, Math.min(total, size - offset));
    if (limit === 0) return 0;
    if (limit < total) {
      list = [];
      let left = limit;
      for (const v of views) {
        if (left === 0) break;
        const take = Math.min(v.length, left);
        list.push(take === v.length ? v : v.subarray(0, take));
        if (take % A !== 0) aligned = false;
        left -= take;
      }
      total = limit;
    }
  }
  if (fdDirect < 0) return xfer(fdBuffered, list, offset, write);

  if (aligned && !misaligned) {
    try {
      const n = xfer(fdDirect, list, offset, write);
      for (const r of viewRegion) if (regionDirect[r] === 0) regionDirect[r] = 1;
      return n;
    } catch (e) {
      if (!isEinval(e)) throw e;
      // The memory is not aligned as the kernel wants: bounce from now on.
      for (const r of viewRegion) if (regionDirect[r] === 0) regionDirect[r] = -1;
    }
  }
  if (offset % A === 0 && (!write || total % A === 0)) {
    try {
      const n = bounced(list, total, offset, write);
      Atomics.add(ctl, CTL.BOUNCED, 1);
      return n;
    } catch (e) {
      if (!isEinval(e)) throw e;
    }
  }
  Atomics.add(ctl, CTL.BUFFERED, 1);
  return xfer(buffered(), list, offset, write);
}

function writeZeroes(offset: number, length: number): number {
  if (!(offset >= 0) || !(length >= 0)) return -ERRNO.EINVAL;
  if (offset + length > size) return -ERRNO.EIO;
  const z = zeroes();
  let fd = fdDirect >= 0 && offset % A === 0 && length % A === 0 ? fdDirect : -1;
  if (fd < 0) {
    if (fdDirect >= 0) Atomics.add(ctl, CTL.BUFFERED, 1);
    fd = fdDirect >= 0 ? buffered() : fdBuffered;
  }
  let done = 0;
  while (done < length) {
    const n = Math.min(z.length, length - done);
    try {
      xferFlat(fd, z, n, offset + done, true);
    } catch (e) {
      if (!isEinval(e) || fd !== fdDirect) throw e;
      Atomics.add(ctl, CTL.BUFFERED, 1);
      fd = buffered();
      continue;
    }
    done += n;
  }
  return 0;
}

function execute(slot: number): number {
  if (openErrno !== 0) return -openErrno;
  const op = ring.sqI32[slot * 4]!;
  const segStart = ring.sqI32[slot * 4 + 2]!;
  const segCount = ring.sqI32[slot * 4 + 3]!;
  const offset = ring.sqF64[slot * 2]!;
  const length = ring.sqF64[slot * 2 + 1]!;
  try {
    switch (op) {
      case IoOp.READ:
        return readWrite(false, segStart, segCount, offset, length);
      case IoOp.WRITE:
        if (d.readOnly) return -ERRNO.EROFS;
        return readWrite(true, segStart, segCount, offset, length);
      case IoOp.FLUSH:
        fdatasyncSync(fdDirect >= 0 ? fdDirect : fdBuffered);
        return 0;
      case IoOp.WRITE_ZEROES:
      case IoOp.WRITE_ZEROES_UNMAP:
        if (d.readOnly) return -ERRNO.EROFS;
        return writeZeroes(offset, length);
      case IoOp.DISCARD:
        return d.readOnly ? -ERRNO.EROFS : 0;
      default:
        return -ERRNO.EINVAL;
    }
  } catch (e) {
    return -errnoOf(e);
  }
}

/** Busy-poll for new work or STOP for up to pollUs. True when something showed up. */
function poll(tail: number): boolean {
  if (d.pollUs <= 0) return false;
  const end = performance.now() + d.pollUs / 1000;
  for (;;) {
    for (let i = 0; i < 64; i++)
      if (Atomics.load(ctl, CTL.SQ_HEAD) !== tail || Atomics.load(ctl, CTL.STOP) !== 0) return true;
    if (performance.now() >= end) return false;
  }
}

function run(): void {
  let tail = Atomics.load(ctl, CTL.SQ_TAIL);
  let cqHead = Atomics.load(ctl, CTL.CQ_HEAD);
  for (;;) {
    const snap = bell.snapshot();
    if (Atomics.load(ctl, CTL.SQ_HEAD) !== tail) {
      const slot = tail & slotMask;
      const id = ring.sqI32[slot * 4 + 1]!;
      const segEnd = (ring.sqI32[slot * 4 + 2]! + ring.sqI32[slot * 4 + 3]!) | 0;
      const result = execute(slot);
      Atomics.store(ctl, CTL.SEG_TAIL, segEnd);
      tail = (tail + 1) | 0;
      Atomics.store(ctl, CTL.SQ_TAIL, tail);
      const c = cqHead & slotMask;
      ring.cq[c * 2] = id;
      ring.cq[c * 2 + 1] = result;
      cqHead = (cqHead + 1) | 0;
      Atomics.store(ctl, CTL.CQ_HEAD, cqHead);
      done.ring();
      continue;
    }
    if (Atomics.load(ctl, CTL.STOP) !== 0) return;
    if (poll(tail)) continue;
    bell.wait(snap);
  }
}

try {
  run();
} finally {
  for (const fd of [fdDirect, fdBuffered]) {
    if (fd >= 0) {
      try {
        closeSync(fd);
      } catch {}
    }
  }
  Atomics.store(ctl, CTL.STATE, WorkerState.EXITED);
  Atomics.notify(ctl, CTL.STATE);
}
