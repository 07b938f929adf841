import { requireNative } from "./native.js";

/** An opened image file or block device. */
export interface BlockFile {
  fd: number;
  sizeBytes: number;
  /** Alignment unit for offsets/lengths (and buffers under O_DIRECT). */
  logicalBlockSize: number;
  physicalBlockSize: number;
  isBlockDevice: boolean;
  /** Whether the fd really is O_DIRECT (false when asked for it but the filesystem refused). */
  direct: boolean;
  /** Set when something differs from what was asked (O_DIRECT fallback). */
  note?: string;
}

export interface OpenBlockFileOptions {
  /** O_DIRECT (cache=none). */
  direct: boolean;
  readOnly: boolean;
}

/**
 * Open an image file or raw block device (O_CLOEXEC; O_DIRECT when `direct`).
 * Block devices: size from BLKGETSIZE64, logical/physical block size from
 * BLKSSZGET/BLKPBSZGET. Files: fstat; logical 512, or 4096 when the
 * filesystem refuses a 512-aligned O_DIRECT read; physical from st_blksize.
 * If the filesystem cannot do O_DIRECT at all the file is opened through the
 * page cache and `direct` is false (with `note`). Refuses an image whose size
 * is not a multiple of the logical block size. Errors name the path and the
 * errno text (`code` is the errno name). Close the fd with closeFd, or give
 * it to a NativeEngine with `ownsFd: true`.
 */
export function openBlockFile(path: string, opts: OpenBlockFileOptions): BlockFile {
  return requireNative("openBlockFile").openBlockFile(path, opts.direct, opts.readOnly);
}
