import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  describeMapping,
  MappingError,
  type MappingErrorCode,
  type MappingInput,
  resolveMapping,
  validateMapping,
  validateQueueSize,
} from "../dist/mapping.js";

/** resolveMapping's error, checked to be a MappingError. */
function failure(input: MappingInput): MappingError {
  try {
    resolveMapping(input);
  } catch (e) {
    expect(e).toBeInstanceOf(MappingError);
    return e as MappingError;
  }
  throw new Error(`expected ${JSON.stringify(input)} to be refused`);
}

function expectProblem(input: MappingInput, code: MappingErrorCode, message: RegExp | string): void {
  const err = failure(input);
  const p = err.problems.find((x) => x.code === code);
  expect(p, `no ${code} problem in ${JSON.stringify(err.problems)}`).toBeDefined();
  if (typeof message === "string") expect(p!.message).toBe(message);
  else expect(p!.message).toMatch(message);
  // validateMapping reports the same messages and never throws.
  expect(validateMapping(input)).toContain(p!.message);
  expect(err.message).toContain(p!.message);
}

describe("resolveMapping: the forms", () => {
  it("round-robin: entry k serves k, k+N, ...", () => {
    const m = resolveMapping({
      numQueues: 5,
      iothreadVqMapping: [{ iothread: "a" }, { iothread: "b" }],
    });
    expect(m.mode).toBe("round-robin");
    expect(m.iothreads).toEqual(["a", "b"]);
    expect(m.queueToIothread).toEqual([0, 1, 0, 1, 0]);
    expect(m.iothreadQueues).toEqual([
      [0, 2, 4],
      [1, 3],
    ]);
  });

  it("explicit: every entry lists its vqs; vqs come back ascending", () => {
    const m = resolveMapping({
      numQueues: 5,
      iothreadVqMapping: [
        { iothread: "b", vqs: [4, 0, 2] },
        { iothread: "a", vqs: [3, 1] },
      ],
    });
    expect(m.mode).toBe("explicit");
    expect(m.iothreads).toEqual(["b", "a"]);
    expect(m.queueToIothread).toEqual([0, 1, 0, 1, 0]);
    expect(m.iothreadQueues).toEqual([
      [0, 2, 4],
      [1, 3],
    ]);
  });

  it("explicit: one IOThread may serve every vq", () => {
    const m = resolveMapping({ numQueues: 3, iothreadVqMapping: [{ iothread: "x", vqs: [0, 1, 2] }] });
    expect(m).toEqual({
      iothreads: ["x"],
      queueToIothread: [0, 0, 0],
      iothreadQueues: [[0, 1, 2]],
      mode: "explicit",
    });
  });

  it("single iothread serves every vq", () => {
    const m = resolveMapping({ numQueues: 4, iothread: "io0", knownIothreads: ["io0"] });
    expect(m).toEqual({
      iothreads: ["io0"],
      queueToIothread: [0, 0, 0, 0],
      iothreadQueues: [[0, 1, 2, 3]],
      mode: "single",
    });
  });

  it("iothreads: n is round-robin over iothread0..iothread{n-1}", () => {
    const m = resolveMapping({ numQueues: 4, iothreads: 3 });
    expect(m.mode).toBe("round-robin");
    expect(m.iothreads).toEqual(["iothread0", "iothread1", "iothread2"]);
    expect(m.iothreadQueues).toEqual([[0, 3], [1], [2]]);
  });

  it("nothing given: one IOThread named iothread0 serves every vq", () => {
    const m = resolveMapping({ numQueues: 3 });
    expect(m).toEqual({
      iothreads: ["iothread0"],
      queueToIothread: [0, 0, 0],
      iothreadQueues: [[0, 1, 2]],
      mode: "single",
    });
    // knownIothreads does not apply to names the device makes up itself.
    expect(resolveMapping({ numQueues: 2, knownIothreads: [] }).iothreads).toEqual(["iothread0"]);
    expect(resolveMapping({ numQueues: 2, iothreads: 2, knownIothreads: [] }).iothreads).toEqual([
      "iothread0",
      "iothread1",
    ]);
  });

  it("round-robin with more IOThreads than queues leaves the extra ones idle (as QEMU does)", () => {
    const m = resolveMapping({
      numQueues: 2,
      iothreadVqMapping: [{ iothread: "a" }, { iothread: "b" }, { iothread: "c" }],
    });
    expect(m.iothreads).toEqual(["a", "b", "c"]);
    expect(m.iothreadQueues).toEqual([[0], [1], []]);
    expect(resolveMapping({ numQueues: 1, iothreads: 4 }).iothreadQueues).toEqual([[0], [], [], []]);
  });

  it("vqs: [] counts as no vqs (as in QEMU, where an empty list is an absent one)", () => {
    const m = resolveMapping({
      numQueues: 3,
      iothreadVqMapping: [
        { iothread: "a", vqs: [] },
        { iothread: "b", vqs: [] },
      ],
    });
    expect(m.mode).toBe("round-robin");
    expect(m.iothreadQueues).toEqual([[0, 2], [1]]);
    // ... so it cannot be mixed with explicit entries.
    expectProblem(
      {
        numQueues: 2,
        iothreadVqMapping: [
          { iothread: "a", vqs: [0, 1] },
          { iothread: "b", vqs: [] },
        ],
      },
      "mixed-forms",
      /iothread "b" lists none but iothread "a" does/,
    );
  });

  it("unknown names are accepted when knownIothreads is omitted", () => {
    expect(resolveMapping({ numQueues: 2, iothreadVqMapping: [{ iothread: "made-up" }] }).iothreads).toEqual([
      "made-up",
    ]);
  });
});

describe("resolveMapping: every rule has its error", () => {
  it("vq >= num-queues names the vq, the iothread and num-queues", () => {
    expectProblem(
      {
        numQueues: 4,
        iothreadVqMapping: [
          { iothread: "io0", vqs: [0, 1, 2, 3] },
          { iothread: "io1", vqs: [5] },
        ],
      },
      "vq-out-of-range",
      'iothread-vq-mapping: vq 5 of iothread "io1" is >= num-queues (4)',
    );
  });

  it("mixing round-robin and explicit entries", () => {
    expectProblem(
      {
        numQueues: 2,
        iothreadVqMapping: [{ iothread: "a" }, { iothread: "b", vqs: [0, 1] }],
      },
      "mixed-forms",
      'iothread-vq-mapping: either every entry lists vqs or none does: iothread "b" lists vqs but iothread "a" does not',
    );
  });

  it("unknown iothread when knownIothreads is given", () => {
    expectProblem(
      {
        numQueues: 2,
        iothreadVqMapping: [{ iothread: "a" }, { iothread: "zz" }],
        knownIothreads: ["a", "b"],
      },
      "unknown-iothread",
      'iothread-vq-mapping: iothread "zz" (entry 1) does not exist (known: "a", "b")',
    );
    expectProblem(
      { numQueues: 2, iothread: "zz", knownIothreads: [] },
      "unknown-iothread",
      'iothread "zz" does not exist (none known)',
    );
  });

  it("the same iothread twice", () => {
    expectProblem(
      { numQueues: 4, iothreadVqMapping: [{ iothread: "a" }, { iothread: "b" }, { iothread: "a" }] },
      "duplicate-iothread",
      'iothread-vq-mapping: iothread "a" is listed twice (entries 0 and 2)',
    );
  });

  it("a vq assigned twice: to two iothreads, or twice to one", () => {
    expectProblem(
      {
        numQueues: 3,
        iothreadVqMapping: [
          { iothread: "a", vqs: [0, 1] },
          { iothread: "b", vqs: [1, 2] },
        ],
      },
      "vq-assigned-twice",
      'iothread-vq-mapping: vq 1 of iothread "b" is already assigned to iothread "a"',
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [{ iothread: "a", vqs: [0, 1, 0] }] },
      "vq-assigned-twice",
      'iothread-vq-mapping: vq 0 is listed twice for iothread "a"',
    );
  });

  it("a vq left unassigned in the explicit form (listed as ranges)", () => {
    expectProblem(
      { numQueues: 4, iothreadVqMapping: [{ iothread: "a", vqs: [0] }] },
      "vq-unassigned",
      "iothread-vq-mapping: vqs 1-3 of num-queues (4) are not assigned to any iothread (when entries list vqs, every vq needs one)",
    );
    expectProblem(
      { numQueues: 8, iothreadVqMapping: [{ iothread: "a", vqs: [0, 2, 3, 4, 6] }] },
      "vq-unassigned",
      /vqs 1, 5, 7 of num-queues \(8\) are not/,
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [{ iothread: "a", vqs: [1] }] },
      "vq-unassigned",
      /: vq 0 of num-queues \(2\) is not assigned/,
    );
  });

  it("iothread together with a mapping, iothreads together with a mapping or iothread", () => {
    expectProblem(
      { numQueues: 2, iothread: "a", iothreadVqMapping: [{ iothread: "b" }] },
      "conflict",
      'iothread ("a") and iothread-vq-mapping cannot be set at the same time: give one of them',
    );
    expectProblem(
      { numQueues: 2, iothreads: 2, iothreadVqMapping: [{ iothread: "b" }] },
      "conflict",
      "iothreads (2) and iothread-vq-mapping cannot be set at the same time: give one of them",
    );
    expectProblem(
      { numQueues: 2, iothreads: 2, iothread: "a" },
      "conflict",
      'iothread ("a") and iothreads (2) cannot be set at the same time: give one of them',
    );
  });

  it("num-queues 0, non-integer, too large", () => {
    for (const nq of [0, -1, 1.5, Number.NaN, 1025, 65536]) {
      expectProblem(
        { numQueues: nq },
        "num-queues",
        `num-queues must be an integer from 1 to 1024 (QEMU's VIRTIO_QUEUE_MAX), got ${nq}`,
      );
    }
    expect(resolveMapping({ numQueues: 1024 }).queueToIothread).toHaveLength(1024);
  });

  it("empty mapping list", () => {
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [] },
      "empty-mapping",
      "iothread-vq-mapping: the list is empty: give at least one {iothread, vqs?} entry",
    );
  });

  it("negative and non-integer vqs", () => {
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [{ iothread: "a", vqs: [0, -1, 1] }] },
      "bad-vq",
      'iothread-vq-mapping: vq -1 of iothread "a" is not an integer >= 0',
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [{ iothread: "a", vqs: [0, 0.5, 1] }] },
      "bad-vq",
      'iothread-vq-mapping: vq 0.5 of iothread "a" is not an integer >= 0',
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [{ iothread: "a", vqs: [0, "1" as unknown as number] }] },
      "bad-vq",
      'iothread-vq-mapping: vq "1" of iothread "a" is not an integer >= 0',
    );
  });

  it("iothreads: n with n < 1, non-integer or too large names the option and allowed values", () => {
    for (const n of [0, -2, 2.5, 1025]) {
      expectProblem(
        { numQueues: 2, iothreads: n },
        "iothreads",
        `iothreads must be an integer from 1 to 1024 (the number of IOThreads, named iothread0, iothread1, ...), got ${n}`,
      );
    }
  });

  it("malformed entries and names", () => {
    expectProblem(
      { numQueues: 2, iothread: "" },
      "bad-entry",
      'iothread must be a non-empty IOThread name, got ""',
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [{ iothread: "" }] },
      "bad-entry",
      'iothread-vq-mapping: entry 0 needs a non-empty iothread name, got ""',
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [null as unknown as { iothread: string }] },
      "bad-entry",
      "iothread-vq-mapping: entry 0 must be an object {iothread, vqs?}, got null",
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: [{ iothread: "a", vqs: 3 as unknown as number[] }] },
      "bad-entry",
      'iothread-vq-mapping: vqs of iothread "a" must be a list of vq numbers, got 3',
    );
    expectProblem(
      { numQueues: 2, iothreadVqMapping: {} as unknown as [] },
      "bad-entry",
      "iothread-vq-mapping: must be a list of {iothread, vqs?} entries, got {}",
    );
  });

  it("reports every problem at once; the error's code is the first one's", () => {
    const input: MappingInput = {
      numQueues: 4,
      iothreadVqMapping: [{ iothread: "a", vqs: [0, 9] }, { iothread: "a", vqs: [0] }, { iothread: "c" }],
      knownIothreads: ["a"],
    };
    const problems = validateMapping(input);
    expect(problems.length).toBeGreaterThanOrEqual(5);
    const err = failure(input);
    expect(err.problems.map((p) => p.code)).toEqual([
      "vq-out-of-range",
      "duplicate-iothread",
      "vq-assigned-twice",
      "unknown-iothread",
      "mixed-forms",
      "vq-unassigned",
    ]);
    expect(err.code).toBe("vq-out-of-range");
    expect(err.message.split("; ")).toEqual(problems);
  });

  it("validateMapping never throws, even on garbage", () => {
    expect(validateMapping(null as unknown as MappingInput)).toEqual([
      "mapping input must be an object, got null",
    ]);
    expect(validateMapping({ numQueues: "4" } as unknown as MappingInput)).toHaveLength(1);
    expect(validateMapping({ numQueues: 2, knownIothreads: "a" } as unknown as MappingInput)).toHaveLength(1);
  });
});

describe("validateQueueSize", () => {
  it("accepts powers of two from 4 to 1024", () => {
    for (let s = 4; s <= 1024; s *= 2) expect(() => validateQueueSize(s)).not.toThrow();
  });

  it("refuses the rest, naming queue_size and the allowed values", () => {
    const allowed = "allowed values are powers of two from 4 to 1024 (4, 8, 16, 32, 64, 128, 256, 512, 1024)";
    const cases: [number, string][] = [
      [0, "must be > 2"],
      [2, "must be > 2"],
      [3, "not a power of two"],
      [1, "must be > 2"],
      [100, "not a power of two"],
      [2048, "must be <= 1024"],
      [256.5, "not an integer"],
    ];
    for (const [s, why] of cases) {
      let err: unknown;
      try {
        validateQueueSize(s);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MappingError);
      expect((err as MappingError).code).toBe("queue-size");
      expect((err as MappingError).message).toBe(`invalid queue_size ${s} (${why}): ${allowed}`);
    }
  });
});

describe("round-robin tables", () => {
  it("numQueues 1..16 x IOThreads 1..8: entry k serves exactly {q : q % N == k}", () => {
    for (let nq = 1; nq <= 16; nq++) {
      for (let n = 1; n <= 8; n++) {
        const viaList = resolveMapping({
          numQueues: nq,
          iothreadVqMapping: Array.from({ length: n }, (_, k) => ({ iothread: `t${k}` })),
        });
        const viaCount = resolveMapping({ numQueues: nq, iothreads: n });
        for (const m of [viaList, viaCount]) {
          expect(m.mode).toBe("round-robin");
          expect(m.iothreads).toHaveLength(n);
          for (let k = 0; k < n; k++) {
            const want: number[] = [];
            for (let q = 0; q < nq; q++) if (q % n === k) want.push(q);
            expect(m.iothreadQueues[k]).toEqual(want);
          }
          for (let q = 0; q < nq; q++) expect(m.queueToIothread[q]).toBe(q % n);
        }
        expect(viaCount.iothreads).toEqual(Array.from({ length: n }, (_, k) => `iothread${k}`));
      }
    }
  });
});

describe("describeMapping", () => {
  it("prints one row per vq and a per-IOThread summary", () => {
    const text = describeMapping(
      resolveMapping({
        numQueues: 5,
        iothreadVqMapping: [{ iothread: "a" }, { iothread: "bb" }, { iothread: "c" }],
      }),
    );
    expect(text).toBe(
      [
        "IOThread virtqueue mapping (round-robin): 5 vqs over 3 IOThreads",
        "vq  iothread",
        " 0  a",
        " 1  bb",
        " 2  c",
        " 3  a",
        " 4  bb",
        "iothread  vqs   count",
        "a         0, 3      2",
        "bb        1, 4      2",
        "c         2         1",
      ].join("\n"),
    );
  });

  it("shows ranges and idle IOThreads", () => {
    const text = describeMapping(
      resolveMapping({
        numQueues: 12,
        iothreadVqMapping: [
          { iothread: "x", vqs: [0, 1, 2, 3, 4, 5, 6, 7] },
          { iothread: "y", vqs: [8, 9, 10, 11] },
        ],
      }),
    );
    expect(text).toContain("explicit): 12 vqs over 2 IOThreads");
    expect(text).toContain("x         0-7       8");
    expect(text).toContain("y         8-11      4");
    expect(text).toContain("\n11  y\n");
    expect(describeMapping(resolveMapping({ numQueues: 1, iothreads: 2 }))).toContain(
      "iothread1  (idle)      0",
    );
  });
});

describe("properties", () => {
  /** A valid input: a random partition of the vqs (explicit), or a round-robin list, or the shorthands. */
  const validInput: fc.Arbitrary<MappingInput> = fc
    .record({
      numQueues: fc.integer({ min: 1, max: 64 }),
      threads: fc.integer({ min: 1, max: 10 }),
      form: fc.constantFrom("explicit", "round-robin", "iothreads", "iothread", "default"),
      seed: fc.array(fc.nat(), { minLength: 64, maxLength: 64 }),
      known: fc.boolean(),
    })
    .map(({ numQueues, threads, form, seed, known }) => {
      const names = Array.from({ length: threads }, (_, i) => `io-${i}`);
      const knownIothreads = known ? [...names, "spare"] : undefined;
      const base = knownIothreads ? { knownIothreads } : {};
      switch (form) {
        case "explicit": {
          // Every IOThread needs at least one vq (an empty list means "no vqs").
          const n = Math.min(threads, numQueues);
          const vqs: number[][] = Array.from({ length: n }, () => []);
          const order = Array.from({ length: numQueues }, (_, q) => q).sort(
            (a, b) => seed[a % 64]! - seed[b % 64]! || a - b,
          );
          order.forEach((q, i) => {
            vqs[i < n ? i : seed[i % 64]! % n]!.push(q);
          });
          return {
            numQueues,
            iothreadVqMapping: vqs.map((v, i) => ({ iothread: names[i]!, vqs: v })),
            ...base,
          };
        }
        case "round-robin":
          return { numQueues, iothreadVqMapping: names.map((iothread) => ({ iothread })), ...base };
        case "iothreads":
          return { numQueues, iothreads: threads, ...base };
        case "iothread":
          return { numQueues, iothread: names[0]!, ...base };
        default:
          return { numQueues, ...base };
      }
    });

  it("for valid inputs every vq is served exactly once", () => {
    fc.assert(
      fc.property(validInput, (input) => {
        expect(validateMapping(input)).toEqual([]);
        const m = resolveMapping(input);
        expect(m.queueToIothread).toHaveLength(input.numQueues);
        expect(m.iothreadQueues).toHaveLength(m.iothreads.length);
        expect(new Set(m.iothreads).size).toBe(m.iothreads.length);
        const count = new Array<number>(input.numQueues).fill(0);
        m.iothreadQueues.forEach((qs, t) => {
          expect([...qs].sort((a, b) => a - b)).toEqual(qs);
          for (const q of qs) {
            count[q]!++;
            expect(m.queueToIothread[q]).toBe(t);
          }
        });
        expect(count.every((c) => c === 1)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  /** Anything shaped roughly like an input, mostly invalid. */
  const anyInput: fc.Arbitrary<MappingInput> = fc.record(
    {
      numQueues: fc.oneof(fc.integer({ min: -2, max: 12 }), fc.constantFrom(0.5, 1025)),
      iothread: fc.constantFrom("a", "b", "", "zz"),
      iothreads: fc.oneof(fc.integer({ min: -1, max: 6 }), fc.constant(1.5)),
      iothreadVqMapping: fc.array(
        fc.record(
          {
            iothread: fc.constantFrom("a", "b", "c", "", "zz"),
            vqs: fc.array(fc.oneof(fc.integer({ min: -1, max: 12 }), fc.constant(0.5)), { maxLength: 6 }),
          },
          { requiredKeys: ["iothread"] },
        ),
        { maxLength: 4 },
      ),
      knownIothreads: fc.constantFrom(["a", "b", "c"], ["a"], []),
    },
    { requiredKeys: ["numQueues"] },
  );

  it("validateMapping returns [] iff resolveMapping does not throw", () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const problems = validateMapping(input);
        let threw: unknown = null;
        try {
          resolveMapping(input);
        } catch (e) {
          threw = e;
        }
        if (problems.length === 0) expect(threw).toBeNull();
        else {
          expect(threw).toBeInstanceOf(MappingError);
          expect((threw as MappingError).problems.map((p) => p.message)).toEqual(problems);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
