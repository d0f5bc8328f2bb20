// Entry-name validation: every name in an archive must map to a safe relative POSIX path inside the destination.
import { ArchiveError } from '../runtime/errors.ts';

const ADVICE = 'The archive is rejected as a whole; nothing was written. Check the job that produced it.';

function reject(reason: string, name: string): never {
  throw new ArchiveError(`unsafe path in archive (${reason})`, name, ADVICE);
}

/**
 * Returns the safe relative POSIX path for an entry name (a single trailing `/` of a directory entry is stripped,
 * `./` segments are dropped). Throws ArchiveError for absolute paths, drive letters, `..` segments, backslashes
 * (unless `dosSeparators`: the entry was made on a DOS/Windows host),
 * NUL, empty segments, and names that normalise to nothing.
 */
export function validateEntryPath(name: string, opts: { dosSeparators?: boolean } = {}): string {
  if (typeof name !== 'string' || name.length === 0) reject('empty name', String(name));
  if (name.includes('\0')) reject('NUL character', name);
  // Archives made on DOS/Windows hosts may separate with backslashes; Info-ZIP unzip reads them as "/",
  // and so do we, before the same checks. Anywhere else a backslash is a trick (`a\..\..\x`): reject.
  if (opts.dosSeparators && name.includes('\\')) return validateEntryPath(name.replace(/\\/g, '/'));
  if (name.includes('\\')) reject('backslash', name);
  if (name.startsWith('/')) reject('absolute path', name);
  if (/^[A-Za-z]:/.test(name)) reject('drive letter', name);
  const trimmed = name.endsWith('/') ? name.slice(0, -1) : name;
  const out: string[] = [];
  for (const segment of trimmed.split('/')) {
    if (segment === '.') continue;
    if (segment === '..') reject("'..' segment", name);
    if (segment === '') reject('empty path segment', name);
    out.push(segment);
  }
  if (out.length === 0) reject('name is empty after normalising', name);
  const path = out.join('/');
  // The name itself when unchanged (the usual case): one string per entry is kept, not two.
  return path === name ? name : path;
}
