// Symlinks checked against the destination as it will be after the commit: the staged tree laid over what the
// destination already holds (a checkout's own links, earlier runs' files, other jobs' links in layout merge). The
// archive's own check (extract.ts) only knows the archive; this one follows existing links too, the way the kernel
// will once everything is in place, and refuses any new link that would resolve outside the destination.
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { ArchiveError } from '../runtime/errors.ts';

type Node = { kind: 'dir' } | { kind: 'link'; target: string } | { kind: 'other' } | { kind: 'missing' };

const MAX_LINKS = 40; // as the kernel's ELOOP limit

async function nodeAt(path: string): Promise<Node> {
  try {
    const st = await lstat(path);
    if (st.isSymbolicLink()) return { kind: 'link', target: await readlink(path) };
    return st.isDirectory() ? { kind: 'dir' } : { kind: 'other' };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing' };
    throw err;
  }
}

/** The merged view: a staged entry wins over the destination's (files and links replace, folders merge). */
class FinalTree {
  private readonly cache = new Map<string, Node>();
  private destReal: string | undefined;

  constructor(
    /** The staged tree laid over the destination; undefined: the destination as it is now. */
    private readonly staging: string | undefined,
    /** The destination, or undefined when it does not exist yet. */
    private readonly dest: string | undefined,
  ) {}

  async node(rel: string): Promise<Node> {
    let n = this.cache.get(rel);
    if (n) return n;
    n = this.staging === undefined ? ({ kind: 'missing' } as Node) : await nodeAt(join(this.staging, rel));
    if ((n.kind === 'missing' || n.kind === 'dir') && this.dest) {
      const d = await nodeAt(join(this.dest, rel));
      if (n.kind === 'missing') n = d;
      // A staged folder over an existing non-folder is refused by the merge plan; treat it as the folder.
    }
    this.cache.set(rel, n);
    return n;
  }

  /** An absolute target of an existing link, as a path inside the destination (undefined: outside). */
  async insideAbsolute(target: string): Promise<string[] | undefined> {
    if (!this.dest) return undefined;
    this.destReal ??= await realpath(this.dest);
    for (const root of new Set([this.dest, this.destReal])) {
      const rel = relative(root, target);
      if (rel === '') return [];
      if (!rel.startsWith('..') && !isAbsolute(rel)) return rel.split(sep);
    }
    return undefined;
  }

  /**
   * Where `target` of a link in folder `from` (path segments relative to the root) ends up, following every link on
   * the way; undefined when it leaves the root (or loops). Missing components are taken as folders, so a dangling
   * link cannot escape once something appears later.
   */
  async resolve(from: string[], target: string, depth = 0): Promise<string[] | undefined> {
    if (depth > MAX_LINKS) return undefined;
    let parts = [...from];
    if (isAbsolute(target)) {
      const inside = await this.insideAbsolute(target);
      if (!inside) return undefined;
      parts = [];
      target = inside.join('/');
    }
    for (const seg of target.split('/')) {
      if (seg === '' || seg === '.') continue;
      if (seg === '..') {
        if (parts.length === 0) return undefined;
        parts.pop();
        continue;
      }
      parts.push(seg);
      const n = await this.node(parts.join('/'));
      if (n.kind === 'link') {
        const r = await this.resolve(parts.slice(0, -1), n.target, depth + 1);
        if (!r) return undefined;
        parts = r;
      }
    }
    return parts;
  }
}

/** Every symlink in a tree, as [relative path, target] (folders that are links are not entered). */
async function linksIn(root: string, rel = ''): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const d of await readdir(join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    if (d.isSymbolicLink()) out.push([r, await readlink(join(root, r))]);
    else if (d.isDirectory()) out.push(...(await linksIn(root, r)));
  }
  return out;
}

function escapeError(rel: string, target: string, existing: boolean): ArchiveError {
  return new ArchiveError(
    existing
      ? `symlink escapes the destination once merged with what is already there (the existing ${rel} -> ${target} would point outside through the archive's links)`
      : `symlink escapes the destination once merged with what is already there (${rel} -> ${target})`,
    rel,
    'Nothing was moved into place. A link in the destination (or from another job) makes this link point outside it; check the job that produced the archive.',
  );
}

/**
 * Throws ArchiveError for the first link that would point outside `dest` once committed: a staged link, or a link
 * already in the destination that points inside now and would point outside through the staged links (a dangling
 * `b -> a/..` once the archive brings `a -> .`). New links are the only entries that change where an existing link
 * leads, so the destination is walked only when the staging tree has some.
 */
export async function checkFinalLinks(staging: string, dest: string | undefined): Promise<void> {
  const links = await linksIn(staging);
  if (links.length === 0) return;
  const final = new FinalTree(staging, dest);
  const from = (rel: string) => rel.split('/').slice(0, -1);
  for (const [rel, target] of links) {
    if ((await final.resolve(from(rel), target)) === undefined) throw escapeError(rel, target, false);
  }
  if (!dest) return;
  const now = new FinalTree(undefined, dest);
  for (const [rel, target] of await linksIn(dest)) {
    if ((await final.node(rel)).kind !== 'link' || (await nodeAt(join(staging, rel))).kind !== 'missing') continue; // replaced
    if ((await now.resolve(from(rel), target)) === undefined) continue; // already outside before: not ours to judge
    if ((await final.resolve(from(rel), target)) === undefined) throw escapeError(rel, target, true);
  }
}
