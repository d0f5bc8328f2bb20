// Safe extraction of a zip archive into an empty staging folder.
// The central directory is read with unzipper's Open.file (never the streaming parsers); entry data is read here from
// the local header offset, inflated with zlib, and verified (CRC-32, size) while caps are enforced on inflated bytes.
// Every name, type and symlink target is validated before anything is written: a hostile or damaged archive is
// rejected as a whole with ArchiveError.
import { constants as fsConstants } from 'node:fs';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, open, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import unzipper from 'unzipper';
import { ArchiveError } from '../errors.ts';
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

/** Fields of an unzipper central-directory record that are used here. */
interface CdRecord {
  path: string;
  pathBuffer?: Buffer;
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

interface PlannedEntry {
  record: CdRecord;
  path: string;
  type: ExtractedEntry['type'];
  mode: number;
  selected: boolean;
  target?: string;
}

const RATIO_THRESHOLD = 10 * 1024 * 1024;
const SMALL_ENTRY = 64 * 1024;
const SYMLINK_MAX = 4096;
const LOCAL_HEADER_SIG = 0x04034b50;
const DAMAGED_ADVICE = 'Download the artifact again; if it keeps failing the archive on the server is damaged.';
const HOSTILE_ADVICE = 'The archive is rejected as a whole; nothing was moved into place. Check the job that produced it.';

function describeStart(buf: Buffer): string {
  const text = buf.toString('latin1').replace(/[^\x20-\x7e]/g, '.').trim();
  return text.length > 0 ? `'${text.slice(0, 24)}'${text.length > 24 ? '...' : ''}` : `bytes ${buf.subarray(0, 8).toString('hex')}`;
}

function mb(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Cheap sanity check before unzipper: an HTML error page or an empty download gets a readable message. Returns the
 * file size and how many bytes from the end the end-of-central-directory record starts (found backwards, so a long
 * archive comment or a signature inside entry data cannot confuse unzipper's forward search).
 */
async function checkMagic(zipFile: string): Promise<{ size: number; tailSize: number }> {
  let fh: FileHandle;
  try {
    fh = await open(zipFile, 'r');
  } catch (err) {
    throw new ArchiveError(`cannot open archive: ${(err as Error).message}`);
  }
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(Math.min(64, size));
    if (size > 0) await fh.read(head, 0, head.length, 0);
    const sig = size >= 4 ? head.readUInt32LE(0) : 0;
    if (size < 22 || (sig !== LOCAL_HEADER_SIG && sig !== 0x06054b50)) {
      throw new ArchiveError(
        size === 0 ? 'not a zip archive (the file is empty)' : `not a zip archive (starts with ${describeStart(head)})`,
        undefined,
        'The server did not return a zip archive: check the URL, the token, and whether a proxy or login page answered instead.',
      );
    }
    const tailLen = Math.min(size, 22 + 0xffff);
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, size - tailLen);
    const eocd = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
    let pos = tail.lastIndexOf(eocd);
    let fallback = -1;
    while (pos >= 0) {
      if (pos + 22 <= tailLen) {
        if (fallback < 0) fallback = pos;
        if (pos + 22 + tail.readUInt16LE(pos + 20) === tailLen) break;
      }
      pos = pos > 0 ? tail.lastIndexOf(eocd, pos - 1) : -1;
    }
    if (pos < 0) pos = fallback;
    if (pos < 0) {
      throw new ArchiveError('damaged zip archive (end of central directory not found: the file is truncated)', undefined, DAMAGED_ADVICE);
    }
    return { size, tailSize: tailLen - pos };
  } finally {
    await fh.close();
  }
}

async function readCentralDirectory(zipFile: string): Promise<CdRecord[]> {
  const { size, tailSize } = await checkMagic(zipFile);
  let files: CdRecord[];
  try {
    const openFile = unzipper.Open.file as unknown as (f: string, o: { tailSize: number }) => ReturnType<typeof unzipper.Open.file>;
    const dir = await openFile(zipFile, { tailSize });
    files = dir.files as unknown as CdRecord[];
    const expected = (dir as unknown as { numberOfRecords: number }).numberOfRecords;
    if (files.length !== expected) throw new Error(`expected ${expected} entries, read ${files.length}`);
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    const msg = (err as Error)?.message ?? String(err);
    const hint = msg === 'FILE_ENDED' ? 'unexpected end of the central directory: the file is truncated or damaged' : msg;
    throw new ArchiveError(`damaged zip archive (${hint})`, undefined, DAMAGED_ADVICE);
  }
  for (const f of files) {
    if (f.offsetToLocalFileHeader === undefined || f.compressedSize === undefined || f.uncompressedSize === undefined) {
      throw new ArchiveError('damaged zip archive (zip64 extra field missing)', f.path, DAMAGED_ADVICE);
    }
    if (f.offsetToLocalFileHeader + 30 + f.compressedSize > size) {
      throw new ArchiveError('damaged zip archive (entry data beyond the end of the file: truncated?)', f.path, DAMAGED_ADVICE);
    }
  }
  return files;
}

/** Reads the local file header and returns where the entry's data starts. */
async function dataStart(fh: FileHandle, rec: CdRecord, path: string): Promise<number> {
  const header = Buffer.alloc(30);
  const { bytesRead } = await fh.read(header, 0, 30, rec.offsetToLocalFileHeader);
  if (bytesRead < 30 || header.readUInt32LE(0) !== LOCAL_HEADER_SIG) {
    throw new ArchiveError('damaged zip archive (bad local file header)', path, DAMAGED_ADVICE);
  }
  return rec.offsetToLocalFileHeader + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
}

function checkMethod(rec: CdRecord, path: string): void {
  if ((rec.flags & 1) !== 0) throw new ArchiveError('encrypted entries are not supported', path, 'Publish the artifact without a password.');
  if (rec.compressionMethod !== 0 && rec.compressionMethod !== 8) {
    throw new ArchiveError(`unsupported compression method ${rec.compressionMethod}`, path, 'Only stored and deflated entries are supported (what GitLab Runner writes).');
  }
}

/** Reads and verifies one small entry completely into memory (symlink targets, small files). */
async function readWhole(fh: FileHandle, rec: CdRecord, path: string, limit: number): Promise<Buffer> {
  checkMethod(rec, path);
  if (rec.uncompressedSize > limit) throw new ArchiveError(`entry too large (${rec.uncompressedSize} bytes)`, path);
  const start = await dataStart(fh, rec, path);
  const raw = Buffer.alloc(rec.compressedSize);
  const { bytesRead } = await fh.read(raw, 0, raw.length, start);
  if (bytesRead !== raw.length) throw new ArchiveError('damaged zip archive (entry data truncated)', path, DAMAGED_ADVICE);
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

/** Validates every entry (names, types, methods, conflicts, symlink targets) without writing anything. */
async function plan(zipFile: string, records: CdRecord[], opts: Pick<ExtractOptions, 'include' | 'exclude'>): Promise<PlannedEntry[]> {
  const select = compileSelector(opts.include ?? [], opts.exclude ?? []);
  const planned: PlannedEntry[] = [];
  const byPath = new Map<string, PlannedEntry>();
  for (const record of records) {
    const path = validateEntryPath(record.path);
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
      if (parent && parent.type === 'symlink') throw new ArchiveError(`entry inside a symlink (${parent.path} is a symlink)`, p.path, HOSTILE_ADVICE);
      if (parent && parent.type === 'file') throw new ArchiveError(`path is both a file and a directory (${parent.path})`, p.path, HOSTILE_ADVICE);
      i = p.path.lastIndexOf('/', i - 1);
    }
  }
  const symlinks = planned.filter((p) => p.type === 'symlink');
  if (symlinks.length > 0) {
    const fh = await open(zipFile, 'r');
    try {
      for (const p of symlinks) {
        const target = (await readWhole(fh, p.record, p.path, SYMLINK_MAX)).toString('utf8');
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

/** Lists what would be written (validated paths; all checks of extractArchive that need no writing). */
export async function listArchive(zipFile: string, opts: Pick<ExtractOptions, 'include' | 'exclude'> = {}): Promise<ExtractedEntry[]> {
  const planned = await plan(zipFile, await readCentralDirectory(zipFile), opts);
  return planned
    .filter((p) => p.selected)
    .map((p) => toEntry(p, p.type === 'file' ? p.record.uncompressedSize : p.type === 'symlink' ? Buffer.byteLength(p.target!) : 0));
}

function dosTime(rec: CdRecord): Date | undefined {
  const d = rec.lastModifiedDate;
  const t = rec.lastModifiedTime;
  if (!d) return undefined;
  const date = new Date(((d >> 9) & 0x7f) + 1980, ((d >> 5) & 0x0f) - 1, d & 0x1f, (t >> 11) & 0x1f, (t >> 5) & 0x3f, (t & 0x1f) * 2);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

class Budget {
  bytes = 0;
  files = 0;
  constructor(private readonly opts: ExtractOptions) {}
  addBytes(n: number, path: string): void {
    this.bytes += n;
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
      throw new ArchiveError(`archive has more than max_files (${this.opts.maxFiles}) entries`, path, 'Raise max_files if the artifact is expected to have this many files.');
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

async function writeSmall(zipFh: FileHandle, p: PlannedEntry, out: FileHandle, budget: Budget): Promise<number> {
  const rec = p.record;
  const start = await dataStart(zipFh, rec, p.path);
  const raw = Buffer.allocUnsafe(rec.compressedSize);
  const { bytesRead } = await zipFh.read(raw, 0, raw.length, start);
  if (bytesRead !== raw.length) throw new ArchiveError('damaged zip archive (entry data truncated)', p.path, DAMAGED_ADVICE);
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
  if (data.length > 0) await out.write(data, 0, data.length, 0);
  return data.length;
}

async function writeStreamed(zipFile: string, zipFh: FileHandle, p: PlannedEntry, out: FileHandle, budget: Budget): Promise<number> {
  const rec = p.record;
  const start = await dataStart(zipFh, rec, p.path);
  let crc = 0;
  let inflated = 0;
  const source = createReadStream(zipFile, { start, end: start + rec.compressedSize - 1, highWaterMark: 1024 * 1024 });
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
  let st;
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
  const planned = await plan(zipFile, await readCentralDirectory(zipFile), opts);
  const selected = planned.filter((p) => p.selected);

  // Early cap checks on declared values (the real checks below count inflated bytes).
  const budget = new Budget(opts);
  const countable = selected.filter((p) => p.type !== 'directory');
  if (countable.length > opts.maxFiles) {
    throw new ArchiveError(`archive has ${countable.length} files, more than max_files (${opts.maxFiles})`, undefined, 'Raise max_files if the artifact is expected to have this many files.');
  }
  let declared = 0;
  for (const p of countable) {
    if (p.type !== 'file') continue;
    declared += p.record.uncompressedSize;
    budget.checkRatio(p.record.uncompressedSize, p.record.compressedSize, p.path);
  }
  if (declared > opts.maxBytes) {
    throw new ArchiveError(`archive declares ${mb(declared)} of data, more than max_bytes (${mb(opts.maxBytes)})`, undefined, 'Raise max_bytes if the artifact is expected to be this large.');
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

  const files = selected.filter((p) => p.type === 'file');
  const sizes = new Map<PlannedEntry, number>();
  const zipFh = await open(zipFile, 'r');
  try {
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < files.length) {
        const p = files[next++]!;
        budget.addFile(p.path);
        const target = join(root, p.path);
        const out = await open(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
        try {
          const n =
            p.record.compressedSize < SMALL_ENTRY
              ? await writeSmall(zipFh, p, out, budget)
              : await writeStreamed(zipFile, zipFh, p, out, budget);
          sizes.set(p, n);
          await out.chmod(p.mode);
          const mtime = dosTime(p.record);
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

  const entries = selected.map((p) => toEntry(p, p.type === 'file' ? sizes.get(p) ?? 0 : p.type === 'symlink' ? Buffer.byteLength(p.target!) : 0));
  return {
    files: files.length,
    directories: explicitDirs.length,
    symlinks: selected.length - files.length - explicitDirs.length,
    bytes: budget.bytes,
    entries,
  };
}
