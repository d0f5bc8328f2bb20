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
    private readonly staging: string,
    /** The destination, or undefined when it does not exist yet. */
    private readonly dest: string | undefined,
  ) {}

  async node(rel: string): Promise<Node> {
    let n = this.cache.get(rel);
    if (n) return n;
    n = await nodeAt(join(this.staging, rel));
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

/** Every symlink in a staged tree, as [relative path, target]. */
async function stagedLinks(staging: string, rel = ''): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const d of await readdir(join(staging, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    if (d.isSymbolicLink()) out.push([r, await readlink(join(staging, r))]);
    else if (d.isDirectory()) out.push(...(await stagedLinks(staging, r)));
  }
  return out;
}

/** Throws ArchiveError for the first staged link that would point outside `dest` once committed. */
export async function checkFinalLinks(staging: string, dest: string | undefined): Promise<void> {
  const links = await stagedLinks(staging);
  if (links.length === 0) return;
  const tree = new FinalTree(staging, dest);
  for (const [rel, target] of links) {
    const from = rel.split('/').slice(0, -1);
    if ((await tree.resolve(from, target)) === undefined) {
      throw new ArchiveError(
        `symlink escapes the destination once merged with what is already there (${rel} -> ${target})`,
        rel,
        'Nothing was moved into place. A link in the destination (or from another job) makes this link point outside it; check the job that produced the archive.',
      );
    }
  }
}
