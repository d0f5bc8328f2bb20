// 70,001 entries from Go's archive/zip, past the 16-bit count, so the archive has zip64 end records: listed and unpacked
// like Info-ZIP unzip does. Its own file (the largest tree the unit tier writes) so it runs beside extract.test.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extractArchive, listArchive } from '../src/archive/extract.ts';
import { goZip, unzipSnapshot } from './helpers/archives.ts';
import { extractOverlapped } from './helpers/extract-paths.ts';
import { snapshotTree } from './helpers/tree.ts';

const OPTS = { maxBytes: 1024 ** 3, maxFiles: 1_000_000, maxRatio: 100 };
let work: string;
let zip: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'extract-zip64-'));
  zip = goZip(join(work, 'go64.zip'), { entries: [{ name: 'top.txt', data: 'top\n' }], many: 70_000 });
});
after(() => {
  execFileSync('chmod', ['-R', 'u+rwx', work]);
  rmSync(work, { recursive: true, force: true });
});
let n = 0;
function fresh(name: string): string {
  const d = join(work, `${name}-${n++}`);
  mkdirSync(d);
  return d;
}

describe('Go zip64 with 70,000 entries', () => {
  test('every entry is listed', async () => {
    assert.equal((await listArchive(zip)).length, 70_001);
  });

  test('from a complete file: the whole tree is like Info-ZIP unzip', async () => {
    const ours = fresh('ours');
    const result = await extractArchive(zip, ours, OPTS);
    assert.equal(result.files, 70_001);
    assert.deepEqual(snapshotTree(ours), unzipSnapshot(zip, work));
  });

  test('while the archive is being written: the directory from the tail, the first entry and the last thousand', async () => {
    // The whole zip64 directory is read from the tail and planned; the last thousand entries wait for nearly the whole
    // archive. Writing all 70,001 is the case above's.
    const ours = fresh('ours');
    const result = await extractOverlapped(zip, ours, { ...OPTS, include: ['top.txt', 'many/d069/**'] });
    assert.equal(result.files, 1_001);
    const wanted = (p: string) => p === 'top.txt' || p === 'many' || p === 'many/d069' || p.startsWith('many/d069/');
    assert.deepEqual(
      snapshotTree(ours),
      unzipSnapshot(zip, work).filter((e) => wanted(e.path)),
    );
  });
});
