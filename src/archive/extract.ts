// Safe extraction of a zip archive into an empty staging folder, in named steps: read the central directory
// (central-directory.ts), plan and validate every entry before anything is written (plan.ts, with the symlink targets
// read from the archive), then write directories, files (runs of small entries and large ones up to 64 MiB by
// batch.ts on worker threads, batch-pool.ts; larger ones streamed here by entry-data.ts and write.ts), symlinks last
// and explicit directory modes. A hostile or damaged archive is rejected as a whole with ArchiveError.
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import zlib from 'node:zlib';
import { ArchiveError, writeError } from '../runtime/errors.ts';
import { collectOldGarbage } from '../runtime/gc-pacing.ts';
import { logger, memoryMark } from '../runtime/log.ts';
import { umask } from '../util/umask.ts';
import { runPool } from '../util/concurrency.ts';
import { BATCH_FIELDS, type Batch, type BatchFailure, type BatchRunner, batchRunner } from './batch.ts';
import { BatchPool } from './batch-pool.ts';
import { downloadFinished } from './watermark.ts';
import { DAMAGED_ADVICE, type Directory, MAX_RECORDS, readDirectoryFromFile } from './central-directory.ts';
import { type Available, Budget, guessEnd, readWhole, streamEntry } from './entry-data.ts';
import {
  type Caps,
  checkDeclaredCaps,
  checkRatio,
  checkSymlinks,
  directoriesToCreate,
  type Plan,
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
  /** Worker threads writing the small entries (default: one per core but one, at most 3, from 1000 small entries on; 0: none). */
  threads?: number;
  /** The cores the default `threads` counts (default: availableParallelism()). */
  cores?: number;
  /**
   * The main thread writes runs of small entries too, between the threads' (true: from the start; default: once the
   * archive is complete, where more than one core would get a thread). One thread fewer is started: while the archive
   * downloads the main thread downloads, and it joins the threads when the download ends. A thread's isolate costs
   * about 10 MB.
   */
  mainWrites?: boolean;
  /** The central directory, already read (from the file, or from a tail fetched before the body). */
  directory?: Directory;
  /**
   * Set while the archive is still being written (unpacking while downloading): resolves once bytes [0, end) of
   * `zipFile` are on disk, rejects when the download fails. Nothing is read from the file before it resolves.
   */
  available?: (end: number) => Promise<void>;
  /**
   * The same mark for unpacking threads (Watermark.shared): given, a large entry is streamed on a thread while it
   * downloads; without it, only once its bytes are all there (up to THREAD_STREAM_MAX, larger ones on the main thread).
   */
  sharedMark?: SharedArrayBuffer;
  /** Called with the validated paths to be written, before anything is written (e.g. to refuse overwriting). */
  beforeWrite?: (paths: Iterable<string>) => Promise<void>;
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
  /** Entries written (files, directories, symlinks). */
  count: number;
  /** The first LISTED_ENTRIES of them, in archive order, for the log (no list of every entry is kept). */
  listed: ExtractedEntry[];
  /** Batches (runs of small entries, and large entries streamed) written by the main thread and by worker threads. */
  batches: { main: number; threads: number; threadsStarted: number };
}

/** Entries an ExtractResult lists. */
const LISTED_ENTRIES = 200;

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
async function plan(zipFile: string, directory: Directory, opts: ListOptions): Promise<Plan> {
  const planned = planEntries(directory, opts.include, opts.exclude);
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
    for (const p of symlinks) planned.targets.set(p.index, p.target!);
  }
  return planned;
}

/** The paths of entries `order`, decoded one by one as they are iterated (no array of every path). */
function* pathsOf(plan: Plan, order: Uint32Array): Generator<string> {
  for (const i of order) yield plan.path(i);
}

/** What an entry of the plan writes (a file's size is its declared one: extraction verified it). */
function toEntry(plan: Plan, i: number): ExtractedEntry {
  const type = plan.type(i);
  const target = plan.targets.get(i);
  const size = type === 'file' ? plan.directory.uncompressedSize[i]! : type === 'symlink' ? Buffer.byteLength(target!) : 0;
  const e: ExtractedEntry = { path: plan.path(i), type, size, mode: plan.modes[i]! };
  if (target !== undefined) e.target = target;
  return e;
}

/** Lists what would be written (validated paths; all checks of extractArchive that need no writing). */
export async function listArchive(zipFile: string, opts: ListOptions = {}): Promise<ExtractedEntry[]> {
  const planned = await plan(zipFile, opts.directory ?? (await readDirectoryFromFile(zipFile)), opts);
  return Array.from(planned.indices(), (i) => toEntry(planned, i));
}

/** A task: the files at `order[from..to)`, a run of neighbouring small entries read at once, or one large entry. */
interface Task {
  from: number;
  to: number;
}

/** guessEnd of directory record i, read from the arrays (no entry object built for it). */
function guessEndAt(d: Directory, i: number): number {
  return guessEnd({ offsetToLocalFileHeader: d.offsetToLocalFileHeader[i]!, path: d.path(i), compressedSize: d.compressedSize[i]! });
}

/** Files (`order`: their indices in archive order) grouped into tasks. */
function tasksOf(plan: Plan, order: Uint32Array): Task[] {
  const { compressedSize, offsetToLocalFileHeader } = plan.directory;
  const tasks: Task[] = [];
  let from = 0;
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!;
    if (compressedSize[i]! >= SMALL_ENTRY) {
      if (k > from) tasks.push({ from, to: k });
      tasks.push({ from: k, to: k + 1 });
      from = k + 1;
      continue;
    }
    if (k > from && (k - from >= BATCH_ENTRIES || guessEndAt(plan.directory, i) - offsetToLocalFileHeader[order[from]!]! > BATCH_SPAN)) {
      tasks.push({ from, to: k });
      from = k;
    }
  }
  if (order.length > from) tasks.push({ from, to: order.length });
  return tasks;
}

/** Small entries from this many on are written by worker threads (fewer: on the main thread, no threads started). */
const THREADS_MIN_ENTRIES = 1000;
/**
 * Without a shared mark (opts.sharedMark) while downloading, large entries up to this compressed size are streamed on
 * a thread once their bytes are all there, and larger ones on the main thread as they download. With one (or once
 * downloaded), every large entry is streamed on a thread: there the inflating never waits for a write (batch.ts).
 */
const THREAD_STREAM_MAX = 64 * 1024 * 1024;
const THREADS_MIN_STREAMED = 2;
/** Where the main thread writes too (mainWrites), it does so while every thread holds this many batches. */
const THREAD_QUEUE = 2;

/** Whether a large entry of `compressedSize` is streamed on a thread (THREAD_STREAM_MAX). */
const streamsOnThread = (compressedSize: number, opts: ExtractOptions) =>
  compressedSize <= THREAD_STREAM_MAX || opts.sharedMark !== undefined || opts.available === undefined;

/**
 * Worker threads for the small entries and the large ones: one per core (at most 4) but one, the main thread's (it
 * downloads, then writes beside them: mainWrites; on one core, one thread); one for a single large entry that streams
 * on a thread (it frees the main thread for the download); none for few small entries or when `threads` is 0. Fetching
 * 83,000 entries from storage paced per connection, a second thread beside the download cost 115-122 MB peak RSS
 * against 105-110 MB with one (the main thread joining once the download ended), for the same wall time.
 */
function threadCount(plan: Plan, files: Uint32Array, opts: ExtractOptions): { threads: number; mainWrites: boolean } {
  if (opts.threads !== undefined) return { threads: Math.max(0, Math.floor(opts.threads)), mainWrites: opts.mainWrites ?? false };
  const { compressedSize } = plan.directory;
  let small = 0;
  let streamed = 0;
  let huge = 0;
  for (const i of files) {
    const size = compressedSize[i]!;
    if (size < SMALL_ENTRY) small++;
    else if (streamsOnThread(size, opts)) {
      streamed++;
      if (size > THREAD_STREAM_MAX) huge++;
    }
  }
  if (small < THREADS_MIN_ENTRIES && streamed < THREADS_MIN_STREAMED) return { threads: huge, mainWrites: false };
  const cores = Math.min(4, Math.max(1, opts.cores ?? availableParallelism()));
  const mainWrites = cores > 1 && (opts.mainWrites ?? true);
  return { threads: mainWrites ? cores - 1 : cores, mainWrites };
}

/** Whether the whole archive is on disk: no download in progress (or it has finished). */
const complete = (opts: ExtractOptions) =>
  opts.available === undefined || (opts.sharedMark !== undefined && downloadFinished(opts.sharedMark));

/** A batch's description for batch.ts (numbers per entry and the paths), read straight from the plan's arrays. */
function batchOf(
  plan: Plan,
  files: Uint32Array,
  { from, to }: Task,
  mtimes: Map<number, number>,
  release = false,
  end = guessEndAt(plan.directory, files[to - 1]!),
): Batch {
  const d = plan.directory;
  const nums = new Float64Array((to - from) * BATCH_FIELDS);
  const list: string[] = [];
  for (let k = from, o = 0; k < to; k++, o += BATCH_FIELDS) {
    const i = files[k]!;
    const key = d.lastModifiedDate[i]! * 65536 + d.lastModifiedTime[i]!;
    let mtime = mtimes.get(key);
    if (mtime === undefined) {
      const t = dosTime({ lastModifiedDate: d.lastModifiedDate[i]!, lastModifiedTime: d.lastModifiedTime[i]! });
      mtime = t ? t.getTime() / 1000 : -1;
      mtimes.set(key, mtime);
    }
    nums[o] = d.offsetToLocalFileHeader[i]!;
    nums[o + 1] = d.compressedSize[i]!;
    nums[o + 2] = d.uncompressedSize[i]!;
    nums[o + 3] = d.crc32[i]! >>> 0;
    nums[o + 4] = d.compressionMethod[i]!;
    nums[o + 5] = plan.modes[i]!;
    nums[o + 6] = mtime;
    list.push(plan.path(i));
  }
  return {
    from: d.offsetToLocalFileHeader[files[from]!]!,
    end,
    nums,
    paths: list.join('\0'),
    release,
  };
}

/** The error of a failed batch; `entry`: the one entry of a streamed batch, whose failed write names it. */
function failureError(f: Exclude<BatchFailure, { kind: 'beyond' }>, entry?: string): Error {
  if (f.kind === 'archive') return new ArchiveError(f.message, f.path, f.damaged ? DAMAGED_ADVICE : undefined);
  const err = Object.assign(new Error(f.message), { code: f.code, errno: f.errno, syscall: f.syscall, path: f.path });
  return entry !== undefined && f.code !== undefined ? writeError(entry, err) : err;
}

/**
 * The files (`files`: plan indices in archive order; the disk reads sequentially, and while downloading each task
 * waits for the next bytes to arrive), `concurrency` tasks at a time: runs of small files read in one piece, inflated
 * and written with synchronous calls (batch.ts) on worker threads (or on the main thread for few files); large files
 * streamed. Entries are built one at a time where one is needed: a task's worth would outlive young-generation GCs.
 */
async function writeFiles(
  zipFile: string,
  root: string,
  dirs: string[],
  plan: Plan,
  files: Uint32Array,
  budget: Budget,
  opts: ExtractOptions,
): Promise<ExtractResult['batches']> {
  const d = plan.directory;
  const { threads, mainWrites } = threadCount(plan, files, opts);
  const batches = { main: 0, threads: 0, threadsStarted: threads };
  const config = { zipFile, root, umask: umask(), mark: opts.sharedMark };
  // Started first: the threads boot while the folders are made.
  const pool = threads > 0 ? new BatchPool(threads, config) : undefined;
  let inline: BatchRunner | undefined;
  let mainStreaming = false;
  /**
   * Whether the main thread takes the next batch itself (mainWrites): once the download (if any) has finished (or
   * from the start where the caller asks for mainWrites), while every thread holds THREAD_QUEUE.
   */
  const mainTakes = (p: BatchPool) => mainWrites && (opts.mainWrites === true || complete(opts)) && p.leastHeld() >= THREAD_QUEUE;
  let zipFh: Awaited<ReturnType<typeof open>> | undefined;
  const mtimes = new Map<number, number>();
  try {
    await makeDirectories(root, dirs);
    const fh = await open(zipFile, 'r');
    zipFh = fh;
    /** One large entry: streamed by a runner (a thread's, or the main thread's where it writes too), else here. */
    const writeLarge = async (task: Task, firstIndex: number): Promise<void> => {
      const first = plan.entry(firstIndex);
      budget.addFile(first.path);
      if (pool && streamsOnThread(first.record.compressedSize, opts)) {
        const batch = { ...batchOf(plan, files, task, mtimes), stream: true };
        // With the shared mark the thread reads each piece once it is downloaded.
        if (!opts.sharedMark) await opts.available?.(batch.end);
        let failure: BatchFailure | undefined;
        if (!mainStreaming && mainTakes(pool)) {
          // One at a time here: the runner's piece buffers serve one streamed entry.
          mainStreaming = true;
          batches.main++;
          inline ??= batchRunner(fs, zlib, config);
          failure = await inline.stream(batch).finally(() => {
            mainStreaming = false;
          });
        } else {
          batches.threads++;
          failure = await pool.run(batch);
        }
        if (!failure) {
          budget.addBytes(first.record.uncompressedSize, first.path);
          checkRatio(budget.caps, first.record.uncompressedSize, first.record.compressedSize, first.path);
          return;
        }
        // A failed download fails the thread's read: the download's own error is the one to report.
        if (opts.sharedMark) await opts.available?.(batch.end);
        if (failure.kind !== 'beyond') throw failureError(failure, first.path);
        // No reusable zlib context on this Node: streamed here instead.
      }
      await writeLargeFile(join(root, first.path), first.mode, dosTime(first.record), (out) =>
        streamEntry(fh, first.record, first.path, budget, opts.available as Available, (chunk) => out.write(chunk)),
      );
    };
    /** A batch of small entries, on a thread or (mainTakes, or with no thread) here; its failure, if any. */
    const writeBatch = async (batch: Batch): Promise<BatchFailure | undefined> => {
      if (pool && !mainTakes(pool)) {
        batches.threads++;
        return pool.run(batch);
      }
      batches.main++;
      inline ??= batchRunner(fs, zlib, config);
      const failure = inline.run(batch);
      // Written synchronously: let the threads' answers in, so that they are given their next batches.
      if (pool) await new Promise(setImmediate);
      return failure;
    };
    const tasks = tasksOf(plan, files);
    /** Large entries not yet written: once none is left, the runners let their piece buffers go (Batch.release). */
    let largeLeft = tasks.filter((t) => d.compressedSize[files[t.from]!]! >= SMALL_ENTRY).length;
    await runPool(tasks, Math.max(opts.concurrency ?? 4, 2 * threads + 2), async (task) => {
      const firstIndex = files[task.from]!;
      if (d.compressedSize[firstIndex]! >= SMALL_ENTRY) {
        try {
          await writeLarge(task, firstIndex);
        } finally {
          largeLeft--;
        }
        return;
      }
      // Waited for before the batch is made: made early, its description would wait through young-generation GCs.
      const end = guessEndAt(d, files[task.to - 1]!);
      await opts.available?.(end);
      for (let k = task.from; k < task.to; k++) budget.addFile(() => plan.path(files[k]!));
      const failure = await writeBatch(batchOf(plan, files, task, mtimes, largeLeft === 0, end));
      const count = task.to - task.from;
      const done = failure?.kind === 'beyond' ? failure.index : count;
      for (let k = 0; k < done; k++) {
        const i = files[task.from + k]!;
        const path = () => plan.path(i);
        budget.addBytes(d.uncompressedSize[i]!, path);
        checkRatio(budget.caps, d.uncompressedSize[i]!, d.compressedSize[i]!, path);
      }
      if (failure && failure.kind !== 'beyond') throw failureError(failure);
      // Entries whose data reaches past the span (a local extra field longer than guessed, or a short file): one by one.
      for (let k = done; k < count; k++) {
        const p = plan.entry(files[task.from + k]!);
        const data = await readWhole(fh, p.record, p.path, { available: opts.available, budget });
        writeSmallFile(join(root, p.path), data, p.mode, dosTime(p.record));
      }
    });
  } finally {
    inline?.close();
    await Promise.all([zipFh?.close(), pool?.close()]);
  }
  logger.debug(`batches written: ${batches.main} on the main thread, ${batches.threads} on ${threads} thread(s)`);
  return batches;
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
  const directory = opts.directory ?? (await readDirectoryFromFile(zipFile, limits));
  memoryMark('directory read');
  const planned = await plan(zipFile, directory, opts);
  memoryMark('planned');
  const selected = planned.indices();
  await opts.beforeWrite?.(pathsOf(planned, selected));
  memoryMark('conflicts checked');
  collectOldGarbage();
  const compressed = checkDeclaredCaps(planned, opts);

  const budget = new Budget(opts, compressed);
  const files = planned.byOffset(planned.indices('file'));
  const batches = await writeFiles(zipFile, root, directoriesToCreate(planned), planned, files, budget, opts);
  memoryMark('files written');
  const symlinks = planned.entries(planned.indices('symlink'));
  for (const p of symlinks) budget.addFile(p.path);
  await writeSymlinks(root, symlinks);
  const explicitDirs = planned.entries(planned.indices('directory'));
  await applyDirectoryModes(root, explicitDirs);

  const listed = Array.from(selected.subarray(0, LISTED_ENTRIES), (i) => toEntry(planned, i));
  memoryMark('extracted');
  return {
    files: files.length,
    directories: explicitDirs.length,
    symlinks: symlinks.length,
    bytes: budget.bytes,
    count: selected.length,
    listed,
    batches,
  };
}
