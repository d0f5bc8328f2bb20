// A comparable snapshot of a folder tree: paths, types, permission bits, sizes, content hashes, symlink targets.
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface TreeEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  size?: number;
  sha256?: string;
  target?: string;
}

export function snapshotTree(dir: string): TreeEntry[] {
  const out: TreeEntry[] = [];
  const walk = (abs: string, rel: string) => {
    for (const name of readdirSync(abs)) {
      const p = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.push({ path: r, type: 'symlink', mode: 0o777, target: readlinkSync(p) });
      else if (st.isDirectory()) {
        out.push({ path: r, type: 'directory', mode: st.mode & 0o7777 });
        walk(p, r);
      } else if (st.isFile()) {
        out.push({
          path: r,
          type: 'file',
          mode: st.mode & 0o7777,
          size: st.size,
          sha256: createHash('sha256').update(readFileSync(p)).digest('hex'),
        });
      } else out.push({ path: r, type: 'other', mode: st.mode & 0o7777 });
    }
  };
  walk(dir, '');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Names directly in `dir` (for "nothing appeared outside" checks). */
export function listing(dir: string): string[] {
  return readdirSync(dir).sort();
}
