// Parallel ranged download (issue 12): disjoint ranges over several connections, written at offsets, a failed
// range retried alone, the whole archive's sha256 reported; the simulator's storage limits throughput per connection.
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

  test('4 connections at once under a per-connection limit; a range reset mid-body is retried alone; byte-exact', async () => {
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
        world.env(),
      );
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /Unpacking while downloading \(\d+ entries in the directory, 4 connections\)/);
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

  test('connections: 1 downloads over one connection', async () => {
    const archive = world.zip('single.zip', [{ name: 'r.bin', data: randomBytes(2_500_000) }]);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'single', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', 'single', '--connections', '1'],
      // Overlap forced: over one connection an archive this small is otherwise downloaded, then unpacked.
      world.env({ ARTIFACT_RELAY_OVERLAP: '1' }),
    );
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /Unpacking while downloading \(\d+ entries in the directory\)/);
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage' && !q.headers.range).length, 1);
    assert.deepEqual(snapshotTree(join(world.workspace, 'single')), unzipTree(world, archive));
  });
});
