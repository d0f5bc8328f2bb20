// A runner lets its piece buffers go once no large entry is left (Batch.release): after a streamed entry, the first
// batch marked release drops them and asks for one full GC (node with --expose-gc); later ones find nothing to drop.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs, { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import zlib from 'node:zlib';
import { BATCH_FIELDS, type Batch, batchRunner } from '../src/archive/batch.ts';
import { readDirectoryFromFile } from '../src/archive/central-directory.ts';
import { pythonZip } from './helpers/archives.ts';

const dir = mkdtempSync(join(tmpdir(), 'artifact-relay-batch-release-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('after a streamed entry, the first batch marked release drops the piece buffers and asks for one full GC', async () => {
  const large = randomBytes(1_500_000);
  const zip = pythonZip(join(dir, 'a.zip'), [
    { name: 'large.bin', data: large },
    { name: 'one.txt', data: 'one\n' },
    { name: 'two.txt', data: 'two\n' },
    { name: 'three.txt', data: 'three\n' },
    { name: 'four.txt', data: 'four\n' },
  ]);
  const d = await readDirectoryFromFile(zip);
  /** Entry i as a batch of its own (batch.ts's fields, as extract.ts builds them). */
  const batchOf = (i: number, extra: Partial<Batch>): Batch => {
    const nums = new Float64Array(BATCH_FIELDS);
    nums.set([
      d.offsetToLocalFileHeader[i]!,
      d.compressedSize[i]!,
      d.uncompressedSize[i]!,
      d.crc32[i]! >>> 0,
      d.compressionMethod[i]!,
      0o644,
      -1,
    ]);
    const end = i + 1 < d.length ? d.offsetToLocalFileHeader[i + 1]! : d.offsetToLocalFileHeader[i]! + 30 + 64 + d.compressedSize[i]!;
    return { from: d.offsetToLocalFileHeader[i]!, end, nums, paths: d.path(i), ...extra };
  };
  const root = join(dir, 'out');
  mkdirSync(root);
  const g = globalThis as { gc?: unknown };
  const had = g.gc;
  let collections = 0;
  g.gc = () => collections++;
  const runner = batchRunner(fs, zlib, { zipFile: zip, root, umask: 0o022 });
  try {
    assert.equal(runner.run(batchOf(1, { release: true })), undefined);
    assert.equal(collections, 0, 'nothing streamed yet: nothing to drop');
    assert.equal(await runner.stream(batchOf(0, { stream: true })), undefined);
    assert.equal(runner.run(batchOf(2, {})), undefined);
    assert.equal(collections, 0, 'not marked release: the buffers are kept for a next large entry');
    assert.equal(runner.run(batchOf(3, { release: true })), undefined);
    assert.equal(collections, 1);
    assert.equal(runner.run(batchOf(4, { release: true })), undefined);
    assert.equal(collections, 1, 'dropped once: nothing left to collect');
  } finally {
    runner.close();
    g.gc = had;
  }
  assert.deepEqual(readFileSync(join(root, 'large.bin')), large);
  for (const name of ['one', 'two', 'three', 'four']) assert.equal(readFileSync(join(root, `${name}.txt`), 'utf8'), `${name}\n`);
});
