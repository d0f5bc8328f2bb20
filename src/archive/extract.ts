// Safe extraction of a zip archive into an empty staging folder, in named steps: read the central directory
// (central-directory.ts), plan and validate every entry before anything is written (plan.ts, with the symlink targets
// read from the archive), then write directories, files (read and verified by entry-data.ts, written by write.ts, a few
// at a time), symlinks last and explicit directory modes. A hostile or damaged archive is rejected as a whole with
// ArchiveError.
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import zlib from 'node:zlib';
import { ArchiveError } from '../runtime/errors.ts';
import { umask } from '../util/umask.ts';
import { runPool } from '../util/concurrency.ts';
import { BATCH_FIELDS, type Batch, type BatchFailure, type BatchRunner, batchRunner } from './batch.ts';
import { BatchPool } from './batch-pool.ts';
import { DAMAGED_ADVICE, MAX_RECORDS, readDirectoryFromFile, type LeanRecord } from './central-directory.ts';
import { type Available, Budget, guessEnd, readWhole, streamEntry } from './entry-data.ts';
import {
  byOffset,
  type Caps,
  checkDeclaredCaps,
  checkRatio,
  checkSymlinks,
  directoriesToCreate,
  type PlannedEntry,
  planEntries,
  setSymlinkTarget,
  symlinksOf,
} from './plan.ts';
import { applyDirectoryModes, dosTime, ensureDestDir, makeDirectories, writeLargeFile, writeSmallFile, writeSymlinks } from './write.ts';

export interface ExtractOptions extends Caps {
  include?: string[];
  exclude?: string[];
  /** Entries extracted at a time (default 4). */
  concurrency?: number;
  /** Worker threads writing the small entries (default: one per core, at most 4, from 1000 small entries on; 0: none). */
  threads?: number;
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

const SMALL_ENTRY = 64 * 1024;
/** Consecutive small entries are read together, in one read of at most this span (and this many entries). */
const BATCH_SPAN = 1024 * 1024;
const BATCH_ENTRIES = 512;
const SYMLINK_MAX = 4096;

type ListOptions = Pick<ExtractOptions, 'include' | 'exclude' | 'directory' | 'available'>;

/**
 * Validates every entry (names, types, methods, conflicts, symlink targets) without writing anything. Targets are read
 * in archive order: while downloading, each is read as soon as its bytes are there (a symlink stored near the end of
 * the archive delays all writing until then: every target is checked before anything is written).
 */
async function plan(zipFile: string, records: LeanRecord[], opts: ListOptions): Promise<PlannedEntry[]> {
  const planned = planEntries(records, opts.include, opts.exclude);
  const symlinks = symlinksOf(planned);
  if (symlinks.length > 0) {
    const fh = await open(zipFile, 'r');
    try {
      for (const p of symlinks) {
        const data = await readWhole(fh, p.record, p.path, { available: opts.available, limit: SYMLINK_MAX });
        setSymlinkTarget(p, data.toString('utf8'));
      }
    } finally {
      await fh.close();
    }
    checkSymlinks(symlinks);
  }
  return planned;
}

function toEntry(p: PlannedEntry, size: number): ExtractedEntry {
  const e: ExtractedEntry = { path: p.path, type: p.type, size, mode: p.mode };
  if (p.target !== undefined) e.target = p.target;
  return e;
}

/** Lists what would be written (validated paths; all checks of extractArchive that need no writing). */
export async function listArchive(zipFile: string, opts: ListOptions = {}): Promise<ExtractedEntry[]> {
  const planned = await plan(zipFile, opts.directory ?? (await readDirectoryFromFile(zipFile)), opts);
  return planned
    .filter((p) => p.selected)
    .map((p) => toEntry(p, p.type === 'file' ? p.record.uncompressedSize : p.type === 'symlink' ? Buffer.byteLength(p.target!) : 0));
}

/** Files (in archive order) grouped into tasks: runs of neighbouring small entries read at once, or one large entry. */
function tasksOf(files: PlannedEntry[]): PlannedEntry[][] {
  const tasks: PlannedEntry[][] = [];
  let run: PlannedEntry[] = [];
  for (const p of files) {
    if (p.record.compressedSize >= SMALL_ENTRY) {
      if (run.length > 0) tasks.push(run);
      run = [];
      tasks.push([p]);
      continue;
    }
    if (run.length > 0 && (run.length >= BATCH_ENTRIES || guessEnd(p.record) - run[0]!.record.offsetToLocalFileHeader > BATCH_SPAN)) {
      tasks.push(run);
      run = [];
    }
    run.push(p);
  }
  if (run.length > 0) tasks.push(run);
  return tasks;
}

/** Small entries from this many on are written by worker threads (fewer: on the main thread, no threads started). */
const THREADS_MIN_ENTRIES = 1000;
/**
 * Large entries up to this compressed size are streamed on a thread too (once their bytes are all there), from two
 * of them on; larger ones are streamed on the main thread while they download.
 */
const THREAD_STREAM_MAX = 64 * 1024 * 1024;
const THREADS_MIN_STREAMED = 2;

const onThread = (p: PlannedEntry) => p.record.compressedSize <= THREAD_STREAM_MAX;

/**
 * Worker threads for the small entries (and the large ones up to THREAD_STREAM_MAX): one per core (at most 4), none
 * for few entries or when `threads` is 0.
 */
function threadCount(files: PlannedEntry[], opts: ExtractOptions): number {
  if (opts.threads !== undefined) return Math.max(0, Math.floor(opts.threads));
  let small = 0;
  let streamed = 0;
  for (const p of files) {
    if (p.record.compressedSize < SMALL_ENTRY) small++;
    else if (onThread(p)) streamed++;
  }
  return small < THREADS_MIN_ENTRIES && streamed < THREADS_MIN_STREAMED ? 0 : Math.min(4, Math.max(1, availableParallelism()));
}

/** A batch's description for batch.ts: numbers per entry and the paths. */
function batchOf(task: PlannedEntry[], mtimes: Map<number, number>): Batch {
  const nums = new Float64Array(task.length * BATCH_FIELDS);
  for (let i = 0; i < task.length; i++) {
    const p = task[i]!;
    const r = p.record;
    const key = r.lastModifiedDate * 65536 + r.lastModifiedTime;
    let mtime = mtimes.get(key);
    if (mtime === undefined) {
      const d = dosTime(r);
      mtime = d ? d.getTime() / 1000 : -1;
      mtimes.set(key, mtime);
    }
    nums.set(
      [r.offsetToLocalFileHeader, r.compressedSize, r.uncompressedSize, r.crc32 >>> 0, r.compressionMethod, p.mode, mtime],
      i * BATCH_FIELDS,
    );
  }
  return {
    from: task[0]!.record.offsetToLocalFileHeader,
    end: guessEnd(task[task.length - 1]!.record),
    nums,
    paths: task.map((p) => p.path).join('\0'),
  };
}

function failureError(f: Exclude<BatchFailure, { kind: 'beyond' }>): Error {
  if (f.kind === 'archive') return new ArchiveError(f.message, f.path, f.damaged ? DAMAGED_ADVICE : undefined);
  return Object.assign(new Error(f.message), { code: f.code, errno: f.errno, syscall: f.syscall, path: f.path });
}

/**
 * The files, in archive order (the disk reads sequentially, and while downloading each task waits for the next bytes
 * to arrive), `concurrency` tasks at a time: runs of small files read in one piece, inflated and written with
 * synchronous calls (batch.ts) on worker threads (or on the main thread for few files); large files streamed.
 */
async function writeFiles(
  zipFile: string,
  root: string,
  dirs: string[],
  files: PlannedEntry[],
  budget: Budget,
  opts: ExtractOptions,
): Promise<void> {
  const threads = threadCount(files, opts);
  const config = { zipFile, root, umask: umask() };
  // Started first: the threads boot while the folders are made.
  const pool = threads > 0 ? new BatchPool(threads, config) : undefined;
  let inline: BatchRunner | undefined;
  let zipFh: Awaited<ReturnType<typeof open>> | undefined;
  const mtimes = new Map<number, number>();
  try {
    await makeDirectories(root, dirs);
    const fh = await open(zipFile, 'r');
    zipFh = fh;
    await runPool(tasksOf(files), Math.max(opts.concurrency ?? 4, 2 * threads + 2), async (task) => {
      const first = task[0]!;
      if (first.record.compressedSize >= SMALL_ENTRY) {
        budget.addFile(first.path);
        if (pool && onThread(first)) {
          const batch = { ...batchOf(task, mtimes), stream: true };
          await opts.available?.(batch.end);
          const failure = await pool.run(batch);
          if (!failure) {
            budget.addBytes(first.record.uncompressedSize, first.path);
            checkRatio(budget.caps, first.record.uncompressedSize, first.record.compressedSize, first.path);
            first.size = first.record.uncompressedSize;
            return;
          }
          if (failure.kind !== 'beyond') throw failureError(failure);
          // No reusable zlib context on this Node: streamed here instead.
        }
        first.size = await writeLargeFile(join(root, first.path), first.mode, dosTime(first.record), (out) =>
          streamEntry(fh, first.record, first.path, budget, opts.available as Available, (chunk) => out.write(chunk)),
        );
        return;
      }
      for (const p of task) budget.addFile(p.path);
      const batch = batchOf(task, mtimes);
      await opts.available?.(batch.end);
      let failure: BatchFailure | undefined;
      if (pool) failure = await pool.run(batch);
      else {
        inline ??= batchRunner(fs, zlib, config);
        failure = inline.run(batch);
      }
      const done = failure?.kind === 'beyond' ? failure.index : task.length;
      for (let i = 0; i < done; i++) {
        const p = task[i]!;
        budget.addBytes(p.record.uncompressedSize, p.path);
        checkRatio(budget.caps, p.record.uncompressedSize, p.record.compressedSize, p.path);
        p.size = p.record.uncompressedSize;
      }
      if (failure && failure.kind !== 'beyond') throw failureError(failure);
      // Entries whose data reaches past the span (a local extra field longer than guessed, or a short file): one by one.
      for (let i = done; i < task.length; i++) {
        const p = task[i]!;
        const data = await readWhole(fh, p.record, p.path, { available: opts.available, budget });
        writeSmallFile(join(root, p.path), data, p.mode, dosTime(p.record));
        p.size = data.length;
      }
    });
  } finally {
    inline?.close();
    await Promise.all([zipFh?.close(), pool?.close()]);
  }
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
  const compressed = checkDeclaredCaps(selected, opts);

  const budget = new Budget(opts, compressed);
  const files = selected.filter((p) => p.type === 'file').sort(byOffset);
  await writeFiles(zipFile, root, directoriesToCreate(selected), files, budget, opts);
  const symlinks = selected.filter((p) => p.type === 'symlink');
  for (const p of symlinks) budget.addFile(p.path);
  await writeSymlinks(root, symlinks);
  const explicitDirs = selected.filter((p) => p.type === 'directory');
  await applyDirectoryModes(root, explicitDirs);

  const entries = selected.map((p) =>
    toEntry(p, p.type === 'file' ? (p.size ?? 0) : p.type === 'symlink' ? Buffer.byteLength(p.target!) : 0),
  );
  return { files: files.length, directories: explicitDirs.length, symlinks: symlinks.length, bytes: budget.bytes, entries };
}
