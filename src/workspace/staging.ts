// Staging folders beside the destination: everything is unpacked there first, and commitStaging is the only step that
// touches the destination. A failure before commitStaging leaves the destination untouched.
import { chmod, lstat, mkdir, mkdtemp, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { RelayError } from '../errors.ts';
import { umask } from '../util/umask.ts';

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return null;
    throw err;
  }
}

/** Creates an empty staging folder beside `dest` (same filesystem, so the final move is a rename). */
export async function createStaging(dest: string): Promise<string> {
  const abs = resolve(dest);
  const parent = dirname(abs);
  await mkdir(parent, { recursive: true });
  try {
    return await mkdtemp(join(parent, `.${basename(abs) || 'root'}.artifact-relay-`));
  } catch (err) {
    // A destination whose parent is not writable (path: . as a non-root user in a runner's /builds/<group>):
    // stage inside the destination instead; renames stay on one filesystem either way.
    const st = await lstatOrNull(abs);
    if (!st?.isDirectory() || !['EACCES', 'EPERM', 'EROFS'].includes(errno(err) ?? '')) throw err;
    return mkdtemp(join(abs, '.artifact-relay-staging-'));
  }
}

/**
 * Which of `relPaths` already exist under `dest` as something other than a directory (existing directories merge),
 * or cannot be created because a parent on the way is not a directory. File-versus-directory clashes are also
 * caught by commitStaging before it changes anything.
 */
export async function findConflicts(dest: string, relPaths: string[]): Promise<string[]> {
  const root = resolve(dest);
  const rootSt = await lstatOrNull(root);
  if (!rootSt) return [];
  if (!rootSt.isDirectory()) return [...relPaths];
  const known = new Map<string, 'dir' | 'other' | 'missing'>();
  const kind = async (rel: string): Promise<'dir' | 'other' | 'missing'> => {
    let k = known.get(rel);
    if (k) return k;
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    const pk = parent ? await kind(parent) : 'dir';
    if (pk !== 'dir') k = pk === 'other' ? 'other' : 'missing';
    else {
      const st = await lstatOrNull(join(root, rel));
      k = !st ? 'missing' : st.isDirectory() ? 'dir' : 'other';
    }
    known.set(rel, k);
    return k;
  };
  const conflicts: string[] = [];
  for (const rel of relPaths) {
    if ((await kind(rel.replace(/\/+$/, ''))) === 'other') conflicts.push(rel);
  }
  return conflicts;
}

interface Move {
  from: string;
  to: string;
}

/** Plans a merge of `src` into the existing directory `dst`; throws before anything changes. */
async function planMerge(
  src: string,
  dst: string,
  rel: string,
  overwrite: boolean,
  moves: Move[],
  conflicts: string[],
  clashes: string[],
): Promise<void> {
  for (const name of (await readdir(src)).sort()) {
    const from = join(src, name);
    const to = join(dst, name);
    const r = rel ? `${rel}/${name}` : name;
    const sst = await lstat(from);
    const dst0 = await lstatOrNull(to);
    if (!dst0) {
      moves.push({ from, to });
    } else if (sst.isDirectory()) {
      if (dst0.isDirectory()) await planMerge(from, to, r, overwrite, moves, conflicts, clashes);
      else clashes.push(`${r} (a folder in the archive, ${dst0.isSymbolicLink() ? 'a symlink' : 'a file'} in the destination)`);
    } else if (dst0.isDirectory()) {
      clashes.push(`${r} (a file in the archive, a folder in the destination)`);
    } else if (overwrite) {
      moves.push({ from, to });
    } else {
      conflicts.push(r);
    }
  }
}

/**
 * Moves everything in `staging` into `dest`. When `dest` does not exist this is one rename. Otherwise entries are
 * merged: directories merge into existing directories, files replace files when `overwrite` (else nothing is changed
 * and RelayError lists the conflicts), a file replacing a folder or the reverse is a RelayError. Checks happen before
 * the first rename. Afterwards `staging` is removed.
 */
/** overwrite is false and these files exist in `where`. */
export function conflictError(conflicts: string[], where: string): RelayError {
  return new RelayError(
    `${conflicts.length} file(s) already exist in ${where} and overwrite is false: ${conflicts.slice(0, 5).join(', ')}${conflicts.length > 5 ? ', ...' : ''}`,
    'Set overwrite: true to replace them, or choose another path.',
  );
}

export async function commitStaging(staging: string, dest: string, opts: { overwrite: boolean }): Promise<void> {
  const src = resolve(staging);
  const dst = resolve(dest);
  const dstSt = await lstatOrNull(dst);
  if (!dstSt) {
    await mkdir(dirname(dst), { recursive: true });
    // mkdtemp made the staging folder 0700: give the new destination the usual folder mode.
    await chmod(src, 0o777 & ~umask());
    try {
      await rename(src, dst);
    } catch (err) {
      throw new RelayError(
        `Cannot move the unpacked files into ${dest}: ${(err as Error).message}`,
        'The staging folder is created beside the destination; make sure the destination folder is writable.',
      );
    }
    return;
  }
  if (!dstSt.isDirectory()) {
    throw new RelayError(
      `The destination ${dest} exists and is ${dstSt.isSymbolicLink() ? 'a symlink' : 'not a folder'}.`,
      'Choose a path that is a folder or does not exist yet.',
    );
  }
  const moves: Move[] = [];
  const conflicts: string[] = [];
  const clashes: string[] = [];
  await planMerge(src, dst, '', opts.overwrite, moves, conflicts, clashes);
  if (clashes.length > 0) {
    throw new RelayError(
      `${clashes.length} path(s) are a file on one side and a folder on the other, in ${dest}: ${clashes.slice(0, 5).join(', ')}${clashes.length > 5 ? ', ...' : ''}`,
      'Remove them from the destination, or choose another path.',
    );
  }
  if (conflicts.length > 0) throw conflictError(conflicts, dest);
  for (const m of moves) {
    try {
      await rename(m.from, m.to);
    } catch (err) {
      if (errno(err) === 'EACCES' || errno(err) === 'EPERM') {
        // A read-only folder in staging blocks moving its children out: it is being emptied anyway.
        await chmod(dirname(m.from), 0o700);
        await rename(m.from, m.to);
      } else {
        throw new RelayError(`Cannot move ${m.from} into ${dest}: ${(err as Error).message}`);
      }
    }
  }
  await discardStaging(src);
}

async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o700).catch(() => undefined);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const p = join(dir, name);
    const st = await lstatOrNull(p);
    if (st?.isDirectory()) await makeWritable(p);
  }
}

/** Removes a staging folder (rm -rf); a missing folder is fine. Read-only folders inside are made writable first. */
export async function discardStaging(staging: string): Promise<void> {
  try {
    await rm(staging, { recursive: true, force: true });
  } catch (err) {
    if (errno(err) !== 'EACCES' && errno(err) !== 'EPERM') throw err;
    await makeWritable(staging);
    await rm(staging, { recursive: true, force: true });
  }
  await rmdir(staging).catch(() => undefined);
}
