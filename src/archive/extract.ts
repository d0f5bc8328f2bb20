// Safe extraction of a zip archive into an empty staging folder.
// The central directory is read with unzipper (central-directory.ts; never the streaming parsers); entry data is read here from
// the local header offset, inflated with zlib, and verified (CRC-32, size) while caps are enforced on inflated bytes.
// Every name, type and symlink target is validated before anything is written: a hostile or damaged archive is
// rejected as a whole with ArchiveError.
import { closeSync, constants as fsConstants, fchmodSync, futimesSync, openSync, writeSync } from 'node:fs';
import { chmod, lstat, mkdir, open, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { ArchiveError } from '../errors.ts';
import { archiveRatioExceeded } from './bounds.ts';
import { DAMAGED_ADVICE, LOCAL_HEADER_SIG, MAX_RECORDS, readDirectoryFromFile, type LeanRecord } from './central-directory.ts';
import { compileSelector } from './glob.ts';
import { entryMode, entryType } from './modes.ts';
import { validateEntryPath } from './validate.ts';

export interface ExtractOptions {
  include?: string[];
  exclude?: string[];
  maxBytes: number;
  maxFiles: number;
  /** 0 = off; checked once an entry has inflated more than 10 MiB. */
  maxRatio: number;
  /** Entries extracted at a time (default 4). */
  concurrency?: number;
  /** The central directory, already read (from the file, or from a tail fetched before the body). */
  directory?: LeanRecord[];
  /**
   * Set while the archive is still being written (unpacking while downloading): resolves once bytes [0, end) of
   * `zipFile` are on disk, rejects when the download fails. Nothing is read from the file before it resolves.
   */
  available?: (end: number) => Promise<void>;
  /** Called with the validated paths to be written, before anything is written (e.g. to refuse overwriting). */
  beforeWrite?: (paths: string[]) => Promise<void>;
}

export interface ExtractedEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mode: number;
  target?: string;
}

export interface ExtractResult {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  entries: ExtractedEntry[];
}

interface PlannedEntry {
  record: LeanRecord;
  path: string;
  type: ExtractedEntry['type'];
  mode: number;
  selected: boolean;
  target?: string;
  /** Bytes written (files). */
  size?: number;
}

const RATIO_THRESHOLD = 10 * 1024 * 1024;
const SMALL_ENTRY = 64 * 1024;
const SYMLINK_MAX = 4096;
const CHUNK = 256 * 1024;
/** New files only (never through a symlink or over an existing file). */
const OPEN_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
/** Room for the local extra field when guessing where small entries' data starts (Info-ZIP writes 28 bytes). */
const LOCAL_EXTRA_SLACK = 64;
const HOSTILE_ADVICE = 'The archive is rejected as a whole; nothing was moved into place. Check the job that produced it.';

function mb(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

type Available = ExtractOptions['available'];

/** Reads the local file header and returns where the entry's data starts (waiting for the bytes when still downloading). */
async function dataStart(fh: FileHandle, rec: LeanRecord, path: string, available: Available): Promise<number> {
  await available?.(rec.offsetToLocalFileHeader + 30);
  const header = Buffer.alloc(30);
  const { bytesRead } = await fh.read(header, 0, 30, rec.offsetToLocalFileHeader);
  if (bytesRead < 30 || header.readUInt32LE(0) !== LOCAL_HEADER_SIG) {
    throw new ArchiveError('damaged zip archive (bad local file header)', path, DAMAGED_ADVICE);
  }
  const start = rec.offsetToLocalFileHeader + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
  return start;
}

/**
 * Reads an entry's compressed bytes in one piece (small entries): usually one read covering the local header too,
 * guessing its length from the central directory (the local extra field may differ: then a second, exact read).
 */
async function readRaw(fh: FileHandle, rec: LeanRecord, path: string, available: Available): Promise<Buffer> {
  const offset = rec.offsetToLocalFileHeader;
  const guess = 30 + Buffer.byteLength(rec.path) + LOCAL_EXTRA_SLACK + rec.compressedSize;
  await available?.(offset + guess);
  const buf = Buffer.allocUnsafe(guess);
  const got = (await fh.read(buf, 0, guess, offset)).bytesRead;
  if (got >= 30 && buf.readUInt32LE(0) === LOCAL_HEADER_SIG) {
    const at = 30 + buf.readUInt16LE(26) + buf.readUInt16LE(28);
    if (at + rec.compressedSize <= got) return buf.subarray(at, at + rec.compressedSize);
  }
  const start = await dataStart(fh, rec, path, available);
  await available?.(start + rec.compressedSize);
  const raw = Buffer.allocUnsafe(rec.compressedSize);
  const { bytesRead } = await fh.read(raw, 0, raw.length, start);
  if (bytesRead !== raw.length) throw new ArchiveError('damaged zip archive (entry data truncated)', path, DAMAGED_ADVICE);
  return raw;
}

function checkMethod(rec: LeanRecord, path: string): void {
  if ((rec.flags & 1) !== 0)
    throw new ArchiveError('encrypted entries are not supported', path, 'Publish the artifact without a password.');
  if (rec.compressionMethod !== 0 && rec.compressionMethod !== 8) {
    throw new ArchiveError(
      `unsupported compression method ${rec.compressionMethod}`,
      path,
      'Only stored and deflated entries are supported (what GitLab Runner writes).',
    );
  }
}

/** Reads and verifies one small entry completely into memory (symlink targets, small files). */
async function readWhole(fh: FileHandle, rec: LeanRecord, path: string, limit: number, available: Available): Promise<Buffer> {
  checkMethod(rec, path);
  if (rec.uncompressedSize > limit) throw new ArchiveError(`entry too large (${rec.uncompressedSize} bytes)`, path);
  const raw = await readRaw(fh, rec, path, available);
  let data: Buffer;
  if (rec.compressionMethod === 0) data = raw;
  else {
    try {
      data = zlib.inflateRawSync(raw, { maxOutputLength: rec.uncompressedSize + 1 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw new ArchiveError('size mismatch (entry inflates to more than its declared size)', path, DAMAGED_ADVICE);
      }
      throw new ArchiveError(`corrupt compressed data (${(err as Error).message})`, path, DAMAGED_ADVICE);
    }
  }
  if (data.length !== rec.uncompressedSize) {
    throw new ArchiveError(`size mismatch (declared ${rec.uncompressedSize} bytes, got ${data.length})`, path, DAMAGED_ADVICE);
  }
  if (zlib.crc32(data) >>> 0 !== rec.crc32 >>> 0) throw new ArchiveError('CRC mismatch', path, DAMAGED_ADVICE);
  return data;
}

/** Resolves a symlink target the way the kernel would, following symlinks of the archive; false when it leaves the root. */
function staysInside(linkPath: string, target: string, links: Map<string, string>): boolean {
  return resolveLink(linkPath, target, links, 0) !== undefined;
}

function resolveLink(linkPath: string, target: string, links: Map<string, string>, depth: number): string[] | undefined {
  if (depth > 40) return undefined;
  const parts = posix.dirname(linkPath) === '.' ? [] : posix.dirname(linkPath).split('/');
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) return undefined;
      parts.pop();
      continue;
    }
    parts.push(seg);
    const next = links.get(parts.join('/'));
    if (next !== undefined) {
      if (next.startsWith('/')) return undefined;
      const r = resolveLink(parts.join('/'), next, links, depth + 1);
      if (r === undefined) return undefined;
      parts.length = 0;
      parts.push(...r);
    }
  }
  return parts;
}

/** "Version made by" hosts whose tools write `\` as the separator: MS-DOS/FAT, NTFS, VFAT. */
const DOS_HOSTS = new Set([0, 11, 14]);

/** Validates every entry (names, types, methods, conflicts, symlink targets) without writing anything. */
async function plan(zipFile: string, records: LeanRecord[], opts: ListOptions): Promise<PlannedEntry[]> {
  const select = compileSelector(opts.include ?? [], opts.exclude ?? []);
  const planned: PlannedEntry[] = [];
  const byPath = new Map<string, PlannedEntry>();
  for (const record of records) {
    const path = validateEntryPath(record.path, { dosSeparators: DOS_HOSTS.has(record.versionMadeBy >> 8) });
    const type = entryType(record);
    if (type !== 'directory') checkMethod(record, path);
    else if ((record.flags & 1) !== 0) throw new ArchiveError('encrypted entries are not supported', path);
    if (byPath.has(path)) throw new ArchiveError('duplicate entry in archive', path, HOSTILE_ADVICE);
    const p: PlannedEntry = { record, path, type, mode: entryMode(record), selected: select(path) };
    byPath.set(path, p);
    planned.push(p);
  }
  // A file or symlink may not also be a parent of another entry.
  for (const p of planned) {
    let i = p.path.lastIndexOf('/');
    while (i > 0) {
      const parent = byPath.get(p.path.slice(0, i));
      if (parent && parent.type === 'symlink')
        throw new ArchiveError(`entry inside a symlink (${parent.path} is a symlink)`, p.path, HOSTILE_ADVICE);
      if (parent && parent.type === 'file')
        throw new ArchiveError(`path is both a file and a directory (${parent.path})`, p.path, HOSTILE_ADVICE);
      i = p.path.lastIndexOf('/', i - 1);
    }
  }
  // Targets in archive order: while downloading, each is read as soon as its bytes are there (a symlink stored near
  // the end of the archive delays all writing until then: every target is checked before anything is written).
  const symlinks = planned.filter((p) => p.type === 'symlink').sort(byOffset);
  if (symlinks.length > 0) {
    const fh = await open(zipFile, 'r');
    try {
      for (const p of symlinks) {
        const target = (await readWhole(fh, p.record, p.path, SYMLINK_MAX, opts.available)).toString('utf8');
        if (target.length === 0 || target.includes('\0')) throw new ArchiveError('invalid symlink target', p.path, HOSTILE_ADVICE);
        if (target.startsWith('/') || /^[A-Za-z]:/.test(target) || target.includes('\\')) {
          throw new ArchiveError(`symlink escapes the destination (absolute target ${JSON.stringify(target)})`, p.path, HOSTILE_ADVICE);
        }
        p.target = target;
      }
    } finally {
      await fh.close();
    }
    const links = new Map(symlinks.map((p) => [p.path, p.target!] as const));
    for (const p of symlinks) {
      if (!staysInside(p.path, p.target!, links)) {
        throw new ArchiveError(`symlink escapes the destination (${p.path} -> ${p.target})`, p.path, HOSTILE_ADVICE);
      }
    }
  }
  return planned;
}

function toEntry(p: PlannedEntry, size: number): ExtractedEntry {
  const e: ExtractedEntry = { path: p.path, type: p.type, size, mode: p.mode };
  if (p.target !== undefined) e.target = p.target;
  return e;
}

const byOffset = (a: PlannedEntry, b: PlannedEntry) => a.record.offsetToLocalFileHeader - b.record.offsetToLocalFileHeader;

type ListOptions = Pick<ExtractOptions, 'include' | 'exclude' | 'directory' | 'available'>;

/** Lists what would be written (validated paths; all checks of extractArchive that need no writing). */
export async function listArchive(zipFile: string, opts: ListOptions = {}): Promise<ExtractedEntry[]> {
  const planned = await plan(zipFile, opts.directory ?? (await readDirectoryFromFile(zipFile)), opts);
  return planned
    .filter((p) => p.selected)
    .map((p) => toEntry(p, p.type === 'file' ? p.record.uncompressedSize : p.type === 'symlink' ? Buffer.byteLength(p.target!) : 0));
}

function dosTime(rec: LeanRecord): Date | undefined {
  const d = rec.lastModifiedDate;
  const t = rec.lastModifiedTime;
  if (!d) return undefined;
  const date = new Date(((d >> 9) & 0x7f) + 1980, ((d >> 5) & 0x0f) - 1, d & 0x1f, (t >> 11) & 0x1f, (t >> 5) & 0x3f, (t & 0x1f) * 2);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

class Budget {
  bytes = 0;
  files = 0;
  /** Compressed bytes of every selected file: the archive-wide ratio's denominator. */
  compressed = 0;
  constructor(private readonly opts: ExtractOptions) {}
  addBytes(n: number, path: string): void {
    this.bytes += n;
    this.checkArchiveRatio(this.bytes, path);
    if (this.bytes > this.opts.maxBytes) {
      throw new ArchiveError(
        `archive inflates to more than max_bytes (${mb(this.opts.maxBytes)})`,
        path,
        'Raise max_bytes if the artifact is expected to be this large.',
      );
    }
  }
  addFile(path: string): void {
    this.files += 1;
    if (this.files > this.opts.maxFiles) {
      throw new ArchiveError(
        `archive has more than max_files (${this.opts.maxFiles}) entries`,
        path,
        'Raise max_files if the artifact is expected to have this many files.',
      );
    }
  }
  /** Inflation counted across the archive (issue 11 item 8): many entries under the per-entry threshold add up. */
  checkArchiveRatio(inflated: number, path: string | undefined): void {
    if (archiveRatioExceeded(inflated, this.compressed, this.opts.maxRatio)) {
      throw new ArchiveError(
        `compression ratio above max_ratio (${this.opts.maxRatio}) across the archive: ${mb(inflated)} from ${mb(this.compressed)} compressed`,
        path,
        'This looks like a zip bomb. Raise max_ratio (or set it to 0) if the artifact is legitimately this compressible.',
      );
    }
  }
  checkRatio(inflated: number, compressed: number, path: string): void {
    if (this.opts.maxRatio > 0 && inflated > RATIO_THRESHOLD && inflated / Math.max(compressed, 1) > this.opts.maxRatio) {
      throw new ArchiveError(
        `compression ratio above max_ratio (${this.opts.maxRatio}): ${mb(inflated)} from ${mb(compressed)} compressed`,
        path,
        'This looks like a zip bomb. Raise max_ratio (or set it to 0) if the artifact is legitimately this compressible.',
      );
    }
  }
}

/** Reads, inflates and verifies a small entry in memory. */
async function readSmall(zipFh: FileHandle, p: PlannedEntry, budget: Budget, available: Available): Promise<Buffer> {
  const rec = p.record;
  const raw = await readRaw(zipFh, rec, p.path, available);
  let data: Buffer;
  if (rec.compressionMethod === 0 || raw.length === 0) data = raw;
  else {
    try {
      data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, rec.uncompressedSize + 1) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw new ArchiveError('size mismatch (entry inflates to more than its declared size)', p.path, DAMAGED_ADVICE);
      }
      throw new ArchiveError(`corrupt compressed data (${(err as Error).message})`, p.path, DAMAGED_ADVICE);
    }
  }
  budget.addBytes(data.length, p.path);
  budget.checkRatio(data.length, rec.compressedSize, p.path);
  if (data.length !== rec.uncompressedSize) {
    throw new ArchiveError(`size mismatch (declared ${rec.uncompressedSize} bytes, got ${data.length})`, p.path, DAMAGED_ADVICE);
  }
  if (zlib.crc32(data) >>> 0 !== rec.crc32 >>> 0) throw new ArchiveError('CRC mismatch', p.path, DAMAGED_ADVICE);
  return data;
}

/**
 * Writes a small verified file with synchronous calls: for thousands of tiny files, a round trip through the thread
 * pool per call (and its promises) costs more than the calls themselves, like Info-ZIP's plain loop.
 */
function writeSmallSync(target: string, data: Buffer, mode: number, mtime: Date | undefined): void {
  const fd = openSync(target, OPEN_FLAGS, 0o600);
  try {
    if (data.length > 0) writeSync(fd, data, 0, data.length, 0);
    fchmodSync(fd, mode);
    if (mtime) futimesSync(fd, mtime, mtime);
  } finally {
    closeSync(fd);
  }
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

async function writeStreamed(zipFh: FileHandle, p: PlannedEntry, out: FileHandle, budget: Budget, available: Available): Promise<number> {
  const rec = p.record;
  const start = await dataStart(zipFh, rec, p.path, available);
  let crc = 0;
  let inflated = 0;
  const source = () => rawChunks(zipFh, start, rec.compressedSize, p.path, available);
  const sink = async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) {
      inflated += chunk.length;
      budget.addBytes(chunk.length, p.path);
      budget.checkRatio(inflated, rec.compressedSize, p.path);
      if (inflated > rec.uncompressedSize) {
        throw new ArchiveError('size mismatch (entry inflates to more than its declared size)', p.path, DAMAGED_ADVICE);
      }
      crc = zlib.crc32(chunk, crc);
      await out.write(chunk);
    }
  };
  try {
    if (rec.compressionMethod === 0) await pipeline(source, sink);
    else await pipeline(source, zlib.createInflateRaw({ chunkSize: 256 * 1024 }), sink);
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    throw new ArchiveError(`corrupt compressed data (${(err as Error).message})`, p.path, DAMAGED_ADVICE);
  }
  if (inflated !== rec.uncompressedSize) {
    throw new ArchiveError(`size mismatch (declared ${rec.uncompressedSize} bytes, got ${inflated})`, p.path, DAMAGED_ADVICE);
  }
  if (crc >>> 0 !== rec.crc32 >>> 0) throw new ArchiveError('CRC mismatch', p.path, DAMAGED_ADVICE);
  return inflated;
}

async function ensureDestDir(destDir: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(destDir);
  } catch {
    throw new ArchiveError(`destination folder does not exist: ${destDir}`);
  }
  if (!st.isDirectory()) throw new ArchiveError(`destination is not a folder: ${destDir}`);
}

/**
 * Extracts `zipFile` into `destDir` (an empty staging folder created by the caller). Validates everything first,
 * then writes directories, files (a worker pool of `concurrency`), and symlinks last. Throws ArchiveError on any
 * violation; the caller discards the staging folder then.
 */
export async function extractArchive(zipFile: string, destDir: string, opts: ExtractOptions): Promise<ExtractResult> {
  await ensureDestDir(destDir);
  const root = resolve(destDir);
  // Without include/exclude every record is an entry to unpack: max_files caps the records before they are held.
  const unfiltered = !opts.include?.length && !opts.exclude?.length;
  const limits = unfiltered ? { maxRecords: opts.maxFiles, limitName: 'max_files' } : { maxRecords: Math.max(opts.maxFiles, MAX_RECORDS) };
  const planned = await plan(zipFile, opts.directory ?? (await readDirectoryFromFile(zipFile, limits)), opts);
  const selected = planned.filter((p) => p.selected);
  await opts.beforeWrite?.(selected.map((p) => p.path));

  // Early cap checks on declared values (the real checks below count inflated bytes). max_files counts every
  // entry, directories included (as documented).
  const budget = new Budget(opts);
  const countable = selected.filter((p) => p.type !== 'directory');
  if (selected.length > opts.maxFiles) {
    throw new ArchiveError(
      `archive has ${selected.length} entries, more than max_files (${opts.maxFiles})`,
      undefined,
      'Raise max_files if the artifact is expected to have this many files.',
    );
  }
  let declared = 0;
  for (const p of countable) {
    if (p.type !== 'file') continue;
    declared += p.record.uncompressedSize;
    budget.checkRatio(p.record.uncompressedSize, p.record.compressedSize, p.path);
  }
  for (const p of countable) if (p.type === 'file') budget.compressed += p.record.compressedSize;
  budget.checkArchiveRatio(declared, undefined);
  if (declared > opts.maxBytes) {
    throw new ArchiveError(
      `archive declares ${mb(declared)} of data, more than max_bytes (${mb(opts.maxBytes)})`,
      undefined,
      'Raise max_bytes if the artifact is expected to be this large.',
    );
  }

  // Directories: every parent of a selected entry, plus explicit directory entries.
  const dirs = new Set<string>();
  for (const p of selected) {
    const full = p.type === 'directory' ? p.path : posix.dirname(p.path);
    if (full === '.') continue;
    let i = full.indexOf('/');
    while (i !== -1) {
      dirs.add(full.slice(0, i));
      i = full.indexOf('/', i + 1);
    }
    dirs.add(full);
  }
  for (const d of [...dirs].sort()) {
    try {
      await mkdir(join(root, d), 0o777);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await lstat(join(root, d));
      if (!st.isDirectory()) throw new ArchiveError('path is both a file and a directory', d, HOSTILE_ADVICE);
    }
  }

  // Archive order: the disk reads sequentially, and while downloading each worker waits for the next bytes to arrive.
  const files = selected.filter((p) => p.type === 'file').sort(byOffset);
  const zipFh = await open(zipFile, 'r');
  try {
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < files.length) {
        const p = files[next++]!;
        budget.addFile(p.path);
        const target = join(root, p.path);
        const mtime = dosTime(p.record);
        if (p.record.compressedSize < SMALL_ENTRY) {
          const data = await readSmall(zipFh, p, budget, opts.available);
          writeSmallSync(target, data, p.mode, mtime);
          p.size = data.length;
          continue;
        }
        const out = await open(target, OPEN_FLAGS, 0o600);
        try {
          p.size = await writeStreamed(zipFh, p, out, budget, opts.available);
          await out.chmod(p.mode);
          if (mtime) await out.utimes(mtime, mtime);
        } finally {
          await out.close();
        }
      }
    };
    const n = Math.max(1, Math.min(opts.concurrency ?? 4, files.length || 1));
    const workers = Array.from({ length: n }, () =>
      worker().catch((err) => {
        failed = true;
        throw err;
      }),
    );
    const results = await Promise.allSettled(workers);
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected) throw rejected.reason;
  } finally {
    await zipFh.close();
  }

  // Symlinks last, after every file and directory exists (targets were checked to stay inside).
  for (const p of selected) {
    if (p.type !== 'symlink') continue;
    budget.addFile(p.path);
    await symlink(p.target!, join(root, p.path));
  }

  // Explicit directory modes, deepest first, so a read-only directory does not block writing into it.
  const explicitDirs = selected.filter((p) => p.type === 'directory').sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const p of explicitDirs) {
    await chmod(join(root, p.path), p.mode);
    const mtime = dosTime(p.record);
    if (mtime) await utimes(join(root, p.path), mtime, mtime).catch(() => undefined);
  }

  const entries = selected.map((p) =>
    toEntry(p, p.type === 'file' ? (p.size ?? 0) : p.type === 'symlink' ? Buffer.byteLength(p.target!) : 0),
  );
  return {
    files: files.length,
    directories: explicitDirs.length,
    symlinks: selected.length - files.length - explicitDirs.length,
    bytes: budget.bytes,
    entries,
  };
}
