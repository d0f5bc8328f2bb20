// Reading and verifying entry data: an entry's compressed bytes are read from its local header's offset (waiting for
// them while the archive still downloads), inflated with zlib, and checked by one routine (EntryCheck: inflated size
// against the declaration and the caps, the ratio, CRC-32), whether the entry is inflated in memory or streamed.
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { ArchiveError, writeError } from '../runtime/errors.ts';
import { DAMAGED_ADVICE, LOCAL_HEADER_SIG, type LeanRecord } from './central-directory.ts';
import { type Caps, checkArchiveRatio, checkRatio, mb, type PathOf, pathOf } from './plan.ts';

/** Resolves once bytes [0, end) of the archive are on disk (unset: the archive is complete). */
export type Available = ((end: number) => Promise<void>) | undefined;

/** Reads and inflated pieces of a large entry: big enough that the thread-pool round trips per byte stay few. */
const CHUNK = 512 * 1024;
/** Room for the local extra field when guessing where small entries' data starts (Info-ZIP writes 28 bytes). */
const LOCAL_EXTRA_SLACK = 64;

/** Inflated bytes and files of the whole extraction, against max_bytes and max_files. */
export class Budget {
  bytes = 0;
  files = 0;
  /** @param compressed every selected file's compressed bytes: the archive-wide ratio's denominator. */
  constructor(
    readonly caps: Caps,
    private readonly compressed = 0,
  ) {}
  addBytes(n: number, path: PathOf): void {
    this.bytes += n;
    checkArchiveRatio(this.caps, this.bytes, this.compressed, path);
    if (this.bytes > this.caps.maxBytes) {
      throw new ArchiveError(
        `archive inflates to more than max_bytes (${mb(this.caps.maxBytes)})`,
        pathOf(path),
        'Raise max_bytes if the artifact is expected to be this large.',
      );
    }
  }
  addFile(path: PathOf): void {
    this.files += 1;
    if (this.files > this.caps.maxFiles) {
      throw new ArchiveError(
        `archive has more than max_files (${this.caps.maxFiles}) entries`,
        pathOf(path),
        'Raise max_files if the artifact is expected to have this many files.',
      );
    }
  }
}

/**
 * The one check of inflated data: `add` every inflated piece in order (counted against the declared size, the budget
 * and the ratio; CRC-32 accumulated), then `finish` (declared size reached, CRC equal).
 */
class EntryCheck {
  private inflated = 0;
  private crc = 0;
  constructor(
    private readonly rec: LeanRecord,
    private readonly path: string,
    private readonly budget: Budget | undefined,
  ) {}
  add(data: Buffer): void {
    this.inflated += data.length;
    if (this.budget) {
      this.budget.addBytes(data.length, this.path);
      checkRatio(this.budget.caps, this.inflated, this.rec.compressedSize, this.path);
    }
    if (this.inflated > this.rec.uncompressedSize) {
      throw new ArchiveError('size mismatch (entry inflates to more than its declared size)', this.path, DAMAGED_ADVICE);
    }
    this.crc = zlib.crc32(data, this.crc);
  }
  finish(): number {
    if (this.inflated !== this.rec.uncompressedSize) {
      throw new ArchiveError(
        `size mismatch (declared ${this.rec.uncompressedSize} bytes, got ${this.inflated})`,
        this.path,
        DAMAGED_ADVICE,
      );
    }
    if (this.crc >>> 0 !== this.rec.crc32 >>> 0) throw new ArchiveError('CRC mismatch', this.path, DAMAGED_ADVICE);
    return this.inflated;
  }
}

function corrupt(err: unknown, path: string): ArchiveError {
  if (err instanceof ArchiveError) return err;
  if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
    return new ArchiveError('size mismatch (entry inflates to more than its declared size)', path, DAMAGED_ADVICE);
  }
  return new ArchiveError(`corrupt compressed data (${(err as Error).message})`, path, DAMAGED_ADVICE);
}

/** Reads the local file header and returns where the entry's data starts (waiting for the bytes when still downloading). */
async function dataStart(fh: FileHandle, rec: LeanRecord, path: string, available: Available): Promise<number> {
  await available?.(rec.offsetToLocalFileHeader + 30);
  const header = Buffer.alloc(30);
  const { bytesRead } = await fh.read(header, 0, 30, rec.offsetToLocalFileHeader);
  if (bytesRead < 30 || header.readUInt32LE(0) !== LOCAL_HEADER_SIG) {
    throw new ArchiveError('damaged zip archive (bad local file header)', path, DAMAGED_ADVICE);
  }
  return rec.offsetToLocalFileHeader + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
}

/** Where an entry's local header and data probably end (the local extra field may be longer than this guess). */
export function guessEnd(rec: Pick<LeanRecord, 'offsetToLocalFileHeader' | 'path' | 'compressedSize'>): number {
  return rec.offsetToLocalFileHeader + 30 + Buffer.byteLength(rec.path) + LOCAL_EXTRA_SLACK + rec.compressedSize;
}

/**
 * Bytes [from, end) of the archive in one read (several small entries at once), once they are on disk; fewer at the
 * end of the file.
 */
async function readSpan(
  fh: FileHandle,
  from: number,
  end: number,
  available: Available,
  into?: Buffer,
): Promise<{ buf: Buffer; from: number }> {
  await available?.(end);
  const buf = into && into.length >= end - from ? into.subarray(0, end - from) : Buffer.allocUnsafe(end - from);
  const { bytesRead } = await fh.read(buf, 0, buf.length, from);
  return { buf: buf.subarray(0, bytesRead), from };
}

/** An entry's compressed bytes from a span read before, or undefined when the span does not hold them all. */
function fromSpan(span: { buf: Buffer; from: number }, rec: LeanRecord): Buffer | undefined {
  const at = rec.offsetToLocalFileHeader - span.from;
  if (at < 0 || at + 30 > span.buf.length || span.buf.readUInt32LE(at) !== LOCAL_HEADER_SIG) return undefined;
  const start = at + 30 + span.buf.readUInt16LE(at + 26) + span.buf.readUInt16LE(at + 28);
  return start + rec.compressedSize <= span.buf.length ? span.buf.subarray(start, start + rec.compressedSize) : undefined;
}

/**
 * Reads an entry's compressed bytes in one piece (small entries): from `span` when given and it holds them, else one
 * read covering the local header too, guessing its length from the central directory (the local extra field may
 * differ: then a second, exact read).
 */
async function readRaw(
  fh: FileHandle,
  rec: LeanRecord,
  path: string,
  available: Available,
  span?: { buf: Buffer; from: number },
): Promise<Buffer> {
  const inSpan = span && fromSpan(span, rec);
  if (inSpan) return inSpan;
  const offset = rec.offsetToLocalFileHeader;
  const got = await readSpan(fh, offset, guessEnd(rec), available);
  const guessed = fromSpan(got, rec);
  if (guessed) return guessed;
  const start = await dataStart(fh, rec, path, available);
  await available?.(start + rec.compressedSize);
  const raw = Buffer.allocUnsafe(rec.compressedSize);
  const { bytesRead } = await fh.read(raw, 0, raw.length, start);
  if (bytesRead !== raw.length) throw new ArchiveError('damaged zip archive (entry data truncated)', path, DAMAGED_ADVICE);
  return raw;
}

/**
 * Reads, inflates and verifies a small entry in memory (small files, symlink targets). `limit`: refuse entries declaring
 * more; `budget`: count the bytes against the caps (unset for symlink targets, counted as files later).
 */
export async function readWhole(
  fh: FileHandle,
  rec: LeanRecord,
  path: string,
  opts: { available: Available; budget?: Budget; limit?: number; span?: { buf: Buffer; from: number } },
): Promise<Buffer> {
  if (opts.limit !== undefined && rec.uncompressedSize > opts.limit) {
    throw new ArchiveError(`entry too large (${rec.uncompressedSize} bytes)`, path);
  }
  const raw = await readRaw(fh, rec, path, opts.available, opts.span);
  let data: Buffer;
  try {
    data =
      rec.compressionMethod === 0 || raw.length === 0
        ? raw
        : zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, rec.uncompressedSize + 1) });
  } catch (err) {
    throw corrupt(err, path);
  }
  const check = new EntryCheck(rec, path, opts.budget);
  check.add(data);
  check.finish();
  return data;
}

/** An entry's compressed bytes in chunks, each read once it is on disk: a big entry inflates while it downloads. */
async function* rawChunks(fh: FileHandle, start: number, length: number, path: string, available: Available): AsyncGenerator<Buffer> {
  const end = start + length;
  for (let pos = start; pos < end; ) {
    const n = Math.min(CHUNK, end - pos);
    await available?.(pos + n);
    const buf = Buffer.allocUnsafe(n);
    const { bytesRead } = await fh.read(buf, 0, n, pos);
    if (bytesRead === 0) throw new ArchiveError('damaged zip archive (entry data truncated)', path, DAMAGED_ADVICE);
    pos += bytesRead;
    yield bytesRead === n ? buf : buf.subarray(0, bytesRead);
  }
}

/**
 * Streams a large entry: reads, inflates and verifies it piece by piece, handing each verified piece to `write`
 * (awaited: backpressure). Returns the inflated size.
 */
export async function streamEntry(
  fh: FileHandle,
  rec: LeanRecord,
  path: string,
  budget: Budget,
  available: Available,
  write: (data: Buffer) => Promise<unknown>,
): Promise<number> {
  const start = await dataStart(fh, rec, path, available);
  const check = new EntryCheck(rec, path, budget);
  // One piece read ahead, not Readable.from's default of 16: memory stays a few pieces per entry.
  const source = Readable.from(rawChunks(fh, start, rec.compressedSize, path, available), { highWaterMark: 1 });
  // The pipeline reports a failed write only as aborted: kept here, as a full disk is not a damaged archive.
  let failedWrite: unknown;
  const sink = async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) {
      check.add(chunk);
      await write(chunk).catch((err: unknown) => {
        failedWrite = err;
        throw err;
      });
    }
  };
  try {
    if (rec.compressionMethod === 0) await pipeline(source, sink);
    else await pipeline(source, zlib.createInflateRaw({ chunkSize: CHUNK }), sink);
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    if (failedWrite) throw writeError(path, failedWrite);
    throw new ArchiveError(`corrupt compressed data (${(err as Error).message})`, path, DAMAGED_ADVICE);
  }
  return check.finish();
}
