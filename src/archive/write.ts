// Writing the planned tree into the staging folder: directories, files (new files only: never through a symlink or over
// an existing file), symlinks last, explicit directory modes deepest first.
import { closeSync, constants as fsConstants, fchmodSync, futimesSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { chmod, lstat, open, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ArchiveError } from '../runtime/errors.ts';
import type { LeanRecord } from './central-directory.ts';
import { HOSTILE_ADVICE, type PlannedEntry } from './plan.ts';

/** New files only (never through a symlink or over an existing file). */
const OPEN_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

export async function ensureDestDir(destDir: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(destDir);
  } catch {
    throw new ArchiveError(`destination folder does not exist: ${destDir}`);
  }
  if (!st.isDirectory()) throw new ArchiveError(`destination is not a folder: ${destDir}`);
}

export function dosTime(rec: Pick<LeanRecord, 'lastModifiedDate' | 'lastModifiedTime'>): Date | undefined {
  const d = rec.lastModifiedDate;
  const t = rec.lastModifiedTime;
  if (!d) return undefined;
  const date = new Date(((d >> 9) & 0x7f) + 1980, ((d >> 5) & 0x0f) - 1, d & 0x1f, (t >> 11) & 0x1f, (t >> 5) & 0x3f, (t & 0x1f) * 2);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/**
 * Creates `dirs` (parents first) under `root`; an existing non-directory there is a hostile archive. Synchronous
 * calls, as for small files: a thread-pool round trip per folder costs more than the mkdir.
 */
export async function makeDirectories(root: string, dirs: string[]): Promise<void> {
  for (const d of dirs) {
    try {
      mkdirSync(`${root}/${d}`, 0o777);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await lstat(join(root, d));
      if (!st.isDirectory()) throw new ArchiveError('path is both a file and a directory', d, HOSTILE_ADVICE);
    }
  }
}

/**
 * Writes a small verified file with synchronous calls: for thousands of tiny files, a round trip through the thread
 * pool per call (and its promises) costs more than the calls themselves, like Info-ZIP's plain loop.
 */
export function writeSmallFile(target: string, data: Buffer, mode: number, mtime: Date | undefined): void {
  const fd = openSync(target, OPEN_FLAGS, 0o600);
  try {
    if (data.length > 0) writeSync(fd, data, 0, data.length, 0);
    fchmodSync(fd, mode);
    if (mtime) futimesSync(fd, mtime, mtime);
  } finally {
    closeSync(fd);
  }
}

/** Writes a large file from `fill`, which is given the open handle; mode and time are set once it is complete. */
export async function writeLargeFile(
  target: string,
  mode: number,
  mtime: Date | undefined,
  fill: (out: FileHandle) => Promise<number>,
): Promise<number> {
  const out = await open(target, OPEN_FLAGS, 0o600);
  try {
    const size = await fill(out);
    await out.chmod(mode);
    if (mtime) await out.utimes(mtime, mtime);
    return size;
  } finally {
    await out.close();
  }
}

/** Symlinks, after every file and directory exists (their targets were checked to stay inside). */
export async function writeSymlinks(root: string, symlinks: PlannedEntry[]): Promise<void> {
  for (const p of symlinks) await symlink(p.target!, join(root, p.path));
}

/** Explicit directory modes, deepest first, so a read-only directory does not block writing into it. */
export async function applyDirectoryModes(root: string, explicitDirs: PlannedEntry[]): Promise<void> {
  const deepestFirst = [...explicitDirs].sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const p of deepestFirst) {
    await chmod(join(root, p.path), p.mode);
    const mtime = dosTime(p.record);
    if (mtime) await utimes(join(root, p.path), mtime, mtime).catch(() => undefined);
  }
}
