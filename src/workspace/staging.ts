// Run folders beside the destination: everything is unpacked into staging there first, and commitStaging is the only
// step that touches the destination, as a transaction with a journal (see Journal). A failure before or during
// commitStaging leaves the destination as it was; a run killed outright leaves a journal that recoverInterrupted
// (the next run, or `artifact-relay recover`) rolls back.
import { chmod, lstat, mkdir, mkdtemp, open, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { RelayError } from '../runtime/errors.ts';
import { enterCritical, interruptedBy, keepOnInterrupt, noteDestination, waitForSignal } from '../runtime/lifecycle.ts';
import { umask } from '../util/umask.ts';
import { checkFinalLinks } from './links.ts';

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

/**
 * One run's working folder, beside the destination (same filesystem, so every move is a rename):
 * `.<dest name>.artifact-relay-<pid>-XXXXXX/` holding `owner.json` (pid, host), `staging/` (what is committed),
 * `download/` (archives), and during a commit into an existing destination `journal.json` and `aside/` (the files
 * being replaced). A run that was killed leaves it behind; the next run (recoverInterrupted) rolls its journal back
 * and removes it.
 */
export interface Run {
  root: string;
  staging: string;
  download: string;
  dest: string;
  /** The first folder createRun had to create on the way to the destination's parent (removed again on failure). */
  createdParent?: string;
}

const RUN_IN_PARENT = /^\.(.*)\.artifact-relay-(\d+)-[A-Za-z0-9]{6}$/;
const RUN_IN_DEST = /^\.artifact-relay-(\d+)-[A-Za-z0-9]{6}$/;
const JOURNAL = 'journal.json';
const JOURNAL_FORMAT = 'artifact-relay-journal/1';

export async function createRun(dest: string): Promise<Run> {
  const abs = resolve(dest);
  const parent = dirname(abs);
  const createdParent = await mkdir(parent, { recursive: true });
  let root: string;
  try {
    root = await mkdtemp(join(parent, `.${basename(abs) || 'root'}.artifact-relay-${process.pid}-`));
  } catch (err) {
    // A destination whose parent is not writable (path: . as a non-root user in a runner's /builds/<group>):
    // work inside the destination instead; renames stay on one filesystem either way.
    const st = await lstatOrNull(abs);
    if (!st?.isDirectory() || !['EACCES', 'EPERM', 'EROFS'].includes(errno(err) ?? '')) throw err;
    root = await mkdtemp(join(abs, `.artifact-relay-${process.pid}-`));
  }
  await writeFile(
    join(root, 'owner.json'),
    `${JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() })}\n`,
  );
  const staging = join(root, 'staging');
  const download = join(root, 'download');
  await mkdir(staging);
  await mkdir(download);
  return { root, staging, download, dest: abs, createdParent };
}

/**
 * Removes a run's folder, unless a commit journal is still in it (a rollback that failed: recoverInterrupted needs
 * it), and the parent folders createRun created when the destination was not created after all.
 */
export async function discardRun(run: Run): Promise<void> {
  if (await lstatOrNull(join(run.root, JOURNAL))) return;
  await discardStaging(run.root);
  if (!run.createdParent || (await lstatOrNull(run.dest))) return;
  for (let d = dirname(run.dest); d.startsWith(run.createdParent); d = dirname(d)) {
    if (
      !(await rmdir(d).then(
        () => true,
        () => false,
      ))
    )
      break;
    if (d === run.createdParent) break;
  }
}

/**
 * Which of `relPaths` already exist under `dest` as something other than a directory (existing directories merge),
 * or cannot be created because a parent on the way is not a directory. File-versus-directory clashes are also
 * caught by commitStaging before it changes anything.
 */
export async function findConflicts(dest: string, relPaths: Iterable<string>): Promise<string[]> {
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

/** Plans a merge of `src` into the existing directory `dst`; throws before anything changes. */
async function planMerge(
  src: string,
  dst: string,
  rel: string,
  overwrite: boolean,
  moves: JournalMove[],
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
      moves.push({ path: r, replaces: false });
    } else if (sst.isDirectory()) {
      if (dst0.isDirectory()) await planMerge(from, to, r, overwrite, moves, conflicts, clashes);
      else clashes.push(`${r} (a folder in the archive, ${dst0.isSymbolicLink() ? 'a symlink' : 'a file'} in the destination)`);
    } else if (dst0.isDirectory()) {
      clashes.push(`${r} (a file in the archive, a folder in the destination)`);
    } else if (overwrite) {
      moves.push({ path: r, replaces: true });
    } else {
      conflicts.push(r);
    }
  }
}

/** overwrite is false and these files exist in `where`. */
export function conflictError(conflicts: string[], where: string): RelayError {
  return new RelayError(
    `${conflicts.length} file(s) already exist in ${where} and overwrite is false: ${conflicts.slice(0, 5).join(', ')}${conflicts.length > 5 ? ', ...' : ''}`,
    'Set overwrite: true to replace them, or choose another path.',
  );
}

/**
 * The commit journal (`journal.json` in the run folder), written once before the first change to an existing
 * destination and removed at the commit point, after the last move. While it exists, the destination may hold part
 * of the new tree; rolling back needs nothing but the journal and the filesystem, so it is idempotent:
 * for each move, last first: when `staging/<path>` is gone the new entry was placed, and it is moved back there;
 * when `aside/<index>` exists the entry it replaced is moved back to `dest/<path>`.
 */
interface Journal {
  format: typeof JOURNAL_FORMAT;
  pid: number;
  host: string;
  /** Absolute paths: the destination, the folder the moves come from, the folder replaced entries wait in. */
  dest: string;
  staging: string;
  aside: string;
  /** In order; move i first renames `dest/path` to `aside/i` when it `replaces`, then `staging/path` to `dest/path`. */
  moves: JournalMove[];
}

interface JournalMove {
  path: string;
  replaces: boolean;
}

/** One change the commit (or its rollback) is about to make; `index` counts every step of the commit from 0. */
export interface CommitStep {
  index: number;
  phase: 'journal' | 'aside' | 'place' | 'commit' | 'restore' | 'unplace';
  path?: string;
}

export interface CommitOptions {
  overwrite: boolean;
  /**
   * The caller wrote every entry of `staging` and none was a symlink: no new link can point outside, and the staged
   * tree is not walked for links (on 20,000 files in 1,000 folders that walk costs 0.2 s).
   */
  linkFree?: boolean;
  /** The run folder that holds the journal and aside/ (default: the folder around `staging`). */
  workDir?: string;
  /**
   * Called before each step; a throw is a failure of that step (fault injection, or pauseAtStep in the tests).
   */
  onStep?: (step: CommitStep) => void | Promise<void>;
}

/**
 * A commit hook for the tests (ARTIFACT_RELAY_TEST_COMMIT_PAUSE, read into the fetch settings): at step `at`,
 * announce it on stderr and wait for a signal.
 */
export function pauseAtStep(at: number): NonNullable<CommitOptions['onStep']> {
  return async (step) => {
    if (step.index !== at) return;
    process.stderr.write(`artifact-relay: commit paused at step ${step.index} (${step.phase}${step.path ? ` ${step.path}` : ''})\n`);
    await waitForSignal();
  };
}

class Interrupted extends Error {}

async function renameOut(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if (errno(err) !== 'EACCES' && errno(err) !== 'EPERM') throw err;
    // A read-only folder in staging blocks moving its children out: it is being emptied anyway.
    await chmod(dirname(from), 0o700);
    await rename(from, to);
  }
}

async function writeJournal(path: string, journal: Journal): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(journal)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/**
 * Undoes a journal's moves (see Journal). Every step is attempted; throws (the journal kept) when one failed.
 * Returns how many new entries were taken out again and how many replaced ones were put back.
 */
async function rollback(
  journalFile: string,
  journal: Journal,
  onStep?: CommitOptions['onStep'],
  counter = { i: 0 },
): Promise<{ unplaced: number; restored: number }> {
  const failures: string[] = [];
  let restored = 0;
  let unplaced = 0;
  for (let i = journal.moves.length - 1; i >= 0; i--) {
    const m = journal.moves[i];
    const from = join(journal.staging, m.path);
    const to = join(journal.dest, m.path);
    const aside = join(journal.aside, String(i));
    try {
      if (!(await lstatOrNull(from)) && (await lstatOrNull(to))) {
        await onStep?.({ index: counter.i++, phase: 'unplace', path: m.path });
        await rename(to, from);
        unplaced += 1;
      }
      if (m.replaces && (await lstatOrNull(aside))) {
        await onStep?.({ index: counter.i++, phase: 'restore', path: m.path });
        await rename(aside, to);
        restored += 1;
      }
    } catch (err) {
      failures.push(`${m.path} (${(err as Error).message})`);
    }
  }
  if (failures.length > 0) {
    throw new RelayError(
      `the rollback could not restore ${failures.length} path(s) in ${journal.dest}: ${failures.slice(0, 3).join(', ')}${failures.length > 3 ? ', ...' : ''}`,
      `The journal ${journalFile} is kept: run \`artifact-relay recover --path ${journal.dest}\` (the next fetch into it does that first).`,
    );
  }
  await rm(journalFile, { force: true });
  return { unplaced, restored };
}

/**
 * Moves everything in `staging` into `dest`, as a transaction. When `dest` does not exist this is one rename.
 * Otherwise entries are merged: directories merge into existing directories, files replace files when `overwrite`
 * (else nothing is changed and RelayError lists the conflicts), a file replacing a folder or the reverse is a
 * RelayError, and every new symlink must resolve inside `dest` as it will be afterwards (links already there
 * included). All checks happen before the first change. Then a journal is written, each replaced entry is moved
 * aside before its replacement moves in, and only after the last move is the journal removed (the commit point).
 * Any failure or signal (SIGINT, SIGTERM, SIGHUP) before that point rolls back to exactly the previous tree.
 * Afterwards `staging` is removed.
 */
export async function commitStaging(staging: string, dest: string, opts: CommitOptions): Promise<void> {
  const src = resolve(staging);
  const dst = resolve(dest);
  const onStep = opts.onStep;
  const dstSt = await lstatOrNull(dst);
  if (dstSt && !dstSt.isDirectory()) {
    throw new RelayError(
      `The destination ${dest} exists and is ${dstSt.isSymbolicLink() ? 'a symlink' : 'not a folder'}.`,
      'Choose a path that is a folder or does not exist yet.',
    );
  }
  const moves: JournalMove[] = [];
  if (dstSt) {
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
  }
  if (!opts.linkFree) await checkFinalLinks(src, dstSt ? dst : undefined);

  const leave = enterCritical();
  try {
    if (!dstSt) {
      await mkdir(dirname(dst), { recursive: true });
      // The staging folder may be 0700: give the new destination the usual folder mode.
      await chmod(src, 0o777 & ~umask());
      try {
        await onStep?.({ index: 0, phase: 'place', path: '.' });
        if (interruptedBy()) throw new Interrupted();
        await rename(src, dst);
      } catch (err) {
        // Leaving the critical section exits with the signal's code (without signal handlers, this error stands).
        if (err instanceof Interrupted) throw new RelayError(`Interrupted by ${interruptedBy()}: the destination is unchanged.`);
        throw new RelayError(
          `Cannot move the unpacked files into ${dest}: ${(err as Error).message}`,
          'The staging folder is created beside the destination; make sure the destination folder is writable.',
        );
      }
      noteDestination({ state: 'updated' });
      return;
    }
    await transaction(src, dst, dest, moves, opts.workDir ?? dirname(src), onStep);
  } finally {
    leave();
  }
}

async function transaction(
  src: string,
  dst: string,
  dest: string,
  moves: JournalMove[],
  workDir: string,
  onStep: CommitOptions['onStep'],
): Promise<void> {
  const journalFile = join(workDir, JOURNAL);
  const journal: Journal = {
    format: JOURNAL_FORMAT,
    pid: process.pid,
    host: hostname(),
    dest: dst,
    staging: src,
    aside: join(workDir, 'aside'),
    moves,
  };
  const counter = { i: 0 };
  const step = async (phase: CommitStep['phase'], path?: string) => {
    await onStep?.({ index: counter.i++, phase, path });
    if (interruptedBy()) throw new Interrupted();
  };
  let journaled = false;
  try {
    await step('journal');
    await mkdir(journal.aside, { recursive: true });
    await writeJournal(journalFile, journal);
    journaled = true;
    for (const [i, m] of moves.entries()) {
      if (m.replaces) {
        await step('aside', m.path);
        await rename(join(dst, m.path), join(journal.aside, String(i)));
      }
      await step('place', m.path);
      await renameOut(join(src, m.path), join(dst, m.path));
    }
    await step('commit');
    await rm(journalFile); // the commit point
  } catch (err) {
    const why = err instanceof Interrupted ? `interrupted by ${interruptedBy()}` : (err as Error).message;
    if (journaled) {
      try {
        await rollback(journalFile, journal, onStep, counter);
      } catch (failed) {
        const detail = `${(failed as RelayError).message}. ${(failed as RelayError).advice ?? ''}`.trim();
        noteDestination({ state: 'damaged', detail });
        keepOnInterrupt(workDir);
        throw new RelayError(`Cannot move the unpacked files into ${dest} (${why}), and ${detail}`);
      }
    }
    // Leaving the critical section exits with the signal's code (without signal handlers, this error stands).
    if (err instanceof Interrupted)
      throw new RelayError(`Interrupted by ${interruptedBy()} during the commit: every change was rolled back.`);
    throw new RelayError(
      `Cannot move the unpacked files into ${dest}: ${why}. Every change was rolled back: the destination is as it was.`,
      'Make sure the destination is writable and its filesystem has room.',
    );
  }
  noteDestination({ state: 'updated' });
  await rm(journal.aside, { recursive: true, force: true }).catch(() => undefined);
  await discardStaging(src);
}

function isInside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errno(err) === 'EPERM';
  }
}

/** A run folder is stale when its process is gone: another host, our own pid (reused), or no such process. */
async function stale(root: string, pidFromName: number): Promise<boolean> {
  let owner: { pid?: number; host?: string } = {};
  try {
    owner = JSON.parse(await readFile(join(root, 'owner.json'), 'utf8'));
  } catch {
    // Killed before owner.json was written: the name has the pid.
  }
  const pid = Number(owner.pid ?? pidFromName);
  if (owner.host !== undefined && owner.host !== hostname()) return true;
  return pid === process.pid || !alive(pid);
}

/** Reads a run's journal, checking that every path it names stays inside the run folder and the destination. */
async function readJournal(root: string, dest: string): Promise<Journal | undefined> {
  let text: string;
  try {
    text = await readFile(join(root, JOURNAL), 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
  const j = JSON.parse(text) as Journal;
  const ok =
    j.format === JOURNAL_FORMAT &&
    j.dest === dest &&
    isInside(j.staging, root) &&
    isInside(j.aside, root) &&
    Array.isArray(j.moves) &&
    j.moves.every((m) => typeof m.path === 'string' && isInside(join(dest, m.path), dest) && isInside(join(j.staging, m.path), j.staging));
  if (!ok)
    throw new RelayError(`The commit journal ${join(root, JOURNAL)} is not one artifact-relay wrote for ${dest}.`, 'Remove it by hand.');
  return j;
}

export interface Recovered {
  /** Run folders removed. */
  removed: string[];
  /** Journals rolled back (the destination restored), with the number of replaced entries put back. */
  rolledBack: { root: string; unplaced: number; restored: number }[];
}

/**
 * What an earlier run on `dest` that was killed (SIGKILL, a lost runner) left: its commit rolled back from the
 * journal, then its run folder (staging, downloads) removed. Folders of runs still alive are left alone.
 */
export async function recoverInterrupted(dest: string): Promise<Recovered> {
  const abs = resolve(dest);
  const parent = dirname(abs);
  const base = basename(abs) || 'root';
  const candidates: [string, number][] = [];
  const scan = async (dir: string, pattern: RegExp, wantBase: boolean) => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const m = pattern.exec(name);
      if (!m || (wantBase && m[1] !== base)) continue;
      const root = join(dir, name);
      if ((await lstatOrNull(root))?.isDirectory()) candidates.push([root, Number(m[wantBase ? 2 : 1])]);
    }
  };
  await scan(parent, RUN_IN_PARENT, true);
  await scan(abs, RUN_IN_DEST, false);
  const out: Recovered = { removed: [], rolledBack: [] };
  for (const [root, pid] of candidates) {
    if (!(await stale(root, pid))) continue;
    const journal = await readJournal(root, abs);
    if (journal) {
      out.rolledBack.push({ root, ...(await rollback(join(root, JOURNAL), journal)) });
    }
    await discardStaging(root);
    out.removed.push(root);
  }
  return out;
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
