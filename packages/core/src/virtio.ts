/**
 * Generic virtio constants (virtio 1.2, section 2 and 6): device status bits
 * and the transport-independent feature bits.
 */

/** Device status field bits (virtio 1.2, 2.1). */
export const Status = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 0x40,
  FAILED: 0x80,
} as const;

/** Reserved (transport/ring) feature bits, as bit numbers (virtio 1.2, 6). */
export const VirtioFeature = {
  RING_INDIRECT_DESC: 28,
  RING_EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
} as const;

/** Device IDs (virtio 1.2, 5). */
export const DeviceId = { BLOCK: 2 } as const;

/** Feature sets are 64-bit: kept as bigint off the hot path. */
export type FeatureSet = bigint;

export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

export function hasFeature(set: FeatureSet, bit: number): boolean {
  return (set & featureBit(bit)) !== 0n;
}

export function featuresOf(...bits: number[]): FeatureSet {
  let s = 0n;
  for (const b of bits) s |= featureBit(b);
  return s;
}
