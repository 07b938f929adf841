/**
 * virtio-blk constants (virtio 1.2, 5.2): feature bits, request types,
 * status values and flags.
 */

/** virtio-blk feature bits (bit numbers). */
export const BlkFeature = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
  DISCARD: 13,
  WRITE_ZEROES: 14,
  LIFETIME: 15,
  SECURE_ERASE: 16,
  ZONED: 17,
} as const;

/** Request types (virtio_blk_outhdr.type). */
export const BlkType = {
  IN: 0,
  OUT: 1,
  FLUSH: 4,
  GET_ID: 8,
  GET_LIFETIME: 10,
  DISCARD: 11,
  WRITE_ZEROES: 13,
  SECURE_ERASE: 14,
} as const;

/** Status byte values written by the device. */
export const BlkStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
} as const;

/** virtio_blk_discard_write_zeroes.flags */
export const BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

/** The sector unit of the protocol, whatever the logical block size. */
export const SECTOR_SHIFT = 9;
export const SECTOR_SIZE = 512;
/** GET_ID answers with a 20-byte serial, NUL padded. */
export const BLK_ID_BYTES = 20;
/** virtio_blk_outhdr is 16 bytes: le32 type, le32 reserved (ioprio), le64 sector. */
export const BLK_OUTHDR_SIZE = 16;
/** One virtio_blk_discard_write_zeroes segment: le64 sector, le32 num_sectors, le32 flags. */
export const BLK_DWZ_SEGMENT_SIZE = 16;
