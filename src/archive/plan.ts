// Planning, pure: from the central directory's records to the validated list of what will be written (names, types,
// methods, conflicts, symlink targets) and the declared-size cap checks. Nothing here touches the file system; the
// symlink targets are read by the caller (entry-data.ts) and checked here.
import { posix } from 'node:path';
import { ArchiveError } from '../runtime/errors.ts';
import { archiveRatioExceeded } from './bounds.ts';
import type { Directory, LeanRecord } from './central-directory.ts';
import { compileSelector } from './glob.ts';
import { entryMode, entryType, type EntryType } from './modes.ts';
import { validateEntryPath } from './validate.ts';

/** One entry of a Plan, built when it is needed (Plan.entry): the plan itself holds no object per entry. */
export interface PlannedEntry {
  /** Its index in the directory (and the plan). */
  index: number;
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

function checkMethod(rec: Pick<LeanRecord, 'flags' | 'compressionMethod'>, path: string): void {
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

const TYPES: readonly EntryType[] = ['file', 'directory', 'symlink'];
const TYPE_CODE: Record<EntryType, number> = { file: 0, directory: 1, symlink: 2 };
const TYPE_MASK = 3;
/** Flag beside the type: the safe path is the record's name unchanged (the same string). */
const SAME_NAME = 4;

/**
 * The validated entries, struct of arrays (index i: the directory's record i): the safe path (the record's own name
 * string when unchanged), type, mode and whether include/exclude select it; symlink targets once read.
 */
export class Plan {
  readonly targets = new Map<number, string>();
  constructor(
    readonly directory: Directory,
    /** The safe paths that differ from their record's name (a directory's trailing slash, `./`, DOS separators). */
    private readonly renamed: Map<number, string>,
    private readonly types: Uint8Array,
    readonly modes: Uint16Array,
    private readonly picked: Uint8Array,
  ) {}

  get length(): number {
    return this.types.length;
  }

  /** Entry i's safe path (decoded from the directory's names when it is the record's name). */
  path(i: number): string {
    return (this.types[i]! & SAME_NAME) !== 0 ? this.directory.path(i) : this.renamed.get(i)!;
  }

  type(i: number): EntryType {
    return TYPES[this.types[i]! & TYPE_MASK]!;
  }

  selected(i: number): boolean {
    return this.picked[i] === 1;
  }

  entry(i: number): PlannedEntry {
    const path = this.path(i);
    const p: PlannedEntry = {
      index: i,
      record: this.directory.record(i, (this.types[i]! & SAME_NAME) !== 0 ? path : undefined),
      path,
      type: this.type(i),
      mode: this.modes[i]!,
      selected: this.selected(i),
    };
    const target = this.targets.get(i);
    if (target !== undefined) p.target = target;
    return p;
  }

  /** Indices of the selected entries (of `type`, when given), in archive order. */
  indices(type?: EntryType): Uint32Array {
    const code = type === undefined ? -1 : TYPE_CODE[type];
    let n = 0;
    const wanted = (i: number) => this.picked[i] === 1 && (code < 0 || (this.types[i]! & TYPE_MASK) === code);
    for (let i = 0; i < this.length; i++) if (wanted(i)) n++;
    const out = new Uint32Array(n);
    n = 0;
    for (let i = 0; i < this.length; i++) if (wanted(i)) out[n++] = i;
    return out;
  }

  /** The entries at `order[from..to)`. */
  entries(order: Uint32Array, from = 0, to = order.length): PlannedEntry[] {
    const out: PlannedEntry[] = [];
    for (let k = from; k < to; k++) out.push(this.entry(order[k]!));
    return out;
  }

  /** Every entry of `type` (selected or not), in archive order. */
  allOfType(type: EntryType): PlannedEntry[] {
    const out: PlannedEntry[] = [];
    for (let i = 0; i < this.length; i++) if ((this.types[i]! & TYPE_MASK) === TYPE_CODE[type]) out.push(this.entry(i));
    return out;
  }

  /** `order` sorted by the entries' local header offsets (archive order), in place. */
  byOffset(order: Uint32Array): Uint32Array {
    const offsets = this.directory.offsetToLocalFileHeader;
    return order.sort((a, b) => offsets[a]! - offsets[b]! || a - b);
  }
}

/** What modes.ts and checkMethod read of a record, filled in place for each record in turn (no object per record). */
const view = { path: '', versionMadeBy: 0, externalFileAttributes: 0, flags: 0, compressionMethod: 0 };

/** FNV-1a over a string's UTF-16 code units: equal paths are found by sorting hashes, not with a Map of every path. */
function hashOf(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const INDEX_BITS = 2 ** 21;

/** The first entry (in archive order) among [0, count) whose path an earlier entry has, or undefined. */
function firstDuplicate(plan: Plan, hashes: Uint32Array, count: number): number | undefined {
  // Sorted by hash, then index: a hash and an index below 2^21 make one exact double (2^32 * 2^21 = 2^53).
  let order: ArrayLike<number>;
  const indexOf = (k: number) => (count <= INDEX_BITS ? order[k]! % INDEX_BITS : order[k]!);
  const hashAt = (k: number) => hashes[indexOf(k)]!;
  if (count <= INDEX_BITS) {
    const keys = new Float64Array(count);
    for (let i = 0; i < count; i++) keys[i] = hashes[i]! * INDEX_BITS + i;
    order = keys.sort();
  } else {
    const idx = new Uint32Array(count);
    for (let i = 0; i < count; i++) idx[i] = i;
    order = idx.sort((a, b) => hashes[a]! - hashes[b]! || a - b);
  }
  let first: number | undefined;
  for (let k = 0; k < count; ) {
    let end = k + 1;
    while (end < count && hashAt(end) === hashAt(k)) end++;
    if (end - k > 1) {
      // Entries of one hash, in archive order: one whose path an earlier one of them has is a duplicate.
      const seen = new Set<string>();
      for (let m = k; m < end; m++) {
        const i = indexOf(m);
        const path = plan.path(i);
        if (seen.has(path)) {
          if (first === undefined || i < first) first = i;
        } else seen.add(path);
      }
    }
    k = end;
  }
  return first;
}

/** A file or symlink may not also be a parent of another entry; the first such entry (archive order) is reported. */
function checkParents(plan: Plan): void {
  // Every folder the entries imply: far fewer than the entries as a rule, where a Map of every path would not be.
  const folders = new Set<string>();
  for (let k = 0; k < plan.length; k++) {
    const path = plan.path(k);
    for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) {
      const parent = path.slice(0, i);
      if (folders.has(parent)) break; // its own parents are there already
      folders.add(parent);
    }
  }
  let clash = false;
  for (let k = 0; k < plan.length && !clash; k++) clash = plan.type(k) !== 'directory' && folders.has(plan.path(k));
  if (!clash) return;
  // Some entry is below a file or symlink: find which, as the error names it (deepest parent of the first such entry).
  const byPath = new Map<string, number>();
  for (let k = 0; k < plan.length; k++) byPath.set(plan.path(k), k);
  for (let k = 0; k < plan.length; k++) {
    const path = plan.path(k);
    for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) {
      const parent = byPath.get(path.slice(0, i));
      if (parent === undefined) continue;
      if (plan.type(parent) === 'symlink')
        throw new ArchiveError(`entry inside a symlink (${plan.path(parent)} is a symlink)`, path, HOSTILE_ADVICE);
      if (plan.type(parent) === 'file')
        throw new ArchiveError(`path is both a file and a directory (${plan.path(parent)})`, path, HOSTILE_ADVICE);
    }
  }
}

/** Validates every entry's name, type and method, and the tree's shape (duplicates, entries below files or symlinks). */
export function planEntries(directory: Directory, include: string[] = [], exclude: string[] = []): Plan {
  const select = compileSelector(include, exclude);
  const n = directory.length;
  const types = new Uint8Array(n);
  const modes = new Uint16Array(n);
  const picked = new Uint8Array(n);
  const renamed = new Map<number, string>();
  const hashes = new Uint32Array(n);
  // Entry by entry as before: the first invalid one is reported, unless an earlier one duplicates a path.
  let invalid: unknown;
  let valid = n;
  for (let i = 0; i < n; i++) {
    let path: string;
    let type: EntryType;
    try {
      view.path = directory.path(i);
      view.versionMadeBy = directory.versionMadeBy[i]!;
      view.externalFileAttributes = directory.externalFileAttributes[i]!;
      view.flags = directory.flags[i]!;
      view.compressionMethod = directory.compressionMethod[i]!;
      path = validateEntryPath(view.path, { dosSeparators: DOS_HOSTS.has(view.versionMadeBy >> 8) });
      type = entryType(view);
      if (type !== 'directory') checkMethod(view, path);
      else if ((view.flags & 1) !== 0) throw new ArchiveError('encrypted entries are not supported', path);
    } catch (err) {
      invalid = err;
      valid = i;
      break;
    }
    if (path !== view.path) renamed.set(i, path);
    types[i] = TYPE_CODE[type] | (path === view.path ? SAME_NAME : 0);
    hashes[i] = hashOf(path);
    modes[i] = entryMode(view);
    picked[i] = select(path) ? 1 : 0;
  }
  const plan = new Plan(directory, renamed, types, modes, picked);
  const duplicate = firstDuplicate(plan, hashes, valid);
  if (duplicate !== undefined) throw new ArchiveError('duplicate entry in archive', plan.path(duplicate), HOSTILE_ADVICE);
  if (invalid !== undefined) throw invalid;
  checkParents(plan);
  return plan;
}

/** The symlinks of a plan (selected or not: each target is checked), in archive order (their targets are read in that order). */
export function symlinksOf(plan: Plan): PlannedEntry[] {
  return plan.allOfType('symlink').sort(byOffset);
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
export function checkDeclaredCaps(plan: Plan, caps: Caps): number {
  let count = 0;
  for (let i = 0; i < plan.length; i++) if (plan.selected(i)) count++;
  if (count > caps.maxFiles) {
    throw new ArchiveError(
      `archive has ${count} entries, more than max_files (${caps.maxFiles})`,
      undefined,
      'Raise max_files if the artifact is expected to have this many files.',
    );
  }
  let declared = 0;
  let compressed = 0;
  const { uncompressedSize, compressedSize } = plan.directory;
  for (let i = 0; i < plan.length; i++) {
    if (!plan.selected(i) || plan.type(i) !== 'file') continue;
    declared += uncompressedSize[i]!;
    compressed += compressedSize[i]!;
    if (uncompressedSize[i]! > RATIO_THRESHOLD) checkRatio(caps, uncompressedSize[i]!, compressedSize[i]!, plan.path(i)); // (below: never refused)
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

/**
 * An entry's path, or how to make it: the small-entry loop names an entry only when it refuses one (83,000 path strings
 * held while their batches are written would outlive young-generation GCs).
 */
export type PathOf = string | (() => string);
export const pathOf = (p: PathOf): string => (typeof p === 'function' ? p() : p);

/** The compression ratio across the archive: inflated bytes so far against every selected file's compressed bytes. */
export function checkArchiveRatio(caps: Caps, inflated: number, compressed: number, path: PathOf | undefined): void {
  if (archiveRatioExceeded(inflated, compressed, caps.maxRatio)) {
    throw new ArchiveError(
      `compression ratio above max_ratio (${caps.maxRatio}) across the archive: ${mb(inflated)} from ${mb(compressed)} compressed`,
      path === undefined ? undefined : pathOf(path),
      'This looks like a zip bomb. Raise max_ratio (or set it to 0) if the artifact is legitimately this compressible.',
    );
  }
}

export function checkRatio(caps: Caps, inflated: number, compressed: number, path: PathOf): void {
  if (caps.maxRatio > 0 && inflated > RATIO_THRESHOLD && inflated / Math.max(compressed, 1) > caps.maxRatio) {
    throw new ArchiveError(
      `compression ratio above max_ratio (${caps.maxRatio}): ${mb(inflated)} from ${mb(compressed)} compressed`,
      pathOf(path),
      'This looks like a zip bomb. Raise max_ratio (or set it to 0) if the artifact is legitimately this compressible.',
    );
  }
}

/** Directories to create: every parent of a selected entry, plus explicit directory entries; parents first. */
export function directoriesToCreate(plan: Plan): string[] {
  const dirs = new Set<string>();
  for (let k = 0; k < plan.length; k++) {
    if (!plan.selected(k)) continue;
    const path = plan.path(k);
    const full = plan.type(k) === 'directory' ? path : posix.dirname(path);
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

const byOffset = (a: PlannedEntry, b: PlannedEntry) => a.record.offsetToLocalFileHeader - b.record.offsetToLocalFileHeader;
