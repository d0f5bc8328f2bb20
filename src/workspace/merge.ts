// Merges one source's unpacked tree into another inside staging (layout: merge). Two jobs may ship the same
// file only with the same content: a silent last-one-wins would hand a later job a mix of two builds.
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { RelayError } from '../runtime/errors.ts';

async function sameContent(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([lstat(a), lstat(b)]);
  if (sa.size !== sb.size) return false;
  const ra = createReadStream(a, { highWaterMark: 1 << 20 })[Symbol.asyncIterator]();
  const rb = createReadStream(b, { highWaterMark: 1 << 20 });
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of rb) {
    let buf = chunk as Buffer;
    while (buf.length > 0) {
      if (pending.length === 0) {
        const next = await ra.next();
        if (next.done) return false;
        pending = next.value as Buffer;
      }
      const n = Math.min(pending.length, buf.length);
      if (!pending.subarray(0, n).equals(buf.subarray(0, n))) return false;
      pending = pending.subarray(n);
      buf = buf.subarray(n);
    }
  }
  return true;
}

/** Moves everything of `src` into `dst` (both inside staging). `describe(rel)` names the sources for the error. */
export async function mergeTree(src: string, dst: string, describe: (rel: string) => string, rel = ''): Promise<void> {
  for (const name of await readdir(src)) {
    const from = join(src, name);
    const to = join(dst, name);
    const relPath = rel ? `${rel}/${name}` : name;
    const [a, b] = await Promise.all([lstat(from), lstat(to).catch(() => undefined)]);
    if (!b) {
      await rename(from, to);
      continue;
    }
    if (a.isDirectory() && b.isDirectory()) {
      await mergeTree(from, to, describe, relPath);
      continue;
    }
    const same =
      (a.isFile() && b.isFile() && (await sameContent(from, to))) ||
      (a.isSymbolicLink() && b.isSymbolicLink() && (await readlink(from)) === (await readlink(to)));
    if (!same) {
      throw new RelayError(
        `Two sources write ${relPath} with different content (${describe(relPath)}), and layout is merge.`,
        'Use layout: per-job to give each job its own folder, or include/exclude so that only one job provides the file.',
      );
    }
    await rm(from, { recursive: true, force: true });
  }
}
