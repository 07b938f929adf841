/**
 * The front-end's guest memory, mapped here (SET_MEM_TABLE).
 *
 *   region i: guest phys [gpa, gpa+size)  <->  front-end user [ua, ua+size)
 *             backed by fd_i at file offset mmap_offset
 *
 *   this process:  mapFd(fd_i, size, mmap_offset) -> SharedArrayBuffer (MAP_SHARED)
 *   GuestMemory:   regions keyed by GUEST PHYSICAL address: descriptors carry GPAs
 *   ring addresses (SET_VRING_ADDR) are front-end USER addresses: uaToGpa()
 *
 * The fds are closed once mapped (the mapping keeps the memory). The mappings
 * are unmapped when the last SharedArrayBuffer over them is garbage collected
 * (main thread and IOThreads): an explicit munmap under live views would crash.
 */
import { fstatSync } from "node:fs";
import { mapFd } from "@vblk/backend-libaio";
import { GuestMemory } from "@vblk/core";
import { type MemRegionDesc, toSafeNumber, VhostUserProtocolError } from "./protocol.js";

export interface MappedRegion {
  gpa: number;
  size: number;
  userAddr: bigint;
  mmapOffset: number;
  buffer: SharedArrayBuffer;
}

export class MemoryTable {
  readonly regions: readonly MappedRegion[];
  readonly guest: GuestMemory;

  private constructor(regions: MappedRegion[]) {
    this.regions = regions;
    this.guest = new GuestMemory(regions.map((r) => ({ gpa: r.gpa, size: r.size, buffer: r.buffer })));
  }

  /**
   * Map every region (fds[i] backs descs[i]). Throws VhostUserProtocolError
   * for a table that makes no sense (sizes, overlaps, addresses >= 2^53) and
   * the mmap error otherwise. The caller closes the fds either way.
   */
  static map(descs: MemRegionDesc[], fds: number[]): MemoryTable {
    if (descs.length !== fds.length)
      throw new VhostUserProtocolError(`SET_MEM_TABLE: ${descs.length} regions but ${fds.length} fds`);
    const regions: MappedRegion[] = [];
    for (let i = 0; i < descs.length; i++) {
      const d = descs[i]!;
      const gpa = toSafeNumber(`region ${i} guest address`, d.guestPhysAddr);
      const size = toSafeNumber(`region ${i} size`, d.size);
      const mmapOffset = toSafeNumber(`region ${i} mmap offset`, d.mmapOffset);
      if (size === 0) throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} has size 0`);
      if (gpa + size > Number.MAX_SAFE_INTEGER)
        throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} runs past 2^53`);
      if (d.userAddr + d.size > 1n << 64n)
        throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} user range overflows 64 bits`);
      for (const r of regions)
        if (d.userAddr < r.userAddr + BigInt(r.size) && r.userAddr < d.userAddr + d.size)
          throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} overlaps another in user addresses`);
      // Touching a mapping past the end of its file is SIGBUS: refuse that up front.
      const st = fstatSync(fds[i]!);
      if (st.isFile() && mmapOffset + size > st.size)
        throw new VhostUserProtocolError(
          `SET_MEM_TABLE: region ${i} [offset 0x${mmapOffset.toString(16)}, +0x${size.toString(16)}) runs past the end of its file (0x${st.size.toString(16)} bytes)`,
        );
      const buffer = mapFd(fds[i]!, size, mmapOffset, false);
      regions.push({ gpa, size, userAddr: d.userAddr, mmapOffset, buffer });
    }
    try {
      return new MemoryTable(regions);
    } catch (e) {
      throw new VhostUserProtocolError(`SET_MEM_TABLE: ${(e as Error).message}`);
    }
  }

  /**
   * Front-end user address -> guest physical address, when [ua, ua+len) lies
   * inside one region; -1 otherwise.
   */
  uaToGpa(ua: bigint, len: number): number {
    const l = BigInt(len);
    for (const r of this.regions) {
      if (ua >= r.userAddr && ua + l <= r.userAddr + BigInt(r.size)) return r.gpa + Number(ua - r.userAddr);
    }
    return -1;
  }

  describe(): string {
    return this.regions
      .map(
        (r) =>
          `gpa 0x${r.gpa.toString(16)} size 0x${r.size.toString(16)} ua 0x${r.userAddr.toString(16)} off 0x${r.mmapOffset.toString(16)}`,
      )
      .join("; ");
  }
}
