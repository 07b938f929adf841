/**
 * IOThread Virtqueue Mapping: which IOThread serves which virtqueue. Pure
 * functions, no threads. The rules follow QEMU 9's `iothread-vq-mapping`
 * property of virtio-blk (hw/virtio/iothread-vq-mapping.c, qapi/virtio.json).
 *
 *   input                                   result (num_queues 5)
 *   iothreadVqMapping: [{iothread:"a"},     round-robin: entry k of N serves
 *                       {iothread:"b"}]       vqs k, k+N, k+2N ...
 *                                             a: 0 2 4    b: 1 3
 *   iothreadVqMapping: [{iothread:"a",      explicit: every entry lists its
 *                        vqs:[0,1,2]},        vqs; together they cover every
 *                       {iothread:"b",        vq exactly once
 *                        vqs:[3,4]}]          a: 0 1 2    b: 3 4
 *   iothread: "a"                           single: "a" serves every vq
 *   iothreads: 3                            round-robin over iothread0..iothread2
 *   (nothing)                               single: "iothread0" serves every vq
 *
 * Decisions where QEMU leaves room (each one checked against its source):
 * - Round-robin with more entries than queues is accepted, as in QEMU: the
 *   extra IOThreads serve no vq (their iothreadQueues entry is empty).
 * - `vqs: []` counts as "no vqs", as in QEMU, where an empty QAPI list is the
 *   same as an absent one. So a mapping of entries that all have `vqs: []` is
 *   round-robin, and one empty list among explicit entries is a mixed form.
 * - An empty mapping list is an error here (QEMU would treat it as unset).
 * - num_queues must be 1..1024: QEMU refuses 0 and cannot add more than
 *   VIRTIO_QUEUE_MAX (1024) queues to one device.
 * - `iothreads` (our shorthand) must be an integer from 1 to 1024.
 * - `knownIothreads` checks the names a user wrote (`iothread` and the mapping's
 *   entries); the names the device makes up itself (`iothreads: n` and the
 *   default) are created by the device and are not checked.
 * - Nothing given: the device needs at least one IOThread, so it gets one named
 *   "iothread0" serving every vq (mode "single").
 * - Every problem is reported (QEMU stops at the first); resolveMapping throws
 *   one MappingError carrying all of them.
 */

export interface IOThreadVirtqueueMapping {
  iothread: string;
  vqs?: number[];
}

export interface MappingInput {
  numQueues: number;
  /** QEMU's single iothread= property */
  iothread?: string;
  /** QEMU's iothread-vq-mapping */
  iothreadVqMapping?: IOThreadVirtqueueMapping[];
  /** shorthand: round-robin over n IOThreads named "iothread0".."iothread{n-1}" */
  iothreads?: number;
  /** IOThreads that exist (QEMU: -object iothread,id=...). When given, unknown names are errors. When omitted, every name in the mapping is created. */
  knownIothreads?: string[];
}

export interface ResolvedMapping {
  /** IOThread names in order of first appearance */
  iothreads: string[];
  /** queueToIothread[vq] = index into iothreads */
  queueToIothread: number[];
  /** iothreadQueues[i] = vqs served by iothreads[i], ascending */
  iothreadQueues: number[][];
  mode: "round-robin" | "explicit" | "single";
}

export type MappingErrorCode =
  /** num_queues is not an integer from 1 to MAX_NUM_QUEUES. */
  | "num-queues"
  /** queue_size is not a power of two from 4 to MAX_QUEUE_SIZE. */
  | "queue-size"
  /** Two of iothread / iothreads / iothreadVqMapping were given. */
  | "conflict"
  /** The `iothreads` shorthand is not an integer from 1 to MAX_IOTHREADS. */
  | "iothreads"
  /** iothreadVqMapping is an empty list. */
  | "empty-mapping"
  /** A mapping entry or the `iothread` name is malformed (not an object, empty name, vqs not a list). */
  | "bad-entry"
  /** An IOThread name that is not in knownIothreads. */
  | "unknown-iothread"
  /** The same IOThread in two mapping entries. */
  | "duplicate-iothread"
  /** Some entries list vqs and some do not. */
  | "mixed-forms"
  /** A vq that is not an integer >= 0. */
  | "bad-vq"
  /** A vq >= num_queues. */
  | "vq-out-of-range"
  /** A vq listed more than once. */
  | "vq-assigned-twice"
  /** A vq no entry lists (explicit form). */
  | "vq-unassigned";

export interface MappingProblem {
  code: MappingErrorCode;
  message: string;
}

export class MappingError extends Error {
  override readonly name = "MappingError";
  /** Every problem found; `code` and the start of `message` are the first one's. */
  readonly problems: readonly MappingProblem[];
  constructor(
    readonly code: MappingErrorCode,
    message: string,
    problems?: readonly MappingProblem[],
  ) {
    super(message);
    this.problems = problems ?? [{ code, message }];
  }
}

/** QEMU's VIRTIO_QUEUE_MAX: most queues one virtio device can have. */
export const MAX_NUM_QUEUES = 1024;
/** QEMU's VIRTQUEUE_MAX_SIZE. */
export const MAX_QUEUE_SIZE = 1024;
/** Most IOThreads the `iothreads` shorthand may ask for. */
export const MAX_IOTHREADS = 1024;
/** Name of the IOThread a device gets when no IOThread option is given. */
export const DEFAULT_IOTHREAD = "iothread0";

const P = "iothread-vq-mapping: ";

const ALLOWED_QUEUE_SIZES = (() => {
  const out: number[] = [];
  for (let s = 4; s <= MAX_QUEUE_SIZE; s *= 2) out.push(s);
  return out;
})();

/** QEMU's queue-size checks: a power of two, > 2, <= 1024. Throws MappingError("queue-size"). */
export function validateQueueSize(queueSize: number): void {
  let why: string | null = null;
  if (typeof queueSize !== "number" || !Number.isInteger(queueSize)) why = "not an integer";
  else if (queueSize <= 2) why = "must be > 2";
  else if (queueSize > MAX_QUEUE_SIZE) why = `must be <= ${MAX_QUEUE_SIZE}`;
  else if ((queueSize & (queueSize - 1)) !== 0) why = "not a power of two";
  if (why !== null)
    throw new MappingError(
      "queue-size",
      `invalid queue_size ${fmt(queueSize)} (${why}): allowed values are powers of two from 4 to ${MAX_QUEUE_SIZE} (${ALLOWED_QUEUE_SIZES.join(", ")})`,
    );
}

function fmt(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** "0-3, 5, 7-8" */
function ranges(vqs: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < vqs.length; ) {
    let j = i;
    while (j + 1 < vqs.length && vqs[j + 1] === vqs[j]! + 1) j++;
    parts.push(j > i ? `${vqs[i]}-${vqs[j]}` : `${vqs[i]}`);
    i = j + 1;
  }
  return parts.join(", ");
}

function isName(v: unknown): v is string {
  return typeof v === "string" && v.length > 0;
}

interface Checked {
  problems: MappingProblem[];
  /** Set when the input is valid. */
  resolved: ResolvedMapping | null;
}

function roundRobin(names: string[], numQueues: number, mode: ResolvedMapping["mode"]): ResolvedMapping {
  const n = names.length;
  const queueToIothread: number[] = [];
  const iothreadQueues: number[][] = names.map(() => []);
  for (let vq = 0; vq < numQueues; vq++) {
    queueToIothread.push(vq % n);
    iothreadQueues[vq % n]!.push(vq);
  }
  return { iothreads: names.slice(), queueToIothread, iothreadQueues, mode };
}

function check(input: MappingInput): Checked {
  const problems: MappingProblem[] = [];
  const add = (code: MappingErrorCode, message: string) => problems.push({ code, message });

  if (input === null || typeof input !== "object") {
    add("bad-entry", `mapping input must be an object, got ${fmt(input)}`);
    return { problems, resolved: null };
  }
  const { numQueues, iothread, iothreadVqMapping: mapping, iothreads, knownIothreads } = input;

  const nqOk = typeof numQueues === "number" && Number.isInteger(numQueues) && numQueues >= 1;
  if (!nqOk || numQueues > MAX_NUM_QUEUES)
    add(
      "num-queues",
      `num-queues must be an integer from 1 to ${MAX_NUM_QUEUES} (QEMU's VIRTIO_QUEUE_MAX), got ${fmt(numQueues)}`,
    );
  const nq = nqOk && numQueues <= MAX_NUM_QUEUES ? numQueues : -1;

  let known: Set<string> | null = null;
  if (knownIothreads !== undefined) {
    if (!Array.isArray(knownIothreads))
      add("bad-entry", `knownIothreads must be a list of IOThread names, got ${fmt(knownIothreads)}`);
    else known = new Set(knownIothreads);
  }
  const knownList = () =>
    known && known.size > 0 ? `known: ${[...known].map(fmt).join(", ")}` : "none known";

  const hasSingle = iothread !== undefined;
  const hasMapping = mapping !== undefined;
  const hasCount = iothreads !== undefined;
  if (hasSingle && hasMapping)
    add(
      "conflict",
      `iothread (${fmt(iothread)}) and iothread-vq-mapping cannot be set at the same time: give one of them`,
    );
  if (hasCount && hasMapping)
    add(
      "conflict",
      `iothreads (${fmt(iothreads)}) and iothread-vq-mapping cannot be set at the same time: give one of them`,
    );
  if (hasSingle && hasCount)
    add(
      "conflict",
      `iothread (${fmt(iothread)}) and iothreads (${fmt(iothreads)}) cannot be set at the same time: give one of them`,
    );

  // --- iothread: one IOThread serves every vq
  if (hasSingle) {
    if (!isName(iothread))
      add("bad-entry", `iothread must be a non-empty IOThread name, got ${fmt(iothread)}`);
    else if (known && !known.has(iothread))
      add("unknown-iothread", `iothread ${fmt(iothread)} does not exist (${knownList()})`);
  }

  // --- iothreads: n, round-robin over generated names
  if (hasCount) {
    if (
      typeof iothreads !== "number" ||
      !Number.isInteger(iothreads) ||
      iothreads < 1 ||
      iothreads > MAX_IOTHREADS
    )
      add(
        "iothreads",
        `iothreads must be an integer from 1 to ${MAX_IOTHREADS} (the number of IOThreads, named iothread0, iothread1, ...), got ${fmt(iothreads)}`,
      );
  }

  // --- iothread-vq-mapping
  let mappingForm: "round-robin" | "explicit" | null = null;
  const mappingNames: string[] = [];
  const explicitAssign: number[] = [];
  if (hasMapping) {
    if (!Array.isArray(mapping)) {
      add("bad-entry", `${P}must be a list of {iothread, vqs?} entries, got ${fmt(mapping)}`);
    } else if (mapping.length === 0) {
      add("empty-mapping", `${P}the list is empty: give at least one {iothread, vqs?} entry`);
    } else {
      const firstEntry = new Map<string, number>();
      // The form is set by the first well-formed entry, as QEMU compares every entry with the first.
      let formRef: { name: string; explicit: boolean } | null = null;
      const owner = nq > 0 ? new Array<string | undefined>(nq).fill(undefined) : null;
      mapping.forEach((entry: unknown, k) => {
        if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
          add("bad-entry", `${P}entry ${k} must be an object {iothread, vqs?}, got ${fmt(entry)}`);
          return;
        }
        const e = entry as { iothread?: unknown; vqs?: unknown };
        const name = e.iothread;
        if (!isName(name)) {
          add("bad-entry", `${P}entry ${k} needs a non-empty iothread name, got ${fmt(name)}`);
          return;
        }
        if (known && !known.has(name))
          add("unknown-iothread", `${P}iothread ${fmt(name)} (entry ${k}) does not exist (${knownList()})`);
        const prev = firstEntry.get(name);
        if (prev !== undefined) {
          add("duplicate-iothread", `${P}iothread ${fmt(name)} is listed twice (entries ${prev} and ${k})`);
        } else {
          firstEntry.set(name, k);
          mappingNames.push(name);
        }
        const vqs = e.vqs;
        if (vqs !== undefined && !Array.isArray(vqs)) {
          add("bad-entry", `${P}vqs of iothread ${fmt(name)} must be a list of vq numbers, got ${fmt(vqs)}`);
          return;
        }
        // An empty list is the same as no list (QEMU: an empty QAPI list is NULL).
        const explicit = vqs !== undefined && vqs.length > 0;
        if (formRef === null) formRef = { name, explicit };
        else if (formRef.explicit !== explicit)
          add(
            "mixed-forms",
            `${P}either every entry lists vqs or none does: iothread ${fmt(name)} ${
              explicit ? "lists vqs" : "lists none"
            } but iothread ${fmt(formRef.name)} ${formRef.explicit ? "does" : "does not"}`,
          );
        if (!explicit) return;
        const seen = new Set<number>();
        for (const vq of vqs as unknown[]) {
          if (typeof vq !== "number" || !Number.isInteger(vq) || vq < 0) {
            add("bad-vq", `${P}vq ${fmt(vq)} of iothread ${fmt(name)} is not an integer >= 0`);
            continue;
          }
          if (nq > 0 && vq >= nq) {
            add("vq-out-of-range", `${P}vq ${vq} of iothread ${fmt(name)} is >= num-queues (${nq})`);
            continue;
          }
          if (seen.has(vq)) {
            add("vq-assigned-twice", `${P}vq ${vq} is listed twice for iothread ${fmt(name)}`);
            continue;
          }
          seen.add(vq);
          if (owner) {
            const o = owner[vq];
            if (o !== undefined)
              add(
                "vq-assigned-twice",
                `${P}vq ${vq} of iothread ${fmt(name)} is already assigned to iothread ${fmt(o)}`,
              );
            else owner[vq] = name;
          }
        }
      });
      const ref = formRef as { name: string; explicit: boolean } | null;
      if (ref !== null) mappingForm = ref.explicit ? "explicit" : "round-robin";
      if (mappingForm === "explicit" && owner) {
        const missing: number[] = [];
        owner.forEach((o, vq) => {
          if (o === undefined) missing.push(vq);
          else explicitAssign[vq] = mappingNames.indexOf(o);
        });
        if (missing.length > 0)
          add(
            "vq-unassigned",
            `${P}${missing.length === 1 ? "vq" : "vqs"} ${ranges(missing)} of num-queues (${nq}) ${
              missing.length === 1 ? "is" : "are"
            } not assigned to any iothread (when entries list vqs, every vq needs one)`,
          );
      }
    }
  }

  if (problems.length > 0) return { problems, resolved: null };

  // Valid: build the result.
  if (hasMapping) {
    if (mappingForm === "explicit") {
      const iothreadQueues: number[][] = mappingNames.map(() => []);
      explicitAssign.forEach((t, vq) => {
        iothreadQueues[t]!.push(vq);
      });
      return {
        problems,
        resolved: {
          iothreads: mappingNames,
          queueToIothread: explicitAssign,
          iothreadQueues,
          mode: "explicit",
        },
      };
    }
    return { problems, resolved: roundRobin(mappingNames, nq, "round-robin") };
  }
  if (hasCount) {
    const names = Array.from({ length: iothreads as number }, (_, i) => `iothread${i}`);
    return { problems, resolved: roundRobin(names, nq, "round-robin") };
  }
  return {
    problems,
    resolved: roundRobin([hasSingle ? (iothread as string) : DEFAULT_IOTHREAD], nq, "single"),
  };
}

/** Every problem found in `input` ([] when it is valid). Never throws. */
export function validateMapping(input: MappingInput): string[] {
  return check(input).problems.map((p) => p.message);
}

/** The vq -> IOThread assignment `input` describes. Throws MappingError listing every problem. */
export function resolveMapping(input: MappingInput): ResolvedMapping {
  const { problems, resolved } = check(input);
  if (resolved === null) {
    const first = problems[0]!;
    const message = problems.length === 1 ? first.message : problems.map((p) => p.message).join("; ");
    throw new MappingError(first.code, message, problems);
  }
  return resolved;
}

/**
 * A table for humans:
 *
 *   IOThread virtqueue mapping (round-robin): 4 vqs over 2 IOThreads
 *   vq  iothread
 *    0  a
 *    1  b
 *   ...
 *   iothread  vqs   count
 *   a         0, 2      2
 */
export function describeMapping(m: ResolvedMapping): string {
  const nq = m.queueToIothread.length;
  const lines: string[] = [];
  lines.push(
    `IOThread virtqueue mapping (${m.mode}): ${nq} ${nq === 1 ? "vq" : "vqs"} over ${m.iothreads.length} ${
      m.iothreads.length === 1 ? "IOThread" : "IOThreads"
    }`,
  );
  const vqW = Math.max(2, String(Math.max(0, nq - 1)).length);
  lines.push(`${"vq".padStart(vqW)}  iothread`);
  m.queueToIothread.forEach((t, vq) => {
    lines.push(`${String(vq).padStart(vqW)}  ${m.iothreads[t] ?? `?${t}`}`);
  });
  const rows = m.iothreads.map((name, i) => {
    const q = m.iothreadQueues[i] ?? [];
    return [name, q.length === 0 ? "(idle)" : ranges(q), String(q.length)] as const;
  });
  const nameW = Math.max("iothread".length, ...rows.map((r) => r[0].length));
  const vqsW = Math.max("vqs".length, ...rows.map((r) => r[1].length));
  const cntW = "count".length;
  lines.push(`${"iothread".padEnd(nameW)}  ${"vqs".padEnd(vqsW)}  ${"count".padStart(cntW)}`);
  for (const [name, vqs, count] of rows)
    lines.push(`${name.padEnd(nameW)}  ${vqs.padEnd(vqsW)}  ${count.padStart(cntW)}`);
  return lines.join("\n");
}
