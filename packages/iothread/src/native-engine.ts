/**
 * Adapts the addon's NativeEngine (shared submission/completion buffers, one
 * syscall per batch) to the BlockEngine interface the IOThread speaks.
 *
 *   enqueue(req)  -> one record in engine.sq (+ its segments in engine.iov)
 *   submit()      -> engine.submit(n): one io_uring_enter / io_submit
 *   reap(cb)      -> engine.reap(): pairs (tag, result) in engine.cq
 */
import { NativeEngine, nativeAvailable, nativeLoadError, openBlockFile } from "@vblk/backend-libaio";
import type {
  BlockEngine,
  CompletionWait,
  EngineContext,
  EngineSpec,
  EngineStats,
  IoRequest,
  KernelWait,
} from "@vblk/core";

type FileEngineSpec = Extract<EngineSpec, { path: string }>;

const SQ = 8;
const IOV = 3;

export class NativeBlockEngine implements BlockEngine {
  readonly name: string;
  readonly wait: CompletionWait;
  readonly kernelWait: KernelWait | undefined;
  private readonly e: NativeEngine;
  private readonly sq: Float64Array;
  private readonly iov: Float64Array;
  private readonly cq: Int32Array;
  private n = 0;
  private iovUsed = 0;
  private queuedInflight = 0;
  private closed = false;

  constructor(spec: FileEngineSpec & { kind: "io_uring" | "libaio" }, ctx: EngineContext) {
    if (!nativeAvailable())
      throw new Error(`engine ${spec.kind}: native addon unavailable: ${nativeLoadError()}`);
    const f = openBlockFile(spec.path, { direct: spec.direct, readOnly: spec.readOnly });
    this.e = new NativeEngine({
      kind: spec.kind,
      fd: f.fd,
      ownsFd: true,
      direct: f.direct,
      blockSize: f.logicalBlockSize,
      isBlockDevice: f.isBlockDevice,
      regions: ctx.mem.regions.map((r) => r.bytes),
      depth: spec.depth ?? 256,
    });
    this.name = spec.kind;
    this.wait = { kind: "fd", fd: this.e.completionFd };
    this.sq = this.e.sq;
    this.iov = this.e.iov;
    this.cq = this.e.cq;
    const e = this.e;
    this.kernelWait = e.canWatch()
      ? {
          watch: (fd, token) => e.watchFd(fd, token),
          unwatch: (token) => e.unwatchFd(token),
          sleep: (timeoutMs, onComplete) => {
            this.deliver(e.sleep(timeoutMs), onComplete);
            return e.takeReady();
          },
          broken: () => e.watchErrors() > 0,
        }
      : undefined;
  }

  enqueue(req: IoRequest): void {
    if (this.closed) throw new Error(`${this.name} engine closed`);
    if (this.n === this.e.sqCapacity || this.iovUsed + req.segCount > this.e.iovCapacity) this.submit();
    const s = this.n * SQ;
    const sq = this.sq;
    sq[s] = req.op;
    sq[s + 1] = req.tag;
    sq[s + 2] = req.offset;
    sq[s + 3] = req.length;
    sq[s + 4] = req.segCount;
    sq[s + 5] = this.iovUsed;
    const iov = this.iov;
    let v = this.iovUsed * IOV;
    for (let i = 0; i < req.segCount; i++) {
      iov[v] = req.segRegion[i]!;
      iov[v + 1] = req.segOffset[i]!;
      iov[v + 2] = req.segLen[i]!;
      v += IOV;
    }
    this.iovUsed += req.segCount;
    this.n++;
    this.queuedInflight++;
  }

  submit(): void {
    if (this.n === 0) return;
    this.e.submit(this.n);
    this.n = 0;
    this.iovUsed = 0;
  }

  reap(onComplete: (tag: number, result: number) => void): number {
    return this.deliver(this.e.reap(), onComplete);
  }

  private deliver(c: number, onComplete: (tag: number, result: number) => void): number {
    const cq = this.cq;
    for (let i = 0; i < c; i++) onComplete(cq[2 * i]! >>> 0, cq[2 * i + 1]!);
    this.queuedInflight -= c;
    return c;
  }

  get inflight(): number {
    return this.queuedInflight;
  }

  stats(): EngineStats {
    const s = this.e.stats();
    return {
      submitted: s.submitted,
      completed: s.completed,
      submitCalls: s.submitCalls,
      bounced: s.bounced,
      errors: s.errors,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.e.close();
  }
}

export function createNativeBlockEngine(spec: EngineSpec, ctx: EngineContext): BlockEngine {
  if (spec.kind !== "io_uring" && spec.kind !== "libaio")
    throw new Error(`not a native engine: ${spec.kind}`);
  return new NativeBlockEngine(spec as FileEngineSpec & { kind: "io_uring" | "libaio" }, ctx);
}
