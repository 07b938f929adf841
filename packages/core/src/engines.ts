/**
 * Engines that need nothing from the host: `null` (every request succeeds at
 * once and moves no data, like fio's null engine) and `memory` (the disk is a
 * SharedArrayBuffer, shared by every IOThread of the device).
 */
import type {
  BlockEngine,
  CompletionWait,
  EngineContext,
  EngineSpec,
  EngineStats,
  IoRequest,
} from "./engine.js";
import { IoOp } from "./engine.js";
import type { GuestMemory } from "./guest-memory.js";

const EIO = 5;
const EROFS = 30;

/** Completions of synchronous engines: a ring of (tag, result) pairs. */
class CompletionList {
  private tags = new Uint32Array(64);
  private results = new Int32Array(64);
  count = 0;
  add(tag: number, result: number): void {
    if (this.count === this.tags.length) {
      const t = new Uint32Array(this.count * 2);
      t.set(this.tags);
      const r = new Int32Array(this.count * 2);
      r.set(this.results);
      this.tags = t;
      this.results = r;
    }
    this.tags[this.count] = tag;
    this.results[this.count++] = result;
  }
  drain(cb: (tag: number, result: number) => void): number {
    const n = this.count;
    // Reset first: a callback may enqueue (and complete) new work.
    const tags = this.tags;
    const results = this.results;
    this.tags = this.spareTags;
    this.results = this.spareResults;
    this.spareTags = tags;
    this.spareResults = results;
    this.count = 0;
    for (let i = 0; i < n; i++) cb(tags[i]!, results[i]!);
    return n;
  }
  private spareTags = new Uint32Array(64);
  private spareResults = new Int32Array(64);
}

abstract class SyncEngine implements BlockEngine {
  abstract readonly name: string;
  readonly wait: CompletionWait = { kind: "sync" };
  protected readonly done = new CompletionList();
  protected closed = false;
  protected readonly st: EngineStats = { submitted: 0, completed: 0, submitCalls: 0, bounced: 0, errors: 0 };
  private queued = 0;

  enqueue(req: IoRequest): void {
    if (this.closed) throw new Error(`${this.name} engine closed`);
    const r = this.execute(req);
    if (r < 0) this.st.errors++;
    this.done.add(req.tag, r);
    this.queued++;
  }
  submit(): void {
    if (this.closed) throw new Error(`${this.name} engine closed`);
    this.st.submitCalls++;
    this.st.submitted += this.queued;
    this.queued = 0;
  }
  reap(onComplete: (tag: number, result: number) => void): number {
    const n = this.done.drain(onComplete);
    this.st.completed += n;
    return n;
  }
  get inflight(): number {
    return this.done.count;
  }
  stats(): EngineStats {
    return { ...this.st };
  }
  close(): void {
    this.closed = true;
  }
  protected abstract execute(req: IoRequest): number;
}

export class NullEngine extends SyncEngine {
  readonly name = "null";
  protected execute(req: IoRequest): number {
    return req.op === IoOp.READ || req.op === IoOp.WRITE ? req.length : 0;
  }
}

export class MemoryEngine extends SyncEngine {
  readonly name = "memory";
  private readonly disk: Uint8Array;
  constructor(
    buffer: SharedArrayBuffer | ArrayBuffer,
    private readonly mem: GuestMemory,
    private readonly readOnly = false,
  ) {
    super();
    this.disk = new Uint8Array(buffer);
  }
  protected execute(req: IoRequest): number {
    const disk = this.disk;
    const regions = this.mem.regions;
    switch (req.op) {
      case IoOp.READ:
      case IoOp.WRITE: {
        let pos = req.offset;
        const write = req.op === IoOp.WRITE;
        if (write && this.readOnly) return -EROFS;
        for (let i = 0; i < req.segCount; i++) {
          const r = regions[req.segRegion[i]!];
          const len = req.segLen[i]!;
          const off = req.segOffset[i]!;
          if (r === undefined || off + len > r.size || pos + len > disk.length) return -EIO;
          const g = r.bytes.subarray(off, off + len);
          if (write) disk.set(g, pos);
          else g.set(disk.subarray(pos, pos + len));
          pos += len;
        }
        return req.length;
      }
      case IoOp.FLUSH:
        return 0;
      case IoOp.DISCARD:
      case IoOp.WRITE_ZEROES:
      case IoOp.WRITE_ZEROES_UNMAP:
        if (this.readOnly) return -EROFS;
        if (req.offset + req.length > disk.length) return -EIO;
        disk.fill(0, req.offset, req.offset + req.length);
        return 0;
      default:
        return -22; // EINVAL
    }
  }
}

/** Build a null or memory engine from its spec; other kinds live in other packages. */
export function createBuiltinEngine(spec: EngineSpec, ctx: EngineContext): BlockEngine {
  switch (spec.kind) {
    case "null":
      return new NullEngine();
    case "memory":
      return new MemoryEngine(spec.buffer, ctx.mem, spec.readOnly ?? false);
    default:
      throw new Error(`engine "${spec.kind}" is not built into @vblk/core (allowed here: null, memory)`);
  }
}
