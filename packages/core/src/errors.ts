/**
 * Typed errors for everything a guest (or a VMM) can get wrong. A device
 * never lets one of these escape into its caller's stack: it catches it and
 * moves to DEVICE_NEEDS_RESET, keeping the error as the reason.
 */

/** Why a virtqueue stopped trusting the driver. One code per malformed-input class. */
export type VirtqueueErrorCode =
  | "AVAIL_IDX_JUMP" // avail idx moved by more than queue size since last seen
  | "HEAD_OUT_OF_RANGE" // head index >= queue size
  | "NEXT_OUT_OF_RANGE" // next >= queue size (or >= indirect table length)
  | "CHAIN_TOO_LONG" // loop, or chain longer than queue size / indirect table
  | "TOO_MANY_INFLIGHT" // more buffers in flight than queue size
  | "HEAD_IN_FLIGHT" // a head reused while still in flight
  | "INDIRECT_BAD_LENGTH" // indirect table length 0 or not a multiple of 16
  | "INDIRECT_NESTED" // indirect descriptor inside an indirect table
  | "INDIRECT_WITH_NEXT" // INDIRECT together with NEXT
  | "INDIRECT_NOT_NEGOTIATED" // INDIRECT used without VIRTIO_F_RING_INDIRECT_DESC
  | "INDIRECT_UNMAPPABLE" // indirect table outside guest memory
  | "READABLE_AFTER_WRITABLE" // device-readable descriptor after a writable one
  | "ZERO_LENGTH" // zero-length buffer
  | "ADDRESS_OUT_OF_RANGE" // buffer outside guest memory
  | "ADDRESS_OVERFLOW" // addr + len overflows 64 bits
  | "CHAIN_LENGTH_OVERFLOW" // total chain length over 2^32
  | "RING_MISALIGNED" // desc 16, avail 2, used 4
  | "RING_OUT_OF_RANGE" // a ring outside guest memory
  | "BAD_QUEUE_SIZE" // 0, not a power of two, > 32768
  | "QUEUE_NOT_READY" // used before ready / DRIVER_OK
  | "USED_UNKNOWN_HEAD"; // device tried to complete a head not in flight (device bug)

export class VirtqueueError extends Error {
  override readonly name = "VirtqueueError";
  constructor(
    readonly code: VirtqueueErrorCode,
    message: string,
    readonly queueIndex = -1,
  ) {
    super(`${code}: ${message}`);
  }
}

/** A guest-physical access outside every region, or one that wraps. */
export class GuestMemoryError extends Error {
  override readonly name = "GuestMemoryError";
  constructor(
    message: string,
    readonly gpa: number,
    readonly length: number,
  ) {
    super(message);
  }
}

/** A virtio-blk request the parser could not accept as a request at all
 *  (as opposed to one that completes with IOERR/UNSUPP). */
export class BlkProtocolError extends Error {
  override readonly name = "BlkProtocolError";
}
