// Reads entries out of a job's zip archive through its central directory (as Workhorse's gitlab-zip-cat).
import unzipper from 'unzipper';
import type { CentralDirectory, File as ZipFile } from 'unzipper';
import type { Archive } from './model.ts';

const cache = new WeakMap<Archive, Promise<CentralDirectory>>();

function directory(a: Archive): Promise<CentralDirectory> {
  let d = cache.get(a);
  if (!d) {
    d = a.buffer ? unzipper.Open.buffer(a.buffer) : unzipper.Open.file(a.path ?? '');
    cache.set(a, d);
    d.catch(() => cache.delete(a));
  }
  return d;
}

/** Exact, case-sensitive match on the stored name (no normalisation), like `file.Name == fileName`. */
export async function findEntry(a: Archive, name: string): Promise<ZipFile | undefined> {
  const dir = await directory(a);
  const want = Buffer.from(name, 'utf8');
  return dir.files.find((f) => f.path === name || (f.pathBuffer && Buffer.compare(f.pathBuffer, want) === 0));
}

export interface TreeItem {
  name: string;
  path: string;
  type: 'file' | 'directory';
  size: number;
  mode: string;
}

/** Lists the archive under `dir` ('' = root), directly or recursively; directories end with '/'. */
export async function listTree(a: Archive, dir: string, recursive: boolean): Promise<TreeItem[] | undefined> {
  const d = await directory(a);
  const items = new Map<string, TreeItem>();
  const addDir = (p: string) => {
    if (!items.has(p)) {
      const name = p.slice(0, -1).split('/').pop() ?? p;
      items.set(p, { name, path: p, type: 'directory', size: 0, mode: '040755' });
    }
  };
  for (const f of d.files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) addDir(`${parts.slice(0, i).join('/')}/`);
    if (f.path.endsWith('/')) continue;
    let mode = (f.externalFileAttributes >>> 16) & 0o177777;
    if (mode === 0) mode = 0o100644;
    else if ((mode & 0o170000) === 0) mode |= 0o100000;
    items.set(f.path, {
      name: parts[parts.length - 1] ?? f.path,
      path: f.path,
      type: 'file',
      size: f.uncompressedSize,
      mode: mode.toString(8).padStart(6, '0'),
    });
  }
  const prefix = dir === '' || dir === '/' ? '' : dir.endsWith('/') ? dir : `${dir}/`;
  if (prefix && !items.has(prefix)) return undefined;
  const out = [...items.values()].filter((it) => {
    if (!it.path.startsWith(prefix) || it.path === prefix) return false;
    const rest = it.path.slice(prefix.length).replace(/\/$/, '');
    return recursive || !rest.includes('/');
  });
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}
