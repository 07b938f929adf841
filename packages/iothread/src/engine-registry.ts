/**
 * Builds an engine inside an IOThread from its serializable spec. Packages
 * are loaded lazily so a thread that runs the null engine never loads the
 * native addon.
 */
import { type BlockEngine, createBuiltinEngine, type EngineContext, type EngineSpec } from "@vblk/core";

export async function createEngine(spec: EngineSpec, ctx: EngineContext): Promise<BlockEngine> {
  switch (spec.kind) {
    case "null":
    case "memory":
      return createBuiltinEngine(spec, ctx);
    case "threads": {
      const m = await import("./threads-engine.js");
      return m.createThreadsEngine(spec, ctx);
    }
    case "io_uring":
    case "libaio": {
      const m = await import("./native-engine.js");
      return m.createNativeBlockEngine(spec, ctx);
    }
    case "fault": {
      // Tests: fault injection around another engine (fault-engine.ts).
      const m = await import("./fault-engine.js");
      return m.createFaultEngine(spec, ctx, createEngine);
    }
  }
}
