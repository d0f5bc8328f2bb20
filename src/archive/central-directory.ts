// Reading a zip's central directory, from a local file or from a tail fetched with a suffix Range request. Records are
// parsed here (parseRecords: the fixed 46-byte header, the name, the zip64 extra field; nothing else is kept) straight
// from the directory's bytes, in slices. Whatever this fast parser does not accept (a damaged or unusual directory) is
// parsed again by unzipper (Open.custom over our own byte source, in batches: see parseWithUnzipper), which then decides:
// its records, or its error. unzipper's record objects are heavy (about 1 KB each: pathBuffer, parsed extra fields, Date
// objects, two closures that pin the source) and it costs about 60 us per record, so it is the fallback, not the rule.
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ArchiveError, RelayError } from '../runtime/errors.ts';
import { DirectoryProblem, findOverlap, scanDirectory } from './bounds.ts';

/** The central-directory fields extraction needs; nothing else is kept per entry. */
export interface LeanRecord {
  path: string;
  versionMadeBy: number;
  flags: number;
  compressionMethod: number;
  lastModifiedTime: number;
  lastModifiedDate: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  externalFileAttributes: number;
  offsetToLocalFileHeader: number;
}

/** A column of sizes or offsets: 32-bit, or doubles once a value needs them (Directory.add). */
export type SizeColumn = Uint32Array | Float64Array;
const wide = (c: SizeColumn): Float64Array => (c instanceof Float64Array ? c : Float64Array.from(c));

/**
 * The central directory, struct of arrays: the LeanRecord fields of every record in typed arrays, and the names' bytes
 * in one Buffer (decoded when asked for). About 36 bytes per record plus its name (48 where a size or offset passes
 * 2^32), against some 200 for an object per record with its path string; record(i) builds the LeanRecord of one
 * record when needed.
 */
export class Directory {
  length = 0;
  readonly versionMadeBy: Uint16Array;
  readonly flags: Uint16Array;
  readonly compressionMethod: Uint16Array;
  readonly lastModifiedTime: Uint16Array;
  readonly lastModifiedDate: Uint16Array;
  readonly crc32: Uint32Array;
  readonly externalFileAttributes: Uint32Array;
  /**
   * Sizes and offsets may pass 2^32 (zip64): a column is 32-bit until a value needs more, then doubles (exact up to
   * 2^53). On 83,000 records the three 32-bit columns save 1 MB.
   */
  compressedSize: SizeColumn;
  uncompressedSize: SizeColumn;
  offsetToLocalFileHeader: SizeColumn;
  private readonly nameStart: Uint32Array;
  private readonly nameLength: Uint16Array;
  private names: Buffer;
  private nameBytes = 0;

  /** Room for `capacity` records whose names take about `nameBytes` bytes (grown when they take more). */
  constructor(
    readonly capacity: number,
    nameBytes = capacity * 32,
  ) {
    this.versionMadeBy = new Uint16Array(capacity);
    this.flags = new Uint16Array(capacity);
    this.compressionMethod = new Uint16Array(capacity);
    this.lastModifiedTime = new Uint16Array(capacity);
    this.lastModifiedDate = new Uint16Array(capacity);
    this.crc32 = new Uint32Array(capacity);
    this.externalFileAttributes = new Uint32Array(capacity);
    this.compressedSize = new Uint32Array(capacity);
    this.uncompressedSize = new Uint32Array(capacity);
    this.offsetToLocalFileHeader = new Uint32Array(capacity);
    this.nameStart = new Uint32Array(capacity);
    this.nameLength = new Uint16Array(capacity);
    this.names = Buffer.allocUnsafe(Math.max(nameBytes, 0));
  }

  static fromRecords(records: readonly LeanRecord[]): Directory {
    const dir = new Directory(
      records.length,
      records.reduce((n, r) => n + Buffer.byteLength(r.path), 0),
    );
    for (const r of records) dir.add(r, Buffer.from(r.path, 'utf8'));
    return dir;
  }

  private room(bytes: number): void {
    if (this.nameBytes + bytes <= this.names.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.names.length * 2, this.nameBytes + bytes));
    this.names.copy(grown, 0, 0, this.nameBytes);
    this.names = grown;
  }

  /** Appends a record: its fields, and its name as bytes (`name`, or `from`'s bytes [start, end)). */
  add(r: Omit<LeanRecord, 'path'>, name: Buffer, start = 0, end = name.length): void {
    const i = this.length;
    if (i >= this.capacity) throw new Error(`more than ${this.capacity} records`);
    if (end - start > 0xffff) throw new Error('name too long');
    this.room(end - start);
    name.copy(this.names, this.nameBytes, start, end);
    this.nameStart[i] = this.nameBytes;
    this.nameLength[i] = end - start;
    this.nameBytes += end - start;
    this.versionMadeBy[i] = r.versionMadeBy;
    this.flags[i] = r.flags;
    this.compressionMethod[i] = r.compressionMethod;
    this.lastModifiedTime[i] = r.lastModifiedTime;
    this.lastModifiedDate[i] = r.lastModifiedDate;
    this.crc32[i] = r.crc32;
    this.externalFileAttributes[i] = r.externalFileAttributes;
    // Anything a 32-bit column would not hold exactly (past 2^32, or a fallback parser's odd value) widens it.
    if (r.compressedSize >>> 0 !== r.compressedSize) this.compressedSize = wide(this.compressedSize);
    if (r.uncompressedSize >>> 0 !== r.uncompressedSize) this.uncompressedSize = wide(this.uncompressedSize);
    if (r.offsetToLocalFileHeader >>> 0 !== r.offsetToLocalFileHeader) this.offsetToLocalFileHeader = wide(this.offsetToLocalFileHeader);
    this.compressedSize[i] = r.compressedSize;
    this.uncompressedSize[i] = r.uncompressedSize;
    this.offsetToLocalFileHeader[i] = r.offsetToLocalFileHeader;
    this.length = i + 1;
  }

  /** The record's name, decoded as the parsers decode it (UTF-8; the unzipper fallback's names are stored as UTF-8). */
  path(i: number): string {
    const at = this.nameStart[i]!;
    return this.names.toString('utf8', at, at + this.nameLength[i]!);
  }

  /** Record i; `path`: its name when the caller holds it decoded already. */
  record(i: number, path = this.path(i)): LeanRecord {
    return {
      path,
      versionMadeBy: this.versionMadeBy[i]!,
      flags: this.flags[i]!,
      compressionMethod: this.compressionMethod[i]!,
      lastModifiedTime: this.lastModifiedTime[i]!,
      lastModifiedDate: this.lastModifiedDate[i]!,
      crc32: this.crc32[i]!,
      compressedSize: this.compressedSize[i]!,
      uncompressedSize: this.uncompressedSize[i]!,
      externalFileAttributes: this.externalFileAttributes[i]!,
      offsetToLocalFileHeader: this.offsetToLocalFileHeader[i]!,
    };
  }

  /** Bytes held per record (typed arrays and names), for the tests' bound. */
  bytesHeld(): number {
    const arrays = [
      this.versionMadeBy,
      this.flags,
      this.compressionMethod,
      this.lastModifiedTime,
      this.lastModifiedDate,
      this.crc32,
      this.externalFileAttributes,
      this.compressedSize,
      this.uncompressedSize,
      this.offsetToLocalFileHeader,
      this.nameStart,
      this.nameLength,
    ];
    return arrays.reduce((n, a) => n + a.byteLength, 0) + this.names.length;
  }
}

export const LOCAL_HEADER_SIG = 0x04034b50;
export const DAMAGED_ADVICE = 'Download the artifact again; if it keeps failing the archive on the server is damaged.';
/** The end record (22 bytes) plus the longest possible comment: the end record is always inside this tail. */
const TAIL_BYTES = 22 + 0xffff;

function describeStart(buf: Buffer): string {
  const text = buf
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '.')
    .trim();
  return text.length > 0 ? `'${text.slice(0, 24)}'${text.length > 24 ? '...' : ''}` : `bytes ${buf.subarray(0, 8).toString('hex')}`;
}

/** An HTML error page or an empty download gets a readable message instead of unzipper's. */
function checkHead(head: Buffer, size: number): void {
  const sig = head.length >= 4 ? head.readUInt32LE(0) : 0;
  if (size < 22 || (sig !== LOCAL_HEADER_SIG && sig !== 0x06054b50)) {
    throw new ArchiveError(
      size === 0 ? 'not a zip archive (the file is empty)' : `not a zip archive (starts with ${describeStart(head)})`,
      undefined,
      'The server did not return a zip archive: check the URL, the token, and whether a proxy or login page answered instead.',
    );
  }
}

/**
 * How many bytes from the end of the archive the end-of-central-directory record starts, searched backwards in the
 * archive's last bytes, so a long comment or a signature inside entry data cannot confuse unzipper's forward search.
 */
function endRecordTailSize(tail: Buffer): number {
  const eocd = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
  let pos = tail.lastIndexOf(eocd);
  let fallback = -1;
  while (pos >= 0) {
    if (pos + 22 <= tail.length) {
      if (fallback < 0) fallback = pos;
      if (pos + 22 + tail.readUInt16LE(pos + 20) === tail.length) break;
    }
    pos = pos > 0 ? tail.lastIndexOf(eocd, pos - 1) : -1;
  }
  if (pos < 0) pos = fallback;
  if (pos < 0)
    throw new ArchiveError('damaged zip archive (end of central directory not found: the file is truncated)', undefined, DAMAGED_ADVICE);
  return tail.length - pos;
}

/** Records held at most when the caller gives no cap (about 80 bytes each in a Directory). */
export const MAX_RECORDS = 1_000_000;

export interface DirectoryOptions {
  /** Refuse a directory of more records than this, counted before any is parsed (default MAX_RECORDS). */
  maxRecords?: number;
  /** The input the cap comes from, for the message (max_files). */
  limitName?: string;
}

/** The raw records counted (and checked) first; problems become ArchiveErrors. */
async function countRecords(
  readAt: ReadAt,
  start: number,
  end: number,
  opts: DirectoryOptions,
): Promise<{ count: number; nameBytes: number }> {
  const max = opts.maxRecords ?? MAX_RECORDS;
  try {
    return await scanDirectory(readAt, start, end, max);
  } catch (err) {
    if (!(err instanceof DirectoryProblem)) throw err;
    if (err.kind === 'limit') {
      throw new ArchiveError(
        `archive has more than ${opts.limitName ? `${opts.limitName} (${max})` : max} entries`,
        undefined,
        opts.limitName ? 'Raise max_files if the artifact is expected to have this many entries.' : undefined,
      );
    }
    throw new ArchiveError(`damaged zip archive (${err.message})`, err.entry, DAMAGED_ADVICE);
  }
}

/** Reads `length` bytes at `offset` (fewer only at the end of the archive). */
type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** Where the records are: [start, end) holds `records` records (`end`: where the end records begin). */
interface Layout {
  records: number;
  start: number;
  end: number;
}

/**
 * The record count and where the directory starts, from the end record (and its zip64 variant), so unzipper can be
 * given the directory in slices. Only these few fixed fields are read here; every record is parsed by unzipper.
 */
async function layout(tailSize: number, size: number, readAt: ReadAt): Promise<Layout> {
  const eocdAt = size - tailSize;
  const eocd = await readAt(eocdAt, 22);
  let records = eocd.readUInt16LE(10);
  let start = eocd.readUInt32LE(16);
  let end = eocdAt;
  if (eocd.readUInt16LE(4) === 0xffff || records === 0xffff || start === 0xffffffff) {
    const locator = eocdAt >= 20 ? await readAt(eocdAt - 20, 20) : Buffer.alloc(0);
    if (locator.length < 20 || locator.readUInt32LE(0) !== 0x07064b50) throw new Error('zip64 end of central directory locator not found');
    end = Number(locator.readBigUInt64LE(8));
    const record = await readAt(end, 56);
    if (record.length < 56 || record.readUInt32LE(0) !== 0x06064b50) throw new Error('zip64 end of central directory record not found');
    records = Number(record.readBigUInt64LE(32));
    start = Number(record.readBigUInt64LE(48));
  }
  if (start > end) throw new Error('the central directory starts after its end record');
  return { records, start, end };
}

/**
 * unzipper's PullStream appends each chunk it is given to what it holds (Buffer.concat): small chunks keep that cheap,
 * and let backpressure stop reading once a batch has its records.
 */
const SLICE = 64 * 1024;

/** The directory's bytes in slices, read lazily: unzipper stops pulling once its batch is parsed. */
async function* fileSlices(readAt: ReadAt, start: number, end: number): AsyncGenerator<Buffer> {
  for (let pos = start; pos < end; pos += SLICE) yield await readAt(pos, Math.min(SLICE, end - pos));
}

/** unzipper's record: the lean fields, plus what tells where the next record starts. */
type UnzipperRecord = LeanRecord & { signature: number; fileNameLength: number; extraFieldLength: number; fileCommentLength: number };

/** Records per unzipper call: bounds unzipper's transient objects (about 1 KB per record) to a few MB. */
const BATCH = 2048;

/**
 * Parses the directory with unzipper's Open.custom, BATCH records at a time: each call sees a small virtual zip made of
 * the remaining directory bytes and a synthetic end record announcing BATCH records at offset 0 (local header offsets
 * in the records stay the real ones). Each batch is copied into the Directory and unzipper's objects are dropped.
 * `stream(start, end)` gives the archive's bytes [start, end); `records` is the count parse() established.
 */
async function parseWithUnzipper(
  { records: total, start, end }: Layout,
  stream: (start: number, end: number) => Readable,
): Promise<Directory> {
  // Loaded here, where a directory needs it: most never do, and loading it costs a start some 5 ms.
  const { default: unzipper } = await import('unzipper');
  const custom = unzipper.Open.custom as unknown as (s: unknown, o: { tailSize: number }) => Promise<{ files: UnzipperRecord[] }>;
  const out = new Directory(total);
  let cursor = start;
  while (out.length < total) {
    const count = Math.min(BATCH, total - out.length);
    const length = end - cursor;
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(count, 8);
    eocd.writeUInt16LE(count, 10);
    const opened: Readable[] = [];
    const source = {
      size: async () => length + 22,
      stream: (offset: number) => {
        const s = offset >= length ? Readable.from([eocd.subarray(offset - length)]) : stream(cursor + offset, end);
        opened.push(s);
        return s;
      },
    };
    try {
      const dir = await custom(source, { tailSize: 22 });
      if (dir.files.length !== count) throw new Error(`expected ${total} entries, read ${out.length + dir.files.length}`);
      for (const r of dir.files) {
        if (r.signature !== 0x02014b50) throw new Error(`expected ${total} entries, entry ${out.length + 1} is not a directory record`);
        cursor += 46 + r.fileNameLength + r.extraFieldLength + r.fileCommentLength;
        out.add(r, Buffer.from(r.path, 'utf8'));
      }
    } finally {
      for (const s of opened) s.destroy(); // unzipper leaves the rest of the directory unread
    }
    if (cursor > end) throw new Error(`expected ${total} entries: the directory overruns its end record`);
  }
  return out;
}

const CENTRAL_SIG = 0x02014b50;
/** Directory bytes parsed per slice: a few of them in memory at once, whatever the directory's size. */
const PARSE_SLICE = 1024 * 1024;

/** One record's fields on their way into the Directory (reused: no object per record). */
const fields: Omit<LeanRecord, 'path'> = {
  versionMadeBy: 0,
  flags: 0,
  compressionMethod: 0,
  lastModifiedTime: 0,
  lastModifiedDate: 0,
  crc32: 0,
  compressedSize: 0,
  uncompressedSize: 0,
  externalFileAttributes: 0,
  offsetToLocalFileHeader: 0,
};

/** Appends the record at `at` in `buf` (which holds all of it) to `out`. */
function record(out: Directory, buf: Buffer, at: number, nameLength: number, extraLength: number): void {
  let compressedSize = buf.readUInt32LE(at + 20);
  let uncompressedSize = buf.readUInt32LE(at + 24);
  let offsetToLocalFileHeader = buf.readUInt32LE(at + 42);
  const nameAt = at + 46;
  if (compressedSize === 0xffffffff || uncompressedSize === 0xffffffff || offsetToLocalFileHeader === 0xffffffff) {
    // zip64 extended information (0x0001): the 8-byte values present are those whose 32-bit field is all ones, in order.
    const end = nameAt + nameLength + extraLength;
    let found = false;
    for (let x = nameAt + nameLength; x + 4 <= end; ) {
      const id = buf.readUInt16LE(x);
      const size = buf.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let f = x + 4;
        const next = () => {
          if (f + 8 > x + 4 + size) throw new Error('zip64 extra field too short');
          const v = Number(buf.readBigUInt64LE(f));
          f += 8;
          return v;
        };
        if (uncompressedSize === 0xffffffff) uncompressedSize = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (offsetToLocalFileHeader === 0xffffffff) offsetToLocalFileHeader = next();
        found = true;
        break;
      }
      x += 4 + size;
    }
    if (!found) throw new Error('zip64 extra field missing');
  }
  fields.versionMadeBy = buf.readUInt16LE(at + 4);
  fields.flags = buf.readUInt16LE(at + 8);
  fields.compressionMethod = buf.readUInt16LE(at + 10);
  fields.lastModifiedTime = buf.readUInt16LE(at + 12);
  fields.lastModifiedDate = buf.readUInt16LE(at + 14);
  fields.crc32 = buf.readUInt32LE(at + 16);
  fields.compressedSize = compressedSize;
  fields.uncompressedSize = uncompressedSize;
  fields.externalFileAttributes = buf.readUInt32LE(at + 38);
  fields.offsetToLocalFileHeader = offsetToLocalFileHeader;
  out.add(fields, buf, nameAt, nameAt + nameLength);
}

/**
 * The fast parser: exactly `records` well-formed records filling [start, end) (read slice by slice with `readAt`).
 * Throws on anything else; parse() then lets unzipper decide.
 */
async function parseRecords(readAt: ReadAt, { records, start, end }: Layout, nameBytes: number): Promise<Directory> {
  if (records * 46 > end - start) throw new Error(`expected ${records} entries: the directory is too short for them`);
  const out = new Directory(records, nameBytes);
  let n = 0;
  let buf: Buffer = Buffer.alloc(0);
  let at = 0;
  let pos = start; // archive offset just after `buf`
  const need = async (bytes: number) => {
    if (at + bytes <= buf.length) return true;
    if (pos >= end) return false;
    // Read again from the record's start rather than appending to what is held (no copy of the held bytes).
    const from = pos - (buf.length - at);
    const more = await readAt(from, Math.max(PARSE_SLICE, bytes));
    if (more.length <= buf.length - at) return false;
    pos = from + more.length;
    buf = more;
    at = 0;
    return bytes <= buf.length;
  };
  while (n < records) {
    if (!(await need(46)) || buf.readUInt32LE(at) !== CENTRAL_SIG) throw new Error(`entry ${n + 1} is not a directory record`);
    const nameLength = buf.readUInt16LE(at + 28);
    const extraLength = buf.readUInt16LE(at + 30);
    const length = 46 + nameLength + extraLength + buf.readUInt16LE(at + 32);
    if (!(await need(length))) throw new Error('FILE_ENDED');
    record(out, buf, at, nameLength, extraLength);
    n++;
    at += length;
  }
  if (pos - (buf.length - at) > end) throw new Error(`expected ${records} entries: the directory overruns its end record`);
  return out;
}

/** The directory's records: the fast parser, or unzipper's verdict where it gives up. */
async function parse(
  tailSize: number,
  size: number,
  readAt: ReadAt,
  stream: (start: number, end: number) => Readable,
  opts: DirectoryOptions,
  /** For the two passes over the records, which are done with each slice before asking for the next (reusedSliceReader). */
  readSlice: ReadAt = readAt,
): Promise<Directory> {
  const where = await layout(tailSize, size, readAt);
  // Every record the directory holds: more than the end record's count (a 16-bit count wrapped past 65,535, or a
  // wrong one) are all read, as Info-ZIP and Python read them; fewer means records are missing: refused. The count
  // is capped before any record is held (countRecords).
  const { count: total, nameBytes } = await countRecords(readSlice, where.start, where.end, opts);
  if (total < where.records) throw new Error(`the end record announces ${where.records} entries, the directory holds ${total}`);
  try {
    return await parseRecords(readSlice, { ...where, records: total }, nameBytes);
  } catch {
    return parseWithUnzipper({ ...where, records: total }, stream);
  }
}

/** Parse failures become a readable ArchiveError; our own errors (network, archive) pass through. */
function damaged(err: unknown): RelayError {
  if (err instanceof RelayError) return err;
  const msg = (err as Error)?.message ?? String(err);
  const hint = msg === 'FILE_ENDED' ? 'unexpected end of the central directory: the file is truncated or damaged' : msg;
  return new ArchiveError(`damaged zip archive (${hint})`, undefined, DAMAGED_ADVICE);
}

const whole = (v: number) => Number.isSafeInteger(v) && v >= 0;

/** Entry data must lie inside the archive: checked before anything is read or awaited at those offsets. */
function checkBounds(dir: Directory, size: number): void {
  const offsets = dir.offsetToLocalFileHeader;
  const compressed = dir.compressedSize;
  for (let i = 0; i < dir.length; i++) {
    if (!(whole(offsets[i]!) && whole(compressed[i]!) && whole(dir.uncompressedSize[i]!))) {
      throw new ArchiveError('damaged zip archive (zip64 extra field missing)', dir.path(i), DAMAGED_ADVICE);
    }
    if (offsets[i]! + 30 + compressed[i]! > size) {
      throw new ArchiveError('damaged zip archive (entry data beyond the end of the file: truncated?)', dir.path(i), DAMAGED_ADVICE);
    }
  }
  const overlap = findOverlap(offsets.subarray(0, dir.length), compressed.subarray(0, dir.length));
  if (overlap) {
    throw new ArchiveError(
      `overlapping entries in the archive (possible zip bomb): ${JSON.stringify(dir.path(overlap[0]))} and ${JSON.stringify(dir.path(overlap[1]))} share bytes`,
      undefined,
      'The archive is rejected as a whole; nothing was written. Check the job that produced it.',
    );
  }
}

/**
 * Reads into one buffer, reused by every call (grown when a call asks for more): what a call returns is valid until the
 * next call. For scanDirectory and parseRecords, which are done with a slice before they ask for the next: a new 1 MiB
 * buffer a slice left both passes over many300k's 22 MiB directory as garbage outside the JS heap, uncollected until
 * V8 next looked (peak RSS at the directory read, 20 MB of it).
 */
export function reusedSliceReader(fh: Pick<FileHandle, 'read'>, size: number): ReadAt {
  let scratch = Buffer.alloc(0);
  return async (offset, length) => {
    const want = Math.max(0, Math.min(length, size - offset));
    if (want > scratch.length) scratch = Buffer.allocUnsafe(want);
    const { bytesRead } = await fh.read(scratch, 0, want, offset);
    return scratch.subarray(0, bytesRead);
  };
}

/** The central directory of a complete local archive. */
export async function readDirectoryFromFile(zipFile: string, opts: DirectoryOptions = {}): Promise<Directory> {
  let fh: FileHandle;
  try {
    fh = await open(zipFile, 'r');
  } catch (err) {
    throw new ArchiveError(`cannot open archive: ${(err as Error).message}`);
  }
  try {
    const { size } = await fh.stat();
    const readAt: ReadAt = async (offset, length) => {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead);
    };
    checkHead(await readAt(0, 64), size);
    const tailSize = endRecordTailSize(await readAt(Math.max(0, size - TAIL_BYTES), TAIL_BYTES));
    let records: Directory;
    try {
      const stream = (start: number, end: number) => Readable.from(fileSlices(readAt, start, end));
      records = await parse(tailSize, size, readAt, stream, opts, reusedSliceReader(fh, size));
    } catch (err) {
      throw damaged(err);
    }
    checkBounds(records, size);
    return records;
  } finally {
    await fh.close();
  }
}

/**
 * The central directory from the archive's last bytes (`tail`, ending at `total`). When the directory starts before
 * the tail, `readRange(start, end)` fetches the missing bytes [start, end) first. Undefined when the tail has no end
 * record at all (not a zip, e.g. an HTML page): the complete download explains that better.
 */
export async function readDirectoryFromTail(
  tail: Buffer,
  total: number,
  readRange: (start: number, end: number) => Promise<Buffer>,
  opts: DirectoryOptions = {},
  /** Set to where the central directory starts (the end of the last entry's bytes). */
  where: { directoryStart?: number } = {},
): Promise<Directory | undefined> {
  let tailSize: number;
  try {
    tailSize = endRecordTailSize(tail.subarray(Math.max(0, tail.length - TAIL_BYTES)));
  } catch {
    return undefined;
  }
  // The bytes held, contiguous and in order: the tail, and before it each gap fetched (never concatenated: a
  // directory of tens of MB is held once, not copied).
  const parts: Buffer[] = [tail];
  let from = total - tail.length;
  const readAt: ReadAt = async (offset, length) => {
    if (offset < from) {
      // The directory (or its zip64 end record) starts before the bytes held: fetch the gap once.
      parts.unshift(await readRange(offset, from));
      from = offset;
    }
    const pieces: Buffer[] = [];
    let at = from;
    const stop = Math.min(offset + length, total);
    for (const part of parts) {
      const partEnd = at + part.length;
      if (partEnd > offset && at < stop) pieces.push(part.subarray(Math.max(0, offset - at), Math.min(part.length, stop - at)));
      at = partEnd;
    }
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  };
  try {
    const { start } = await layout(tailSize, total, readAt);
    where.directoryStart = start;
    await readAt(Math.min(start, total), 0);
    const records = await parse(tailSize, total, readAt, (s, e) => Readable.from(fileSlices(readAt, s, e)), opts);
    checkBounds(records, total);
    return records;
  } catch (err) {
    throw damaged(err);
  } finally {
    // The records are copied out (Directory): the gaps fetched are garbage now; the tail is the caller's.
    for (const part of parts) if (part !== tail) release(part);
  }
}

/**
 * Frees a large Buffer now rather than at a full GC: one that outlived two young-generation GCs (a directory's gap is
 * held while all its records are parsed) waits for a full one, which a whole fetch may never run (many83k: its 6.1 MB
 * directory was held to the end). Transferring its ArrayBuffer away detaches it (its views read as empty) and leaves
 * the memory to a clone that is garbage at once, freed by the next young GC. Only a Buffer that is its whole
 * ArrayBuffer (not a slice of Node's shared pool), which nothing else may view afterwards.
 */
function release(buf: Buffer): void {
  const ab = buf.buffer;
  if (!(ab instanceof ArrayBuffer) || buf.byteOffset !== 0 || buf.byteLength !== ab.byteLength || ab.byteLength < 64 * 1024) return;
  structuredClone(ab, { transfer: [ab] });
}
