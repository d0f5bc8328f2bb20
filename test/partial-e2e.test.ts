// Partial fetch by Range (issue 12): with include/exclude selecting at most half of a large archive, only the
// directory (from the tail) and the selected entries' ranges are downloaded, coalesced, by the parallel ranged
// download; a selection of most of the archive, or Range answered wrongly, downloads it whole. Asserted on the
// simulator's request log and the unpacked tree, never on time.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runBundle } from './helpers/run.ts';
import { snapshotTree } from './helpers/tree.ts';
import { tokenHeadersSeen, useWorld, type World } from './helpers/world.ts';

const KiB = 1024;
const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function unzipReference(world: World, archive: string, patterns: string[] = []): ReturnType<typeof snapshotTree> {
  const out = mkdtempSync(join(world.dir, 'ref-'));
  execFileSync('unzip', ['-q', archive, ...patterns, '-d', out]);
  return snapshotTree(out);
}

/** [first, last] of each storage request's Range header, in request order (the tail's suffix request left out). */
function rangesRequested(world: World): { first: number; last: number }[] {
  return world.sim.requests
    .filter((q) => q.origin === 'storage' && typeof q.headers.range === 'string' && !q.headers.range.startsWith('bytes=-'))
    .map((q) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(String(q.headers.range));
      assert.ok(m, `a bounded range: ${q.headers.range}`);
      assert.ok(q.headers['if-range'] && q.headers['if-match'], 'every range names the object');
      return { first: Number(m[1]), last: Number(m[2]) };
    });
}

/** Python's zipfile view of the archive: each entry's local header offset and sizes, and where the directory starts. */
function layout(archive: string): { entries: { name: string; offset: number; compressed: number }[]; directoryStart: number } {
  const py = `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps({"entries": [{"name": i.filename, "offset": i.header_offset, "compressed": i.compress_size} for i in z.infolist()], "directoryStart": z.start_dir}))`;
  return JSON.parse(execFileSync('python3', ['-c', py, archive]).toString());
}

describe('partial fetch by Range', () => {
  const world = useWorld();

  const partialArchive = (name: string) =>
    world.zip(name, [
      { name: 'keep/a.bin', data: randomBytes(400 * KiB) },
      { name: 'skip/x.bin', data: randomBytes(600 * KiB) },
      { name: 'keep/b.bin', data: randomBytes(300 * KiB) },
      { name: 'keep/small.txt', data: 'small\n' },
      { name: 'skip/y.bin', data: randomBytes(800 * KiB) },
      { name: 'link', type: 'symlink', target: 'keep/a.bin' },
    ]);
  const fetchArgs = (jobId: number, path: string, extra: string[]) => [
    'fetch',
    '--project',
    world.upstream.path,
    '--job-id',
    String(jobId),
    ...extra,
    '--path',
    path,
    '--summary',
    `${path}.json`,
  ];

  test('include: only the directory and the selected entries are requested, coalesced; the tree is what unzip makes of the same selection', async () => {
    world.sim.clearFaults();
    const archive = partialArchive('partial.zip');
    const size = statSync(archive).size;
    const { entries, directoryStart } = layout(archive);
    const at = (name: string) => entries.find((e) => e.name === name)!.offset;
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'partial', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.requests.length = 0;
    const r = await runBundle(fetchArgs(j.id, 'partial', ['--include', 'keep/**']), world.env());
    assert.equal(r.status, 0, r.output);
    // Each selected entry from its local header to the next entry (keep/b.bin and keep/small.txt are neighbours);
    // the symlink (every target is checked) up to the directory.
    const expected = [
      { first: at('keep/a.bin'), last: at('skip/x.bin') - 1 },
      { first: at('keep/b.bin'), last: at('skip/y.bin') - 1 },
      { first: at('link'), last: directoryStart - 1 },
    ];
    assert.deepEqual(
      rangesRequested(world).sort((a, b) => a.first - b.first),
      expected,
    );
    const fetched = expected.reduce((n, e) => n + e.last - e.first + 1, 0);
    const selected = entries.filter((e) => e.name.startsWith('keep/') || e.name === 'link').reduce((n, e) => n + e.compressed, 0);
    assert.ok(fetched <= (selected + (size - directoryStart)) * 1.05, `${fetched} bytes for ${selected} selected`);
    // Everything storage sent: the tail (64 KiB, holding the directory) and the ranges; no whole-object GET.
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage' && !q.headers.range).length, 0, 'no whole-object GET');
    const storageBytes = world.sim.requests
      .filter((q) => q.origin === 'storage')
      .reduce((n, q) => {
        const m = /^bytes=(\d+)-(\d+)$/.exec(String(q.headers.range));
        return n + (m ? Number(m[2]) - Number(m[1]) + 1 : Math.min(64 * KiB, size));
      }, 0);
    assert.ok(storageBytes < size * 0.5, `${storageBytes} of ${size} bytes transferred`);
    assert.deepEqual(tokenHeadersSeen(world.sim, 'storage'), [], 'no token header reaches storage');
    assert.match(r.output, /Partial fetch by Range: only the selected entries \(4 of 6\): .* in 3 range\(s\), skipping [\d.]+ [KM]iB of/);
    assert.match(r.output, /no sha256 of the archive \(only part of it was downloaded\)/);

    const summary = readJson(join(world.workspace, 'partial.json')).sources[0];
    assert.equal(summary.sha256, null);
    assert.equal(summary.partial, true);
    assert.equal(summary.ranges_fetched, 3);
    assert.equal(summary.bytes_fetched, fetched);
    assert.equal(summary.archive_bytes, size);
    assert.equal(summary.files, 3);
    assert.deepEqual(snapshotTree(join(world.workspace, 'partial')), unzipReference(world, archive, ['keep/*']));
  });

  test('exclude: the same rule; byte-exact against unzip -x', async () => {
    world.sim.clearFaults();
    const archive = partialArchive('partial-x.zip');
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'partial-x', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.requests.length = 0;
    const r = await runBundle(fetchArgs(j.id, 'partialx', ['--exclude', '["skip/**", "keep/a.bin"]']), world.env());
    assert.equal(r.status, 0, r.output);
    const { entries, directoryStart } = layout(archive);
    const at = (name: string) => entries.find((e) => e.name === name)!.offset;
    assert.deepEqual(
      rangesRequested(world).sort((a, b) => a.first - b.first),
      [
        { first: at('keep/b.bin'), last: at('skip/y.bin') - 1 },
        { first: at('link'), last: directoryStart - 1 },
      ],
    );
    const summary = readJson(join(world.workspace, 'partialx.json')).sources[0];
    assert.equal(summary.partial, true);
    assert.equal(summary.ranges_fetched, 2);
    assert.deepEqual(snapshotTree(join(world.workspace, 'partialx')), unzipReference(world, archive, ['-x', 'skip/*', 'keep/a.bin']));
  });

  test('a selected range reset mid-body is retried alone; the result is still byte-exact', async () => {
    world.sim.clearFaults();
    const archive = partialArchive('partial-retry.zip');
    const { entries, directoryStart } = layout(archive);
    const at = (name: string) => entries.find((e) => e.name === name)!.offset;
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'partial-retry', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.injectFault({
      origin: 'storage',
      kind: 'reset',
      range: new RegExp(`^bytes=${at('keep/b.bin')}-`),
      afterBytes: 100_000,
      times: 1,
    });
    world.sim.requests.length = 0;
    try {
      const r = await runBundle(fetchArgs(j.id, 'partialr', ['--include', 'keep/**']), world.env());
      assert.equal(r.status, 0, r.output);
      const b = { first: at('keep/b.bin'), last: at('skip/y.bin') - 1 };
      assert.deepEqual(
        rangesRequested(world).sort((x, y) => x.first - y.first),
        [{ first: at('keep/a.bin'), last: at('skip/x.bin') - 1 }, b, b, { first: at('link'), last: directoryStart - 1 }],
        'only the failed range asked for again',
      );
      const summary = readJson(join(world.workspace, 'partialr.json')).sources[0];
      assert.equal(summary.partial, true);
      assert.deepEqual(snapshotTree(join(world.workspace, 'partialr')), unzipReference(world, archive, ['keep/*']));
    } finally {
      world.sim.clearFaults();
    }
  });

  test('a selection of most of the archive downloads it whole (partial does not pay)', async () => {
    world.sim.clearFaults();
    const archive = partialArchive('most.zip');
    const size = statSync(archive).size;
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'most', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    const r = await runBundle(fetchArgs(j.id, 'most', ['--exclude', 'keep/small.txt']), world.env());
    assert.equal(r.status, 0, r.output);
    assert.doesNotMatch(r.output, /Partial fetch/);
    const summary = readJson(join(world.workspace, 'most.json')).sources[0];
    assert.equal(summary.sha256, sha256(archive));
    assert.equal(summary.archive_bytes, size);
    assert.equal(summary.partial, undefined);
    assert.deepEqual(snapshotTree(join(world.workspace, 'most')), unzipReference(world, archive, ['-x', 'keep/small.txt']));
  });

  test('a range answered with another Content-Range: the whole archive is downloaded instead, byte-exact, with its sha256', async () => {
    world.sim.clearFaults();
    const archive = partialArchive('fallback.zip');
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'fallback', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.injectFault({ origin: 'storage', kind: 'oversize-range', range: /^bytes=0-\d+$/, times: 1 });
    try {
      const r = await runBundle(fetchArgs(j.id, 'fallback', ['--include', 'keep/**']), world.env());
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /Partial fetch by Range/);
      assert.match(r.output, /Downloading the whole archive instead: /);
      const summary = readJson(join(world.workspace, 'fallback.json')).sources[0];
      assert.equal(summary.sha256, sha256(archive));
      assert.equal(summary.partial, undefined);
      assert.deepEqual(snapshotTree(join(world.workspace, 'fallback')), unzipReference(world, archive, ['keep/*']));
    } finally {
      world.sim.clearFaults();
    }
  });

  test('a central directory past the tail and above ARTIFACT_RELAY_TAIL_DIRECTORY_KB is read from the file, not by Range; with include, by Range up to eight times that', async () => {
    world.sim.clearFaults();
    // 1,500 entries: a directory of about 100 KiB, more than the 64 KiB tail request holds.
    const entries = Array.from({ length: 1500 }, (_, i) => ({
      name: `many/d${i % 20}/file-${String(i).padStart(5, '0')}.txt`,
      data: `${i}\n`,
    }));
    const archive = world.zip('big-directory.zip', entries);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'big-directory', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });

    world.sim.requests.length = 0;
    const plain = await runBundle(fetchArgs(j.id, 'bigdir', []), world.env({ ARTIFACT_RELAY_TAIL_DIRECTORY_KB: '16' }));
    assert.equal(plain.status, 0, plain.output);
    assert.match(
      plain.output,
      /Download, then unpack \(the central directory's [\d.]+ KiB past the tail are read from the file, not by Range \(above 16\.0 KiB\)\)/,
    );
    assert.deepEqual(rangesRequested(world), [], 'no ranged request after the tail');
    assert.deepEqual(snapshotTree(join(world.workspace, 'bigdir')), unzipReference(world, archive));

    // The same directory with include: 8 x 16 KiB allows the 36 KiB past the tail, so it is read by Range and only the selection is fetched.
    world.sim.requests.length = 0;
    const partial = await runBundle(
      fetchArgs(j.id, 'bigdir-partial', ['--include', 'many/d3/**']),
      world.env({ ARTIFACT_RELAY_TAIL_DIRECTORY_KB: '16' }),
    );
    assert.equal(partial.status, 0, partial.output);
    assert.doesNotMatch(partial.output, /read from the file/);
    assert.ok(rangesRequested(world).length > 0, 'the rest of the directory by Range');
    assert.deepEqual(snapshotTree(join(world.workspace, 'bigdir-partial')), unzipReference(world, archive, ['many/d3/*']));
  });
});
