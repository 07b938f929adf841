/**
 * CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as fio's
 * verify=crc32c and iSCSI/ext4 use. Table driven, slicing by 4.
 * crc32c("123456789") = 0xE3069283.
 */
const POLY = 0x82f63b78;

const T = new Uint32Array(4 * 256);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[i] = c >>> 0;
}
for (let i = 0; i < 256; i++) {
  for (let t = 1; t < 4; t++) {
    const prev = T[(t - 1) * 256 + i]!;
    T[t * 256 + i] = (T[prev & 0xff]! ^ (prev >>> 8)) >>> 0;
  }
}

/** Continue a CRC-32C over data[start, end) (crc = 0 to start a new one). */
export function crc32c(data: Uint8Array, crc = 0, start = 0, end = data.length): number {
  let c = ~crc >>> 0;
  let i = start;
  const end4 = start + ((end - start) & ~3);
  while (i < end4) {
    c ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    c = T[768 + (c & 0xff)]! ^ T[512 + ((c >>> 8) & 0xff)]! ^ T[256 + ((c >>> 16) & 0xff)]! ^ T[c >>> 24]!;
    i += 4;
  }
  while (i < end) c = T[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
