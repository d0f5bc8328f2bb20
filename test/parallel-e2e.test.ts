// Parallel ranged download (issue 12): disjoint ranges over several connections, written at offsets, a failed
// range retried alone, the whole archive's sha256 reported; the simulator's storage limits throughput per connection.
// Adaptive connections: one connection first, widened to ranges for the rest only when the download is bound by the
// network; ARTIFACT_RELAY_WIDEN forces the decision (never, or at a byte offset), so no test depends on timing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { planParts } from '../src/api/parallel.ts';
import { runBundle } from './helpers/run.ts';
import { snapshotTree } from './helpers/tree.ts';
import { useWorld, type World } from './helpers/world.ts';

const MiB = 1024 * 1024;

function unzipTree(world: World, archive: string) {
  const out = mkdtempSync(join(world.dir, 'ref-'));
  execFileSync('unzip', ['-q', archive, '-d', out]);
  return snapshotTree(out);
}

describe('parallel ranged download', () => {
  const world = useWorld();

  test('planParts: disjoint ranges covering the whole object', () => {
    assert.deepEqual(planParts(10, 4, 4), [
      { start: 0, end: 4 },
      { start: 4, end: 8 },
      { start: 8, end: 10 },
    ]);
    const parts = planParts(100 * MiB + 3, 4);
    assert.equal(parts[0]!.end - parts[0]!.start, Math.ceil((100 * MiB + 3) / 16));
    assert.equal(parts.at(-1)!.end, 100 * MiB + 3);
    for (let i = 1; i < parts.length; i++) assert.equal(parts[i]!.start, parts[i - 1]!.end);
  });

  test('planParts: the last parts shrink (to 1 MiB) so that the connections finish together', () => {
    const total = 1024 * MiB;
    const parts = planParts(total, 4);
    const sizes = parts.map((p) => p.end - p.start);
    assert.equal(sizes[0], 32 * MiB);
    assert.equal(parts.at(-1)!.end, total);
    for (let i = 1; i < parts.length; i++) {
      assert.equal(parts[i]!.start, parts[i - 1]!.end);
      assert.ok(sizes[i]! <= sizes[i - 1]!, `part ${i} is larger than the one before`);
    }
    // What is left when each of the last 4 parts starts is at most 8 of them: no connection runs on alone long.
    assert.ok(sizes.slice(-4).every((n) => n <= MiB));
    assert.ok(sizes.filter((n) => n < 32 * MiB).length >= 8);
    // From an offset (after widening), the same shape over what is left.
    const from = planParts(total, 4, undefined, 100 * MiB);
    assert.equal(from[0]!.start, 100 * MiB);
    assert.equal(from.at(-1)!.end, total);
    assert.ok(from.slice(-4).every((p) => p.end - p.start <= MiB));
  });

  test('ARTIFACT_RELAY_WIDEN=0: 4 connections from the start under a per-connection limit; a range reset mid-body is retried alone; byte-exact', async () => {
    const archive = world.zip('parallel.zip', [
      { name: 'a/random.bin', data: randomBytes(1_500_000) },
      { name: 'b/random.bin', data: randomBytes(1_500_000) },
      { name: 'c/log.txt', data: 'compressible line\n'.repeat(50_000) },
      { name: 'd/random.bin', data: randomBytes(700_000) },
    ]);
    const size = readFileSync(archive).length;
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'parallel', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    world.sim.storageMaxInFlight = 0;
    world.sim.storageConnectionLimit = 4 * MiB; // each 1 MiB range takes a while: the ranges overlap in time
    world.sim.injectFault({ origin: 'storage', kind: 'reset', range: /^bytes=1048576-/, afterBytes: 100_000 });
    try {
      const r = await runBundle(
        ['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', 'parallel', '--summary', 'parallel.json'],
        world.env({ ARTIFACT_RELAY_WIDEN: '0' }),
      );
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /Unpacking while downloading \(\d+ entries in the directory, 4 connections\)/);
      assert.match(r.output, /Downloaded [\d.]+ MiB over 4 connections in/);
      const ranged = world.sim.requests.filter((q) => q.origin === 'storage' && q.headers.range);
      const byRange = new Map<string, number>();
      for (const q of ranged.slice(1)) {
        byRange.set(String(q.headers.range), (byRange.get(String(q.headers.range)) ?? 0) + 1);
        assert.ok(q.headers['if-range'] && q.headers['if-match'], 'every range names the object');
      }
      const parts = planParts(size, 4);
      assert.equal(byRange.size, parts.length, [...byRange.keys()].join(' '));
      for (const part of parts) {
        const range = `bytes=${part.start}-${part.end - 1}`;
        assert.equal(byRange.get(range), part.start === MiB ? 2 : 1, `${range} fetched ${byRange.get(range)} times`);
      }
      assert.equal(world.sim.requests.filter((q) => q.origin === 'storage' && !q.headers.range).length, 0, 'no whole-object GET');
      assert.ok(world.sim.storageMaxInFlight >= 2, `at most ${world.sim.storageMaxInFlight} storage requests at once`);
      const summary = JSON.parse(readFileSync(join(world.workspace, 'parallel.json'), 'utf8'));
      assert.equal(summary.sources[0].sha256, createHash('sha256').update(readFileSync(archive)).digest('hex'));
      assert.equal(summary.sources[0].archive_bytes, size);
      assert.deepEqual(snapshotTree(join(world.workspace, 'parallel')), unzipTree(world, archive));
    } finally {
      world.sim.storageConnectionLimit = undefined;
    }
  });

  /**
   * One random entry of `bytes` fetched with `extra` inputs and `env` (overlap forced: an archive this small is
   * otherwise downloaded, then unpacked): unpacked alongside, over one connection, byte-exact.
   */
  const overOneConnection = async (name: string, bytes: number, extra: string[], env: Record<string, string>) => {
    const archive = world.zip(`${name}.zip`, [{ name: 'r.bin', data: randomBytes(bytes) }]);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: name, status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', name, ...extra],
      world.env({ ARTIFACT_RELAY_OVERLAP: '1', ...env }),
    );
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /Unpacking while downloading \(\d+ entries in the directory\)/);
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage' && !q.headers.range).length, 1);
    assert.deepEqual(snapshotTree(join(world.workspace, name)), unzipTree(world, archive));
  };

  test('ranges from the start (ARTIFACT_RELAY_WIDEN=0) on an archive too small for ranges: one connection, unpacked alongside', () =>
    overOneConnection('tiny-widen0', 300_000, [], { ARTIFACT_RELAY_WIDEN: '0' }));

  test('connections: 1 downloads over one connection', () => overOneConnection('single', 2_500_000, ['--connections', '1'], {}));
});

/** Storage requests: whole-object GETs (no Range), the tail (a suffix range) and the bounded ranges past it. */
function storageRequests(world: World) {
  const storage = world.sim.requests.filter((q) => q.origin === 'storage');
  return {
    whole: storage.filter((q) => !q.headers.range),
    tail: storage.filter((q) => String(q.headers.range ?? '').startsWith('bytes=-')),
    open: storage.filter((q) => /^bytes=\d+-$/.test(String(q.headers.range ?? ''))),
    bounded: storage.filter((q) => /^bytes=\d+-\d+$/.test(String(q.headers.range ?? ''))),
    all: storage,
  };
}

/** How many times each bounded range was asked, each naming the object (If-Range and If-Match). */
function rangeCounts(ranged: { headers: Record<string, unknown> }[]): Map<string, number> {
  const byRange = new Map<string, number>();
  for (const q of ranged) {
    assert.ok(q.headers['if-range'] && q.headers['if-match'], `${q.headers.range} names the object`);
    byRange.set(String(q.headers.range), (byRange.get(String(q.headers.range)) ?? 0) + 1);
  }
  return byRange;
}

describe('adaptive connections', () => {
  const world = useWorld();
  let jobs = 0;

  /** A job whose archive (about 4.5 MiB, its directory in the 64 KiB tail) is `name`. */
  function job(name: string) {
    const archive = world.zip(`${name}.zip`, [
      { name: 'a/random.bin', data: randomBytes(1_500_000) },
      { name: 'b/random.bin', data: randomBytes(1_500_000) },
      { name: 'c/log.txt', data: 'compressible line\n'.repeat(50_000) },
      { name: 'd/random.bin', data: randomBytes(1_400_000) },
    ]);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: `adaptive-${++jobs}`, status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    world.sim.storageMaxInFlight = 0;
    return { archive, id: j.id, size: readFileSync(archive).length };
  }

  async function fetchInto(id: number, dest: string, env: Record<string, string>) {
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(id), '--path', dest, '--summary', `${dest}.json`],
      world.env(env),
    );
    assert.equal(r.status, 0, r.output);
    return r;
  }

  function assertArchive(archive: string, dest: string) {
    const summary = JSON.parse(readFileSync(join(world.workspace, `${dest}.json`), 'utf8'));
    assert.equal(
      summary.sources[0].sha256,
      createHash('sha256').update(readFileSync(archive)).digest('hex'),
      'sha256 of the whole archive',
    );
    assert.equal(summary.sources[0].archive_bytes, readFileSync(archive).length);
    assert.deepEqual(snapshotTree(join(world.workspace, dest)), unzipTree(world, archive));
  }

  test('forced CPU-bound (ARTIFACT_RELAY_WIDEN=never): the whole archive over exactly one storage GET; byte-exact', async () => {
    const { archive, id } = job('cpu-bound');
    const r = await fetchInto(id, 'cpu-bound', { ARTIFACT_RELAY_WIDEN: 'never' });
    assert.match(r.output, /Unpacking while downloading \(\d+ entries in the directory, 1 connection \(ARTIFACT_RELAY_WIDEN=never\)\)/);
    assert.match(r.output, /Downloaded [\d.]+ MiB over 1 connection \(ARTIFACT_RELAY_WIDEN=never\) in/);
    const q = storageRequests(world);
    assert.equal(q.whole.length, 1, 'one whole-object GET');
    assert.equal(q.tail.length, 1, 'the tail');
    assert.equal(q.all.length, 2, q.all.map((x) => x.headers.range ?? 'GET').join(' '));
    assertArchive(archive, 'cpu-bound');
  });

  test('forced network-bound (ARTIFACT_RELAY_WIDEN=1024): one GET to 1 MiB, then the rest as ranges over 4 connections; byte-exact', async () => {
    const { archive, id, size } = job('network-bound');
    world.sim.storageConnectionLimit = 4 * MiB; // each 1 MiB range takes a while: the ranges overlap in time
    try {
      const r = await fetchInto(id, 'network-bound', { ARTIFACT_RELAY_WIDEN: '1024' });
      assert.match(r.output, /Unpacking while downloading \(\d+ entries in the directory, 1 connection, 4 after 1\.0 MiB\)/);
      assert.match(r.output, /Downloaded [\d.]+ MiB over 1 connection, widened to 4 after 1\.0 MiB in/);
      const q = storageRequests(world);
      assert.equal(q.whole.length, 1, 'one whole-object GET');
      assert.equal(q.open.length, 0, 'no resume');
      assert.ok((q.whole[0]!.bytesSent ?? 0) >= MiB, `the GET sent ${q.whole[0]!.bytesSent} bytes`);
      const parts = planParts(size, 4, undefined, MiB);
      assert.equal(parts[0]!.start, MiB);
      assert.ok(parts.length >= 3, `${parts.length} parts`);
      const byRange = rangeCounts(q.bounded);
      assert.deepEqual([...byRange.keys()].sort(), parts.map((p) => `bytes=${p.start}-${p.end - 1}`).sort());
      for (const [range, n] of byRange) assert.equal(n, 1, `${range} fetched ${n} times`);
      assert.ok(world.sim.requests.indexOf(q.whole[0]!) < world.sim.requests.indexOf(q.bounded[0]!), 'the GET first');
      assert.ok(world.sim.storageMaxInFlight >= 2, `at most ${world.sim.storageMaxInFlight} storage requests at once`);
      assertArchive(archive, 'network-bound');
    } finally {
      world.sim.storageConnectionLimit = undefined;
    }
  });

  test('after widening, a range reset mid-body is retried alone; byte-exact', async () => {
    const { archive, id, size } = job('widened-reset');
    world.sim.injectFault({ origin: 'storage', kind: 'reset', range: /^bytes=2097152-/, afterBytes: 100_000 });
    const r = await fetchInto(id, 'widened-reset', { ARTIFACT_RELAY_WIDEN: '1024' });
    assert.match(r.output, /widened to 4 after 1\.0 MiB/);
    const q = storageRequests(world);
    assert.equal(q.whole.length, 1, 'one whole-object GET');
    const byRange = rangeCounts(q.bounded);
    const parts = planParts(size, 4, undefined, MiB);
    assert.equal(byRange.size, parts.length);
    for (const p of parts) {
      const range = `bytes=${p.start}-${p.end - 1}`;
      assert.equal(byRange.get(range), p.start === 2 * MiB ? 2 : 1, `${range} fetched ${byRange.get(range)} times`);
    }
    assertArchive(archive, 'widened-reset');
  });

  test('the first connection reset before the switch resumes by Range (If-Range), then widens at 2 MiB; byte-exact', async () => {
    const { archive, id, size } = job('resumed');
    world.sim.injectFault({ origin: 'storage', kind: 'reset', range: false, afterBytes: 500_000 });
    const r = await fetchInto(id, 'resumed', { ARTIFACT_RELAY_WIDEN: '2048' });
    const parts = planParts(size, 4, undefined, 2 * MiB);
    assert.equal(parts.length, 3, 'three ranges of 1 MiB or less are left: three connections');
    assert.match(r.output, /Downloaded [\d.]+ MiB over 1 connection, widened to 3 after 2\.0 MiB in .* after 2 attempts/);
    const q = storageRequests(world);
    assert.equal(q.whole.length, 1, 'one whole-object GET');
    assert.equal(q.open.length, 1, 'one resume');
    const from = Number(/^bytes=(\d+)-$/.exec(String(q.open[0]!.headers.range))![1]);
    assert.ok(from > 0 && from <= 500_000, `resumed from ${from}`);
    assert.ok(q.open[0]!.headers['if-range'], 'the resume names the object');
    const byRange = rangeCounts(q.bounded);
    assert.deepEqual([...byRange.keys()].sort(), parts.map((p) => `bytes=${p.start}-${p.end - 1}`).sort());
    for (const [range, n] of byRange) assert.equal(n, 1, `${range} fetched ${n} times`);
    assertArchive(archive, 'resumed');
  });

  test('the object changes after the switch: the ranges are refused (If-Range), the archive is downloaded again over one connection and unpacked from the file', async () => {
    const { id } = job('swapped');
    const next = world.zip('swapped-next.zip', [
      { name: 'n/random.bin', data: randomBytes(3_000_000) },
      { name: 'n/log.txt', data: 'another line\n'.repeat(40_000) },
    ]);
    world.sim.swapArchive(id, { archive: next, afterGets: 2 }); // after the tail and the first connection's GET
    const r = await fetchInto(id, 'swapped', { ARTIFACT_RELAY_WIDEN: '1024' });
    assert.match(r.output, /Downloading over one connection instead: bytes=1048576-\d+ answered HTTP (200|412)/);
    assert.match(r.output, /Downloaded [\d.]+ MiB over 1 connection in/, 'no reason given for a fall-back');
    assert.match(r.output, /Unpacking again from the downloaded file/);
    const q = storageRequests(world);
    assert.equal(q.whole.length, 2, 'the first connection, and the download again');
    assert.ok(q.bounded.length >= 1 && q.bounded.length <= 4, `${q.bounded.length} ranges before the refusal`);
    assertArchive(next, 'swapped');
  });

  test('auto (the default) with under 8 MiB left after the first window: never widened, one GET; byte-exact', async () => {
    const { archive, id, size } = job('auto');
    assert.ok(size < 8 * MiB);
    const r = await fetchInto(id, 'auto', {});
    assert.match(
      r.output,
      /Unpacking while downloading \(\d+ entries in the directory, 1 connection, 4 if the download is bound by the network\)/,
    );
    assert.match(
      r.output,
      /Downloaded [\d.]+ MiB over 1 connection \((not found bound by the network|bound by the network with under 8\.0 MiB left)\) in/,
    );
    const q = storageRequests(world);
    assert.equal(q.whole.length, 1, 'one whole-object GET');
    assert.equal(q.bounded.length + q.open.length, 0, 'no ranges past the tail');
    assertArchive(archive, 'auto');
  });
});
