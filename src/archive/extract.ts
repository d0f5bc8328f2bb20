// Safe extraction of a zip archive into an empty staging folder, in named steps: read the central directory
// (central-directory.ts), plan and validate every entry before anything is written (plan.ts, with the symlink targets
// read from the archive), then write directories, files (read and verified by entry-data.ts, written by write.ts, a few
// at a time), symlinks last and explicit directory modes. A hostile or damaged archive is rejected as a whole with
// ArchiveError.
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { memoryMark } from '../runtime/log.ts';
import { runPool } from '../util/concurrency.ts';
import { type Directory, MAX_RECORDS, readDirectoryFromFile } from './central-directory.ts';
import { type Available, Budget, guessEnd, readSpan, readWhole, streamEntry } from './entry-data.ts';
import {
  type Caps,
  checkDeclaredCaps,
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
  /** The central directory, already read (from the file, or from a tail fetched before the body). */
  directory?: Directory;
  /**
   * Set while the archive is still being written (unpacking while downloading): resolves once bytes [0, end) of
   * `zipFile` are on disk, rejects when the download fails. Nothing is read from the file before it resolves.
   */
  available?: (end: number) => Promise<void>;
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
    if (k > from && (k - from >= BATCH_ENTRIES || guessEnd(plan.entry(i).record) - offsetToLocalFileHeader[order[from]!]! > BATCH_SPAN)) {
      tasks.push({ from, to: k });
      from = k;
    }
  }
  if (order.length > from) tasks.push({ from, to: order.length });
  return tasks;
}

/**
 * The files, in archive order (the disk reads sequentially, and while downloading each worker waits for the next bytes
 * to arrive), `concurrency` tasks at a time: runs of small files read in one piece, inflated in memory and written
 * synchronously; large files streamed.
 */
async function writeFiles(
  zipFile: string,
  root: string,
  plan: Plan,
  files: Uint32Array,
  budget: Budget,
  opts: ExtractOptions,
): Promise<void> {
  const zipFh = await open(zipFile, 'r');
  // Span buffers are reused (one per running task): fresh 1 MiB buffers would wait for the garbage collector.
  const spare: Buffer[] = [];
  try {
    await runPool(tasksOf(plan, files), opts.concurrency ?? 4, async ({ from, to }) => {
      // Entries are built one at a time as they are written: a task's worth would outlive young-generation GCs.
      const first = plan.entry(files[from]!);
      if (first.record.compressedSize >= SMALL_ENTRY) {
        budget.addFile(first.path);
        first.size = await writeLargeFile(join(root, first.path), first.mode, dosTime(first.record), (out) =>
          streamEntry(zipFh, first.record, first.path, budget, opts.available as Available, (chunk) => out.write(chunk)),
        );
        return;
      }
      const into = spare.pop() ?? Buffer.allocUnsafe(BATCH_SPAN);
      try {
        const end = guessEnd(to - from === 1 ? first.record : plan.entry(files[to - 1]!).record);
        const span = await readSpan(zipFh, first.record.offsetToLocalFileHeader, end, opts.available, into);
        for (let k = from; k < to; k++) {
          const p = k === from ? first : plan.entry(files[k]!);
          budget.addFile(p.path);
          const data = await readWhole(zipFh, p.record, p.path, { available: opts.available, budget, span });
          writeSmallFile(join(root, p.path), data, p.mode, dosTime(p.record)); // synchronous: `into` is free after it
          p.size = data.length;
        }
      } finally {
        spare.push(into);
      }
    });
  } finally {
    await zipFh.close();
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
  const directory = opts.directory ?? (await readDirectoryFromFile(zipFile, limits));
  memoryMark('directory read');
  const planned = await plan(zipFile, directory, opts);
  memoryMark('planned');
  const selected = planned.indices();
  await opts.beforeWrite?.(pathsOf(planned, selected));
  memoryMark('conflicts checked');
  const compressed = checkDeclaredCaps(planned, opts);

  const budget = new Budget(opts, compressed);
  await makeDirectories(root, directoriesToCreate(planned));
  const files = planned.byOffset(planned.indices('file'));
  memoryMark('directories made');
  await writeFiles(zipFile, root, planned, files, budget, opts);
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
  };
}
