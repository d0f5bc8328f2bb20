// Archive-wide bounds, as pure functions over the central directory: entries whose bytes overlap (the "better zip
// bomb": many records pointing at the same or nested local data, which Info-ZIP refuses too), inflation measured
// across the whole archive, and the directory's raw records (count cap, zip64 extra fields that lack a field the
// record defers to them), walked before any record object is built.

import type { SizeColumn } from './central-directory.ts';

/**
 * Two entries (their indices) whose local header and data overlap, or undefined; entry i is at `offsets[i]` with
 * `compressed[i]` bytes of data. Each entry occupies at least its 30-byte local header and its compressed data from
 * its offset (a lower bound: names, extra fields and data descriptors only add), so any overlap found is real.
 */
export function findOverlap(offsets: SizeColumn, compressed: SizeColumn): [number, number] | undefined {
  const order = new Uint32Array(offsets.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => offsets[a]! - offsets[b]! || a - b);
  for (let k = 1; k < order.length; k++) {
    const prev = order[k - 1]!;
    const next = order[k]!;
    if (offsets[next]! < offsets[prev]! + 30 + compressed[prev]!) return [prev, next];
  }
  return undefined;
}

/** Entries whose inflated total counts across the archive: a spread-out bomb has no single high-ratio entry. */
const ARCHIVE_RATIO_THRESHOLD = 10 * 1024 * 1024;

/** True when `inflated` bytes out of `compressed` (the whole selection) pass max_ratio, past the threshold. */
export function archiveRatioExceeded(inflated: number, compressed: number, maxRatio: number): boolean {
  return maxRatio > 0 && inflated > ARCHIVE_RATIO_THRESHOLD && inflated / Math.max(compressed, 1) > maxRatio;
}

const CD_SIG = 0x02014b50;
const U32_MAX = 0xffffffff;

/**
 * For one raw central-directory record (46 fixed bytes, name, extra, comment): why its zip64 extra field is damaged,
 * or undefined. A size or offset of 0xffffffff defers to the zip64 extra field (id 1), which must then hold an
 * 8-byte value for each deferred field, in the order uncompressed size, compressed size, local header offset.
 */
function zip64ExtraProblem(record: Buffer): string | undefined {
  const deferred = [
    record.readUInt32LE(24) === U32_MAX && 'uncompressed size',
    record.readUInt32LE(20) === U32_MAX && 'compressed size',
    record.readUInt32LE(42) === U32_MAX && 'local header offset',
  ].filter((f): f is string => f !== false);
  if (deferred.length === 0) return undefined;
  const nameLength = record.readUInt16LE(28);
  let p = 46 + nameLength;
  const end = p + record.readUInt16LE(30);
  while (p + 4 <= end) {
    const id = record.readUInt16LE(p);
    const size = record.readUInt16LE(p + 2);
    if (p + 4 + size > end) return 'zip64 extra field overruns the extra data';
    if (id === 1) return size < 8 * deferred.length ? `zip64 extra field lacks the ${deferred[Math.floor(size / 8)]}` : undefined;
    p += 4 + size;
  }
  return `zip64 extra field missing: the ${deferred[0]} is 0xffffffff`;
}

/** Reads `length` bytes at `offset` (fewer only at the end). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

export class DirectoryProblem extends Error {
  constructor(
    message: string,
    readonly entry?: string,
    readonly kind: 'damaged' | 'limit' = 'damaged',
  ) {
    super(message);
  }
}

const SCAN_CHUNK = 1024 * 1024;

/**
 * Walks the raw records in [start, end) and returns how many there are (and their names' bytes): every record the directory holds, whatever
 * the end record's count says (a 16-bit count wraps past 65,535 without zip64). Throws DirectoryProblem when bytes
 * that are not a record remain, a record overruns `end`, a zip64 extra field is damaged, or there are more than
 * `maxRecords` (checked as it goes, before anything is parsed or kept).
 */
export async function scanDirectory(
  readAt: ReadAt,
  start: number,
  end: number,
  maxRecords: number,
): Promise<{ count: number; nameBytes: number }> {
  let buf: Buffer = Buffer.alloc(0);
  let bufStart = start;
  const have = async (from: number, length: number): Promise<boolean> => {
    if (from + length > end) return false;
    if (from - bufStart + length <= buf.length) return true;
    // Read again from `from` rather than appending to what is held: no copy (the tail's bytes come as views), and
    // no chunk-sized garbage per chunk.
    buf = buf.subarray(from - bufStart);
    bufStart = from;
    while (buf.length < length) {
      const chunk = await readAt(bufStart, Math.min(Math.max(SCAN_CHUNK, length), end - bufStart));
      if (chunk.length <= buf.length) return false;
      buf = chunk;
    }
    return true;
  };
  let count = 0;
  let nameBytes = 0;
  for (let pos = start; pos < end; ) {
    if (!(await have(pos, 46)) || buf.readUInt32LE(pos - bufStart) !== CD_SIG) {
      throw new DirectoryProblem(`${end - pos} bytes after directory record ${count} are not a directory record`);
    }
    const at = pos - bufStart;
    const length = 46 + buf.readUInt16LE(at + 28) + buf.readUInt16LE(at + 30) + buf.readUInt16LE(at + 32);
    if (!(await have(pos, length))) throw new DirectoryProblem(`directory record ${count + 1} overruns the end of the directory`);
    count += 1;
    if (count > maxRecords) throw new DirectoryProblem(`more than ${maxRecords}`, undefined, 'limit');
    const record = buf.subarray(pos - bufStart, pos - bufStart + length);
    const problem = zip64ExtraProblem(record);
    if (problem) throw new DirectoryProblem(problem, record.subarray(46, 46 + record.readUInt16LE(28)).toString('utf8'));
    nameBytes += record.readUInt16LE(28);
    pos += length;
  }
  return { count, nameBytes };
}
