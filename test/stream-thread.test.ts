// A large entry streamed on an unpacking thread while the archive downloads (batch.ts with the shared mark of
// watermark.ts): it reads only what the download has written, waits for the rest, stops when the download fails, and
// a failed write names the file. The zip on disk holds exactly the marked bytes, so a read ahead of the mark would
// find the file short and fail as damaged data.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { readDirectoryFromFile } from '../src/archive/central-directory.ts';
import { extractArchive } from '../src/archive/extract.ts';
import { Watermark } from '../src/archive/watermark.ts';
import { ArchiveError, RelayError } from '../src/runtime/errors.ts';
import { pythonZip } from './helpers/archives.ts';

const dir = mkdtempSync(join(tmpdir(), 'artifact-relay-stream-thread-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// 5 MiB, random and compressible: several 1 MiB pieces in and out, so the thread waits between them.
const body = Buffer.concat([randomBytes(2 << 20), Buffer.from('log line 42 of the build\n'.repeat(126_000))]);
const full = pythonZip(join(dir, 'large.zip'), [
  { name: 'large.bin', data: body },
  { name: 'after.txt', data: Buffer.from('after the large one\n') },
]);
const bytes = readFileSync(full);
const caps = { maxBytes: 1 << 30, maxFiles: 10, maxRatio: 0 };

let runs = 0;
/** A download under way: the zip holds its first `at` bytes, and the mark says so. */
async function downloading(at: number) {
  const n = ++runs;
  const zip = join(dir, `partial-${n}.zip`);
  const dest = join(dir, `out-${n}`);
  mkdirSync(dest);
  writeFileSync(zip, bytes.subarray(0, at));
  const mark = new Watermark();
  mark.advance(at);
  const directory = await readDirectoryFromFile(full);
  return { zip, dest, mark, directory };
}

/**
 * Resolves once an unpacking thread waits on the mark: Atomics.notify counts the waiters it wakes (a woken thread
 * looks at the mark again and waits again). Fails if `extraction` settles first. A safety net only for a broken
 * build, never reached when a thread waits: after 30 s the download fails, so that nothing waiting on it hangs.
 */
async function threadWaiting(mark: Watermark, extraction: Promise<unknown>): Promise<void> {
  const view = new BigInt64Array(mark.shared);
  let settled = false;
  extraction.then(
    () => (settled = true),
    () => (settled = true),
  );
  const giveUp = setTimeout(() => mark.fail(new Error('no unpacking thread waited for the download')), 30_000);
  try {
    while (Atomics.notify(view, 0) === 0) {
      if (settled)
        assert.fail(`the extraction ended before a thread waited for the rest of the download: ${await extraction.catch(String)}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    clearTimeout(giveUp);
  }
}

describe('a large entry streamed on a thread while downloading', () => {
  const mid = Math.floor(bytes.length / 2);

  test('waits for the bytes still to come, then unpacks byte for byte', async () => {
    const { zip, dest, mark, directory } = await downloading(mid);
    const extraction = extractArchive(zip, dest, { ...caps, directory, available: mark.wait, sharedMark: mark.shared, threads: 1 });
    await threadWaiting(mark, extraction);
    appendFileSync(zip, bytes.subarray(mid));
    mark.finish(bytes.length);
    const r = await extraction;
    assert.equal(r.files, 2);
    assert.ok(readFileSync(join(dest, 'large.bin')).equals(body));
    assert.equal(readFileSync(join(dest, 'after.txt'), 'utf8'), 'after the large one\n');
  });

  test('a download that fails stops the thread: the extraction fails with the download error, nothing hangs', async () => {
    const { zip, dest, mark, directory } = await downloading(mid);
    const extraction = extractArchive(zip, dest, { ...caps, directory, available: mark.wait, sharedMark: mark.shared, threads: 1 });
    await threadWaiting(mark, extraction);
    const failure = new Error('the connection was reset');
    mark.fail(failure);
    await assert.rejects(extraction, (err: unknown) => err === failure);
  });

  test('a file that cannot be written is a workspace error naming it, not damaged data', async () => {
    const { zip, dest, mark, directory } = await downloading(bytes.length);
    mark.finish(bytes.length);
    writeFileSync(join(dest, 'large.bin'), 'in the way'); // the thread's exclusive create fails
    await assert.rejects(
      extractArchive(zip, dest, { ...caps, directory, available: mark.wait, sharedMark: mark.shared, threads: 1 }),
      (err: unknown) => {
        assert.ok(err instanceof RelayError && !(err instanceof ArchiveError), String(err));
        assert.match(err.message, /^Cannot write large\.bin: EEXIST/);
        assert.match(err.advice ?? '', /free disk space/);
        assert.equal(err.details.code, 'EEXIST');
        return true;
      },
    );
  });
});

describe('small entries while downloading: one thread per core but one, the main thread joins once the download ends', () => {
  // 3,000 small files (over THREADS_MIN_ENTRIES): batches of them, posted as their bytes arrive.
  const smalls = Array.from({ length: 3000 }, (_, i) => ({
    name: `s/f${String(i).padStart(4, '0')}.txt`,
    data: Buffer.from(`file ${i}\n`.repeat(1 + (i % 40))),
  }));
  const zipped = pythonZip(join(dir, 'smalls.zip'), smalls);
  const all = readFileSync(zipped);

  /** The extraction of smalls.zip on `cores` cores, with the download at `at` bytes (finished when whole). */
  async function unpack(at: number, cores: number) {
    const n = ++runs;
    const zip = join(dir, `smalls-${n}.zip`);
    const dest = join(dir, `smalls-out-${n}`);
    mkdirSync(dest);
    writeFileSync(zip, all.subarray(0, at));
    const mark = new Watermark();
    if (at === all.length) mark.finish(at);
    else mark.advance(at);
    const directory = await readDirectoryFromFile(zipped);
    const extraction = extractArchive(zip, dest, {
      ...caps,
      maxFiles: 10_000,
      directory,
      available: mark.wait,
      sharedMark: mark.shared,
      cores,
    });
    return { zip, dest, mark, extraction };
  }

  test('while the download runs the main thread writes no batch, and one thread is started on 2 cores', async () => {
    // All but the last byte: every batch can be written, and the download has not finished.
    const held = all.length - 1;
    const { zip, dest, mark, extraction } = await unpack(held, 2);
    let settled = false;
    extraction.then(
      () => (settled = true),
      () => (settled = true),
    );
    // A safety net for a broken build only: never reached when every batch is written.
    const giveUp = setTimeout(() => mark.fail(new Error('the batches were not all written before the download ended')), 30_000);
    const last = join(dest, smalls.at(-1)!.name);
    while (!existsSync(last) && !settled) await new Promise((resolve) => setImmediate(resolve));
    clearTimeout(giveUp);
    appendFileSync(zip, all.subarray(held));
    mark.finish(all.length);
    const r = await extraction;
    assert.deepEqual({ main: r.batches.main, threadsStarted: r.batches.threadsStarted }, { main: 0, threadsStarted: 1 });
    assert.ok(r.batches.threads > 1);
    for (const e of [smalls[0]!, smalls[1234]!, smalls.at(-1)!]) assert.ok(readFileSync(join(dest, e.name)).equals(e.data));
  });

  test('once the download has finished the main thread writes batches beside the thread', async () => {
    const { dest, extraction } = await unpack(all.length, 2);
    const r = await extraction;
    assert.equal(r.batches.threadsStarted, 1);
    assert.ok(r.batches.main > 0 && r.batches.threads > 0, JSON.stringify(r.batches));
    assert.equal(r.files, smalls.length);
    for (const e of [smalls[0]!, smalls[2999]!]) assert.ok(readFileSync(join(dest, e.name)).equals(e.data));
  });
});
