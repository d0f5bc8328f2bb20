// Safe extraction of a zip archive into an empty staging folder, in named steps: read the central directory
// (central-directory.ts), plan and validate every entry before anything is written (plan.ts, with the symlink targets
// read from the archive), then write directories, files (read and verified by entry-data.ts, written by write.ts, a few
// at a time), symlinks last and explicit directory modes. A hostile or damaged archive is rejected as a whole with
// ArchiveError.
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { runPool } from '../util/concurrency.ts';
import { MAX_RECORDS, readDirectoryFromFile, type LeanRecord } from './central-directory.ts';
import { type Available, Budget, guessEnd, readSpan, readWhole, streamEntry } from './entry-data.ts';
import {
  byOffset,
  type Caps,
  checkDeclaredCaps,
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

/**
 * The files, in archive order (the disk reads sequentially, and while downloading each worker waits for the next bytes
 * to arrive), `concurrency` tasks at a time: runs of small files read in one piece, inflated in memory and written
 * synchronously; large files streamed.
 */
async function writeFiles(zipFile: string, root: string, files: PlannedEntry[], budget: Budget, opts: ExtractOptions): Promise<void> {
  const zipFh = await open(zipFile, 'r');
  // Span buffers are reused (one per running task): fresh 1 MiB buffers would wait for the garbage collector.
  const spare: Buffer[] = [];
  try {
    await runPool(tasksOf(files), opts.concurrency ?? 4, async (task) => {
      const first = task[0]!;
      if (first.record.compressedSize >= SMALL_ENTRY) {
        budget.addFile(first.path);
        first.size = await writeLargeFile(join(root, first.path), first.mode, dosTime(first.record), (out) =>
          streamEntry(zipFh, first.record, first.path, budget, opts.available as Available, (chunk) => out.write(chunk)),
        );
        return;
      }
      const into = spare.pop() ?? Buffer.allocUnsafe(BATCH_SPAN);
      try {
        const end = guessEnd(task[task.length - 1]!.record);
        const span = await readSpan(zipFh, first.record.offsetToLocalFileHeader, end, opts.available, into);
        for (const p of task) {
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
  const planned = await plan(zipFile, opts.directory ?? (await readDirectoryFromFile(zipFile, limits)), opts);
  const selected = planned.filter((p) => p.selected);
  await opts.beforeWrite?.(selected.map((p) => p.path));
  const compressed = checkDeclaredCaps(selected, opts);

  const budget = new Budget(opts, compressed);
  await makeDirectories(root, directoriesToCreate(selected));
  const files = selected.filter((p) => p.type === 'file').sort(byOffset);
  await writeFiles(zipFile, root, files, budget, opts);
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
