/**
 * A fault-injecting engine for tests: wraps any engine and, by rules,
 * fails requests (EIO, ENOSPC, any errno), makes READ/WRITE short, adds
 * latency, or hangs them. Spec: { kind: "fault", inner, faults, state }
 * (build it with faultEngineSpec(); the device's `faults` option does).
 *
 *   rule    op? sector?/sectors? nth? count? enabled?  action (+ errno | bytes | delayMs)
 *   state   SharedArrayBuffer, Int32 x 4 per rule: matched | fired | enabled | -
 *           shared by every IOThread's instance, so "the nth request" and
 *           "count" are device-wide, and the main thread can switch a rule
 *           on and off while the device runs (FaultControl).
 *
 * All matching rules count the request; effects combine: the first firing
 * error/hang rule decides; otherwise every firing short rule (the smallest
 * wins) and delay rule (the longest wins) apply on top of the inner I/O.
 *
 * The IOThread loop never returns to the event loop, so nothing here uses
 * timers: delayed completions are handed out by reap() once due, and
 * nextDueMs() tells an idle IOThread how long it may sleep.
 */
import type {
  BlockEngine,
  CompletionWait,
  EngineContext,
  EngineSpec,
  EngineStats,
  FaultEngineSpec,
  FaultRule,
  IoRequest,
} from "@vblk/core";
import { IoOp } from "@vblk/core";
import { ERRNO } from "./error-policy.js";

const OPS = ["read", "write", "flush", "discard", "write-zeroes", "any"] as const;
const ACTIONS = ["error", "short", "delay", "hang"] as const;
const WORDS = 4;
const M_MATCHED = 0;
const M_FIRED = 1;
const M_ENABLED = 2;

function opMatches(op: FaultRule["op"], code: number): boolean {
  switch (op ?? "any") {
    case "any":
      return true;
    case "read":
      return code === IoOp.READ;
    case "write":
      return code === IoOp.WRITE;
    case "flush":
      return code === IoOp.FLUSH;
    case "discard":
      return code === IoOp.DISCARD;
    default:
      return code === IoOp.WRITE_ZEROES || code === IoOp.WRITE_ZEROES_UNMAP;
  }
}

function errnoOf(e: FaultRule["errno"]): number {
  if (e === undefined) return ERRNO.EIO;
  return typeof e === "number" ? e : ERRNO[e];
}

function check(ok: boolean, i: number, msg: string): void {
  if (!ok) throw new Error(`faults[${i}]: ${msg}`);
}

/** Validate rules (messages name the rule and field). */
export function validateFaultRules(faults: FaultRule[]): void {
  if (!Array.isArray(faults)) throw new Error("faults: must be an array of rules");
  faults.forEach((r, i) => {
    check(typeof r === "object" && r !== null, i, "must be an object");
    check(
      (ACTIONS as readonly string[]).includes(r.action),
      i,
      `action must be one of ${ACTIONS.join(", ")}`,
    );
    check(
      r.op === undefined || (OPS as readonly string[]).includes(r.op),
      i,
      `op must be one of ${OPS.join(", ")}`,
    );
    const int = (v: unknown, min: number) =>
      v === undefined || (Number.isSafeInteger(v) && (v as number) >= min);
    check(int(r.sector, 0), i, "sector must be an integer >= 0");
    check(int(r.sectors, 1), i, "sectors must be an integer >= 1");
    check(int(r.nth, 1), i, "nth must be an integer >= 1");
    check(int(r.count, 0), i, "count must be an integer >= 0");
    check(int(r.bytes, 0), i, "bytes must be an integer >= 0");
    check(
      r.delayMs === undefined || (Number.isFinite(r.delayMs) && r.delayMs >= 0),
      i,
      "delayMs must be >= 0",
    );
    check(
      r.errno === undefined ||
        (typeof r.errno === "number" ? Number.isInteger(r.errno) && r.errno > 0 : r.errno in ERRNO),
      i,
      `errno must be a positive number or one of ${Object.keys(ERRNO).join(", ")}`,
    );
  });
}

/** Wrap an engine spec with fault rules (validates them and allocates the shared rule state). */
export function faultEngineSpec(inner: EngineSpec, faults: FaultRule[]): FaultEngineSpec {
  validateFaultRules(faults);
  const state = new SharedArrayBuffer(Math.max(1, faults.length) * WORDS * 4);
  const w = new Int32Array(state);
  faults.forEach((r, i) => {
    w[i * WORDS + M_ENABLED] = r.enabled === false ? 0 : 1;
  });
  return { kind: "fault", inner, faults: faults.map((r) => ({ ...r })), state };
}

/** Switch rules on and off, read their counters; from any thread. */
export class FaultControl {
  private readonly w: Int32Array;
  constructor(
    spec: FaultEngineSpec,
    readonly rules = spec.faults,
  ) {
    if (spec.state === undefined)
      throw new Error("fault spec has no shared state: build it with faultEngineSpec()");
    this.w = new Int32Array(spec.state);
  }
  private at(i: number, f: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.rules.length)
      throw new RangeError(`fault rule ${i} out of range (${this.rules.length} rules)`);
    return i * WORDS + f;
  }
  enable(i: number, on = true): void {
    Atomics.store(this.w, this.at(i, M_ENABLED), on ? 1 : 0);
  }
  disable(i: number): void {
    this.enable(i, false);
  }
  /** Requests the rule matched (while enabled). */
  matched(i: number): number {
    return Atomics.load(this.w, this.at(i, M_MATCHED));
  }
  /** Times the rule fired. */
  fired(i: number): number {
    return Atomics.load(this.w, this.at(i, M_FIRED));
  }
  /** Zero every counter (keeps enabled flags). */
  resetCounts(): void {
    for (let i = 0; i < this.rules.length; i++) {
      Atomics.store(this.w, i * WORDS + M_MATCHED, 0);
      Atomics.store(this.w, i * WORDS + M_FIRED, 0);
    }
  }
}

interface Compiled {
  op: FaultRule["op"];
  start: number;
  end: number;
  hasRange: boolean;
  nth: number;
  count: number;
  action: number; // 0 error 1 short 2 delay 3 hang
  errno: number;
  bytes: number;
  delayMs: number;
}

const A_ERROR = 0;
const A_SHORT = 1;
const A_DELAY = 2;
const A_HANG = 3;

/** A request truncated to its first `bytes` (a short READ/WRITE). */
function truncate(req: IoRequest, bytes: number): IoRequest {
  const segRegion = new Int32Array(req.segCount);
  const segOffset = new Float64Array(req.segCount);
  const segLen = new Uint32Array(req.segCount);
  let left = bytes;
  let n = 0;
  for (let i = 0; i < req.segCount && left > 0; i++) {
    const l = Math.min(req.segLen[i]!, left);
    segRegion[n] = req.segRegion[i]!;
    segOffset[n] = req.segOffset[i]!;
    segLen[n] = l;
    left -= l;
    n++;
  }
  return {
    op: req.op,
    tag: req.tag,
    offset: req.offset,
    length: bytes,
    segCount: n,
    segRegion,
    segOffset,
    segLen,
  };
}

export class FaultEngine implements BlockEngine {
  readonly name: string;
  readonly wait: CompletionWait;
  private readonly rules: Compiled[];
  private readonly w: Int32Array;
  /** Completions decided here (errors, zero-byte shorts): tag, result pairs. */
  private ready: number[] = [];
  /** Inner completions held back (delay): tag -> [result, due ms]. */
  private readonly held = new Map<number, [number, number]>();
  /** Requests whose inner completion gets a delay: tag -> ms. */
  private readonly delayFor = new Map<number, number>();
  /** Shadow requests of short READ/WRITEs, alive until their completion. */
  private readonly shadows = new Map<number, IoRequest>();
  private readonly hung = new Set<number>();
  private readonly injected = { errors: 0, shorts: 0, delays: 0, hangs: 0 };
  private deliver: (tag: number, result: number) => void = () => {};
  private delivered = 0;
  private readonly fromInner = (tag: number, result: number): void => {
    if (this.shadows.size > 0) this.shadows.delete(tag);
    if (this.delayFor.size > 0) {
      const d = this.delayFor.get(tag);
      if (d !== undefined) {
        this.delayFor.delete(tag);
        this.held.set(tag, [result, performance.now() + d]);
        return;
      }
    }
    this.delivered++;
    this.deliver(tag, result);
  };

  constructor(
    spec: FaultEngineSpec,
    readonly inner: BlockEngine,
  ) {
    validateFaultRules(spec.faults);
    this.name = `${inner.name}+fault`;
    this.wait = inner.wait;
    if (spec.state === undefined) {
      const s = faultEngineSpec(spec.inner, spec.faults);
      this.w = new Int32Array(s.state!);
    } else this.w = new Int32Array(spec.state);
    this.rules = spec.faults.map((r) => ({
      op: r.op,
      start: (r.sector ?? 0) * 512,
      end: ((r.sector ?? 0) + (r.sectors ?? 1)) * 512,
      hasRange: r.sector !== undefined,
      nth: r.nth ?? 1,
      count: r.count ?? (r.nth !== undefined ? 1 : Number.POSITIVE_INFINITY),
      action: ACTIONS.indexOf(r.action),
      errno: errnoOf(r.errno),
      bytes: r.bytes ?? -1,
      delayMs: r.delayMs ?? 10,
    }));
  }

  /** Does rule i fire for this request? Counts the match either way. */
  private fires(i: number, req: IoRequest): boolean {
    const r = this.rules[i]!;
    if (!opMatches(r.op, req.op)) return false;
    if (r.hasRange) {
      const ranged = req.op !== IoOp.FLUSH;
      if (!ranged || req.offset >= r.end || req.offset + req.length <= r.start) return false;
    }
    const w = this.w;
    const base = i * WORDS;
    if (Atomics.load(w, base + M_ENABLED) === 0) return false;
    const m = Atomics.add(w, base + M_MATCHED, 1) + 1;
    if (m < r.nth) return false;
    for (;;) {
      const f = Atomics.load(w, base + M_FIRED);
      if (f >= r.count) return false;
      if (Atomics.compareExchange(w, base + M_FIRED, f, f + 1) === f) return true;
    }
  }

  enqueue(req: IoRequest): void {
    let short = -1;
    let delay = -1;
    for (let i = 0; i < this.rules.length; i++) {
      if (!this.fires(i, req)) continue;
      const r = this.rules[i]!;
      if (r.action === A_ERROR) {
        this.injected.errors++;
        this.ready.push(req.tag, -r.errno);
        return;
      }
      if (r.action === A_HANG) {
        this.injected.hangs++;
        this.hung.add(req.tag);
        return;
      }
      if (r.action === A_SHORT && (req.op === IoOp.READ || req.op === IoOp.WRITE)) {
        const b = r.bytes >= 0 ? r.bytes : Math.floor(req.length / 2 / 512) * 512;
        if (b < req.length && (short < 0 || b < short)) short = b;
      } else if (r.action === A_DELAY) delay = Math.max(delay, r.delayMs);
    }
    if (delay >= 0) {
      this.injected.delays++;
      this.delayFor.set(req.tag, delay);
    }
    if (short >= 0) {
      this.injected.shorts++;
      if (short === 0) {
        this.delayFor.delete(req.tag);
        this.ready.push(req.tag, 0);
        return;
      }
      const s = truncate(req, short);
      this.shadows.set(req.tag, s);
      this.inner.enqueue(s);
      return;
    }
    this.inner.enqueue(req);
  }

  submit(): void {
    this.inner.submit();
  }

  reap(onComplete: (tag: number, result: number) => void): number {
    this.deliver = onComplete;
    this.delivered = 0;
    if (this.inner.inflight > 0) this.inner.reap(this.fromInner);
    if (this.ready.length > 0) {
      const list = this.ready;
      this.ready = [];
      for (let i = 0; i < list.length; i += 2) {
        this.delivered++;
        onComplete(list[i]!, list[i + 1]!);
      }
    }
    if (this.held.size > 0) {
      const now = performance.now();
      for (const [tag, [result, due]] of this.held) {
        if (due > now) continue;
        this.held.delete(tag);
        this.delivered++;
        onComplete(tag, result);
      }
    }
    return this.delivered;
  }

  get inflight(): number {
    return this.inner.inflight + this.ready.length / 2 + this.held.size + this.hung.size;
  }

  /** Hung and held requests can be forgotten; ones inside the inner engine cannot. */
  cancel(tag: number): boolean {
    if (this.hung.delete(tag)) return true;
    if (this.held.delete(tag)) return true;
    for (let i = 0; i < this.ready.length; i += 2)
      if (this.ready[i] === tag) {
        this.ready.splice(i, 2);
        return true;
      }
    return false;
  }

  nextDueMs(): number | undefined {
    if (this.ready.length > 0) return 0;
    let due = Number.POSITIVE_INFINITY;
    for (const [, [, d]] of this.held) if (d < due) due = d;
    return due === Number.POSITIVE_INFINITY ? undefined : Math.max(0, due - performance.now());
  }

  stats(): EngineStats {
    const s = this.inner.stats();
    return { ...s, errors: s.errors + this.injected.errors };
  }

  /** What this instance injected so far. */
  injectedCounts(): { errors: number; shorts: number; delays: number; hangs: number } {
    return { ...this.injected };
  }

  close(): void {
    this.hung.clear();
    this.held.clear();
    this.ready = [];
    this.inner.close();
  }
}

export async function createFaultEngine(
  spec: EngineSpec,
  ctx: EngineContext,
  make: (spec: EngineSpec, ctx: EngineContext) => Promise<BlockEngine>,
): Promise<BlockEngine> {
  if (spec.kind !== "fault") throw new Error(`not a fault engine spec: ${spec.kind}`);
  const inner = await make(spec.inner, ctx);
  return new FaultEngine(spec, inner);
}
