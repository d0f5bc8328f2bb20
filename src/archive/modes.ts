// File types and permission bits from a zip central-directory record.
import { umask } from '../util/umask.ts';

/** The central-directory fields these helpers read (unzipper's entry objects have them). */
export interface ZipEntryAttributes {
  path: string;
  versionMadeBy: number;
  externalFileAttributes: number;
}

export type EntryType = 'file' | 'directory' | 'symlink';

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
const DOS_DIRECTORY = 0x10;

/** Unix (3) and OS X (19) hosts store a st_mode in the high 16 bits of the external attributes. */
function unixMode(entry: ZipEntryAttributes): number | undefined {
  const host = entry.versionMadeBy >> 8;
  if (host !== 3 && host !== 19) return undefined;
  const mode = entry.externalFileAttributes >>> 16;
  return mode === 0 ? undefined : mode;
}

export function entryType(entry: ZipEntryAttributes): EntryType {
  if (entry.path.endsWith('/')) return 'directory';
  const mode = unixMode(entry);
  if (mode !== undefined && (mode & S_IFMT) === S_IFLNK) return 'symlink';
  if (mode !== undefined && (mode & S_IFMT) === S_IFDIR) return 'directory';
  if ((entry.externalFileAttributes & DOS_DIRECTORY) !== 0 && (mode === undefined || (mode & S_IFMT) === 0)) return 'directory';
  return 'file';
}

/**
 * Permission bits to apply: the archive's unix mode (made on a unix/OS X host, non-zero) without
 * setuid/setgid/sticky, or (archives made on DOS/FAT hosts, or without a mode) 0644 for files / 0755 for directories minus the process umask, like Info-ZIP unzip.
 */
export function entryMode(entry: ZipEntryAttributes): number {
  const type = entryType(entry);
  const mode = unixMode(entry);
  // Like Info-ZIP unzip: a unix mode is used even without file-type bits (Python's writestr stores just 0o600).
  if (mode !== undefined) return mode & 0o777;
  if (type === 'symlink') return 0o777;
  return (type === 'directory' ? 0o755 : 0o644) & ~umask();
}
