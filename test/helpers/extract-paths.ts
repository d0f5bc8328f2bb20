// The two ways fetch drives extractArchive, for tests that run each case both ways: from a complete file, and while
// the archive is still being written (the directory read from its tail first, as fetch does with Range).
import { readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { readDirectoryFromTail } from '../../src/archive/central-directory.ts';
import { extractArchive } from '../../src/archive/extract.ts';
import { Watermark } from '../../src/archive/watermark.ts';

let n = 0;

export type Extract = typeof extractArchive;

/**
 * The overlapped path as fetch drives it: the directory comes from the archive's last 64 KiB (more by "range" when
 * needed), and the archive is copied into a new file in small chunks, yielding to the extraction between them.
 * Like fetch, an archive whose tail has no end record goes the sequential way.
 */
export const extractOverlapped: Extract = async (zip, dest, opts) => {
  const data = readFileSync(zip);
  const directory = await readDirectoryFromTail(data.subarray(Math.max(0, data.length - 65536)), data.length, async (s, e) =>
    data.subarray(s, e),
  );
  if (!directory) return extractArchive(zip, dest, opts);
  const copy = `${zip}.partial-${n++}`;
  writeFileSync(copy, '');
  const mark = new Watermark();
  const fh = await open(copy, 'r+');
  const copying = (async () => {
    const chunk = Math.max(4096, Math.ceil(data.length / 200));
    for (let off = 0; off < data.length; off += chunk) {
      const end = Math.min(off + chunk, data.length);
      await fh.write(data, off, end - off, off);
      mark.advance(end);
      await new Promise((resolve) => setImmediate(resolve)); // let the extraction read between writes
    }
    mark.finish(data.length);
  })();
  try {
    return await extractArchive(copy, dest, { ...opts, directory, available: mark.wait });
  } finally {
    await copying;
    await fh.close();
  }
};

export const PATHS: [string, Extract][] = [
  ['from a complete file', extractArchive],
  ['while the archive is being written', extractOverlapped],
];
