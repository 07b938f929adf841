/** Doubles per request record in {@link NativeEngine.sq}. */
export const SQ_STRIDE = 8;
/** Doubles per iovec in {@link NativeEngine.iov}: region index, byte offset in region, byte length. */
export const IOV_STRIDE = 3;

/** Read into the request's iovecs. */
export const OP_READ = 0;
/** Write from the request's iovecs. */
export const OP_WRITE = 1;
/** fdatasync, ordered after every write submitted before it on the same engine. */
export const OP_FLUSH = 2;
/** Deallocate [offset, offset+length): files punch a hole, block devices BLKDISCARD. */
export const OP_DISCARD = 3;
/** Zero [offset, offset+length) keeping it allocated: files ZERO_RANGE, block devices BLKZEROOUT. */
export const OP_WRITE_ZEROES = 4;
/** Zero [offset, offset+length); deallocating is allowed (files punch a hole). */
export const OP_WRITE_ZEROES_UNMAP = 5;

/** Offsets of the fields inside one sq record. */
export const SQ_OP = 0;
export const SQ_TAG = 1;
export const SQ_OFFSET = 2;
export const SQ_LENGTH = 3;
export const SQ_IOV_COUNT = 4;
export const SQ_IOV_FIRST = 5;
