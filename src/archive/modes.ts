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
 * setuid/setgid/sticky, or for archives made on other hosts what Info-ZIP unzip makes of their DOS attributes.
 */
export function entryMode(entry: ZipEntryAttributes): number {
  const type = entryType(entry);
  const mode = unixMode(entry);
  // Like Info-ZIP unzip: a unix mode is used even without file-type bits (Python's writestr stores just 0o600).
  if (mode !== undefined) return mode & 0o777;
  if (type === 'symlink') return 0o777;
  return dosMode(entry, type);
}

const FAT_HOST = 0;

/**
 * Info-ZIP unzip's rule (unix.c mapattr) for archives made elsewhere: the DOS read-only and directory bits give
 * w and x; a FAT-made entry keeps the unix bits stored above them when their owner part agrees with those
 * DOS bits (PKZip and Info-ZIP for Unix on FAT do that); otherwise 0666/0777 minus the umask.
 */
function dosMode(entry: ZipEntryAttributes, type: EntryType): number {
  const attr = entry.externalFileAttributes >>> 0;
  const dosBits = ((attr & 1) === 0 ? 2 : 0) | ((attr & DOS_DIRECTORY) !== 0 ? 1 : 0);
  const high = attr >>> 16;
  let mode = (0o444 | (dosBits << 6) | (dosBits << 3) | dosBits) & ~umask();
  if (entry.versionMadeBy >> 8 === FAT_HOST && (high & 0o700) === (0o400 | (dosBits << 6))) mode = high & 0o777;
  // A directory must stay traversable, whatever a foreign archiver stored.
  return type === 'directory' && (mode & 0o100) === 0 ? 0o777 & ~umask() : mode;
}
