// Planning, pure: from the central directory's records to the validated list of what will be written (names, types,
// methods, conflicts, symlink targets) and the declared-size cap checks. Nothing here touches the file system; the
// symlink targets are read by the caller (entry-data.ts) and checked here.
import { posix } from 'node:path';
import { ArchiveError } from '../runtime/errors.ts';
import { archiveRatioExceeded } from './bounds.ts';
import type { LeanRecord } from './central-directory.ts';
import { compileSelector } from './glob.ts';
import { entryMode, entryType, type EntryType } from './modes.ts';
import { validateEntryPath } from './validate.ts';

export interface PlannedEntry {
  record: LeanRecord;
  path: string;
  type: EntryType;
  mode: number;
  selected: boolean;
  target?: string;
  /** Bytes written (files). */
  size?: number;
}

export interface Caps {
  maxBytes: number;
  maxFiles: number;
  /** 0 = off; checked once an entry has inflated more than 10 MiB. */
  maxRatio: number;
}

export const HOSTILE_ADVICE = 'The archive is rejected as a whole; nothing was moved into place. Check the job that produced it.';
const RATIO_THRESHOLD = 10 * 1024 * 1024;

export function mb(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** "Version made by" hosts whose tools write `\` as the separator: MS-DOS/FAT, NTFS, VFAT. */
const DOS_HOSTS = new Set([0, 11, 14]);

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

/** Validates every entry's name, type and method, and the tree's shape (duplicates, entries below files or symlinks). */
export function planEntries(records: LeanRecord[], include: string[] = [], exclude: string[] = []): PlannedEntry[] {
  const select = compileSelector(include, exclude);
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
  return planned;
}

/** The symlinks of a plan, in archive order (their targets are read in that order). */
export function symlinksOf(planned: PlannedEntry[]): PlannedEntry[] {
  return planned.filter((p) => p.type === 'symlink').sort(byOffset);
}

/** Checks one symlink's target, as read from the archive, and records it. */
export function setSymlinkTarget(p: PlannedEntry, target: string): void {
  if (target.length === 0 || target.includes('\0')) throw new ArchiveError('invalid symlink target', p.path, HOSTILE_ADVICE);
  if (target.startsWith('/') || /^[A-Za-z]:/.test(target) || target.includes('\\')) {
    throw new ArchiveError(`symlink escapes the destination (absolute target ${JSON.stringify(target)})`, p.path, HOSTILE_ADVICE);
  }
  p.target = target;
}

/** Every symlink (targets set) must resolve inside the root, following the archive's other symlinks. */
export function checkSymlinks(symlinks: PlannedEntry[]): void {
  const links = new Map(symlinks.map((p) => [p.path, p.target!] as const));
  for (const p of symlinks) {
    if (!staysInside(p.path, p.target!, links)) {
      throw new ArchiveError(`symlink escapes the destination (${p.path} -> ${p.target})`, p.path, HOSTILE_ADVICE);
    }
  }
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

/**
 * Early cap checks on declared values (the real checks count inflated bytes while reading). max_files counts every
 * entry, directories and symlinks included (as documented); the compression ratio is checked per entry and across
 * the archive (many entries under the per-entry threshold add up). Returns the selected files' compressed bytes,
 * the archive-wide ratio's denominator while reading.
 */
export function checkDeclaredCaps(selected: PlannedEntry[], caps: Caps): number {
  if (selected.length > caps.maxFiles) {
    throw new ArchiveError(
      `archive has ${selected.length} entries, more than max_files (${caps.maxFiles})`,
      undefined,
      'Raise max_files if the artifact is expected to have this many files.',
    );
  }
  let declared = 0;
  let compressed = 0;
  for (const p of selected) {
    if (p.type !== 'file') continue;
    declared += p.record.uncompressedSize;
    compressed += p.record.compressedSize;
    checkRatio(caps, p.record.uncompressedSize, p.record.compressedSize, p.path);
  }
  checkArchiveRatio(caps, declared, compressed, undefined);
  if (declared > caps.maxBytes) {
    throw new ArchiveError(
      `archive declares ${mb(declared)} of data, more than max_bytes (${mb(caps.maxBytes)})`,
      undefined,
      'Raise max_bytes if the artifact is expected to be this large.',
    );
  }
  return compressed;
}

/** The compression ratio across the archive: inflated bytes so far against every selected file's compressed bytes. */
export function checkArchiveRatio(caps: Caps, inflated: number, compressed: number, path: string | undefined): void {
  if (archiveRatioExceeded(inflated, compressed, caps.maxRatio)) {
    throw new ArchiveError(
      `compression ratio above max_ratio (${caps.maxRatio}) across the archive: ${mb(inflated)} from ${mb(compressed)} compressed`,
      path,
      'This looks like a zip bomb. Raise max_ratio (or set it to 0) if the artifact is legitimately this compressible.',
    );
  }
}

export function checkRatio(caps: Caps, inflated: number, compressed: number, path: string): void {
  if (caps.maxRatio > 0 && inflated > RATIO_THRESHOLD && inflated / Math.max(compressed, 1) > caps.maxRatio) {
    throw new ArchiveError(
      `compression ratio above max_ratio (${caps.maxRatio}): ${mb(inflated)} from ${mb(compressed)} compressed`,
      path,
      'This looks like a zip bomb. Raise max_ratio (or set it to 0) if the artifact is legitimately this compressible.',
    );
  }
}

/** Directories to create: every parent of a selected entry, plus explicit directory entries; parents first. */
export function directoriesToCreate(selected: PlannedEntry[]): string[] {
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
  return [...dirs].sort();
}

export const byOffset = (a: PlannedEntry, b: PlannedEntry) => a.record.offsetToLocalFileHeader - b.record.offsetToLocalFileHeader;
