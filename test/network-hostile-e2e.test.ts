// Hostile and unlucky servers, end to end (the bundle against the simulator): every body bounded (endless bodies,
// oversized Range answers, endless JSON), drips and deadlines, and an object swapped between the tail request and the
// body. Memory is measured as the child's peak RSS (GNU time), bytes as the simulator counted them; never wall time.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type RunResult, runBundle } from './helpers/run.ts';
import { snapshotTree } from './helpers/tree.ts';
import { pythonZip } from './helpers/archives.ts';
import { useWorld, type World } from './helpers/world.ts';

const MiB = 1024 * 1024;
/** What the kernel and the sockets may hold between the simulator's writes and the client's reads. */
const IN_FLIGHT = 16 * MiB;
const RSS_LIMIT_MB = 200;

let runs = 0;

/** Runs the bundle under GNU time: the result plus the child's peak RSS in MB. */
async function runMeasured(world: World, args: string[], env: NodeJS.ProcessEnv): Promise<RunResult & { rssMb: number }> {
  const rssFile = join(world.dir, `rss-${++runs}.txt`);
  const r = await runBundle(args, env, { cwd: world.workspace, timeoutMs: 120_000, prefix: ['/usr/bin/time', '-f', '%M', '-o', rssFile] });
  const kb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
  return { ...r, rssMb: kb / 1024 };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function unzipTree(world: World, archive: string) {
  const out = mkdtempSync(join(world.dir, 'ref-'));
  execFileSync('unzip', ['-q', archive, '-d', out]);
  return snapshotTree(out);
}

function fetchArgs(world: World, jobId: number, dest: string, extra: string[] = []): string[] {
  return ['fetch', '--project', world.upstream.path, '--job-id', String(jobId), '--path', dest, '--summary', `${dest}.json`, ...extra];
}

/** Bytes the simulator's storage origin sent in answers to requests with (or without) Range. */
function storageBytes(world: World, withRange: boolean): number {
  return world.sim.requests
    .filter((q) => q.origin === 'storage' && (q.headers.range !== undefined) === withRange)
    .reduce((n, q) => n + (q.bytesSent ?? 0), 0);
}

describe('every response body is bounded', () => {
  const world = useWorld();
  const report = (label: string, r: { rssMb: number }) => console.log(`# ${label}: peak RSS ${r.rssMb.toFixed(0)} MB`);

  test('an endless chunked archive body stops at the size the tail request announced', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    world.sim.injectFault({ origin: 'storage', kind: 'endless', range: false, maxBytes: 256 * MiB });
    const r = await runMeasured(world, fetchArgs(world, world.build.id, 'endless-tail'), world.env({ ARTIFACT_RELAY_OVERLAP: '1' }));
    report('endless body after the tail', r);
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /more than the \d+ bytes/);
    const size = readFileSync(world.archive).length;
    assert.ok(storageBytes(world, false) < size + IN_FLIGHT, `storage sent ${storageBytes(world, false)} bytes`);
    assert.ok(r.rssMb < RSS_LIMIT_MB, `peak RSS ${r.rssMb} MB`);
  });

  test('an endless chunked body without a tail request never exceeds max_archive_bytes', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    world.sim.injectFault({ origin: 'storage', kind: 'endless', range: false, maxBytes: 256 * MiB, times: 10 });
    const r = await runMeasured(
      world,
      fetchArgs(world, world.build.id, 'endless-cap', ['--max-archive-bytes', '4MiB']),
      world.env({ ARTIFACT_RELAY_OVERLAP: '0' }),
    );
    report('endless body, no Range', r);
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /max_archive_bytes/);
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage').length, 1, 'not retried');
    assert.ok(storageBytes(world, false) < 4 * MiB + IN_FLIGHT, `storage sent ${storageBytes(world, false)} bytes`);
    assert.ok(r.rssMb < RSS_LIMIT_MB, `peak RSS ${r.rssMb} MB`);
  });

  test('an endless 206 answer to the tail request is refused', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    world.sim.injectFault({ origin: 'storage', kind: 'endless', range: true, maxBytes: 400 * MiB, times: 10 });
    const r = await runMeasured(world, fetchArgs(world, world.build.id, 'endless-206'), world.env({ ARTIFACT_RELAY_OVERLAP: '1' }));
    report('endless 206', r);
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /more bytes than its Content-Range/);
    assert.ok(storageBytes(world, true) < 64 * 1024 + IN_FLIGHT, `storage sent ${storageBytes(world, true)} bytes`);
    assert.ok(r.rssMb < RSS_LIMIT_MB, `peak RSS ${r.rssMb} MB`);
  });

  test('a Range answer larger than the range asked is refused: download, then unpack', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    // Bigger than the 64 KiB tail request, so that the whole archive is more than the range asked.
    const archive = world.zip('oversize.zip', [{ name: 'random.bin', data: randomBytes(200_000) }]);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'oversize', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    world.sim.injectFault({ origin: 'storage', kind: 'oversize-range', range: true, times: 10 });
    const r = await runMeasured(world, fetchArgs(world, j.id, 'oversize-range'), world.env({ ARTIFACT_RELAY_OVERLAP: '1' }));
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /Download, then unpack/);
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage' && q.headers.range).length, 1, 'refused, not retried');
    assert.deepEqual(snapshotTree(join(world.workspace, 'oversize-range')), unzipTree(world, archive));
  });

  test('an endless JSON answer fails at the JSON size cap', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    world.sim.injectFault({ origin: 'gitlab', path: /\/pipelines/, kind: 'endless', maxBytes: 400 * MiB, times: 10 });
    const r = await runMeasured(
      world,
      ['fetch', '--project', world.upstream.path, '--ref', 'main', '--job', 'build', '--path', 'endless-json', '--retries', '1'],
      world.env(),
    );
    report('endless JSON', r);
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /answer is larger than 32 MiB/);
    const sent = world.sim.requests.filter((q) => q.origin === 'gitlab').reduce((n, q) => n + (q.bytesSent ?? 0), 0);
    assert.ok(sent < 32 * MiB + IN_FLIGHT, `GitLab sent ${sent} bytes`);
    assert.ok(r.rssMb < RSS_LIMIT_MB, `peak RSS ${r.rssMb} MB`);
  });
});

describe('stalls and drips', () => {
  const world = useWorld();

  test('a body dripping below speed_limit over speed_time is retried, then fails naming the inputs', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    world.sim.injectFault({ origin: 'storage', kind: 'slow', bytesPerSecond: 1, times: 2 });
    const r = await runMeasured(
      world,
      fetchArgs(world, world.build.id, 'drip', ['--speed-limit', '1000', '--speed-time', '0.5', '--retries', '1']),
      world.env({ ARTIFACT_RELAY_OVERLAP: '0' }),
    );
    assert.equal(r.status, 1, r.output);
    assert.equal(
      (r.output.match(/ERR_TOO_SLOW: the body arrived slower than 1000 B\/s for 0\.5 s.*; retrying/g) ?? []).length,
      1,
      r.output,
    );
    assert.match(r.output, /speed_limit/);
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage').length, 2, 'retried once');
  });

  test('the deadline ends a transfer that stays above the speed limit, and is not retried', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    const size = readFileSync(world.archive).length;
    // Fast enough for the speed rule, but the whole body needs about 4 s, past the 1 s deadline.
    world.sim.injectFault({ origin: 'storage', kind: 'slow', bytesPerSecond: Math.ceil(size / 4), times: 5 });
    const r = await runMeasured(
      world,
      fetchArgs(world, world.build.id, 'deadline', ['--deadline', '1', '--speed-limit', '1']),
      world.env({ ARTIFACT_RELAY_OVERLAP: '0' }),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /deadline/);
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage').length, 1, 'not retried');
  });
});

describe('one archive, not two', () => {
  const world = useWorld();

  for (const validators of ['none', 'last-modified', 'both'] as const) {
    test(`storage swaps the object (same size) after the tail request, validators ${validators}: the tree is the one the sha256 describes`, async () => {
      world.sim.clearFaults();
      world.sim.requests.length = 0;
      world.sim.storageValidators = validators;
      const entries = (c: string) => [
        { name: 'data/big.txt', data: c.repeat(200_000) },
        { name: 'data/small.txt', data: `${c}\n` },
      ];
      const a = pythonZip(join(world.dir, `swap-a-${validators}.zip`), entries('A'), { method: 'store' });
      const b = pythonZip(join(world.dir, `swap-b-${validators}.zip`), entries('B'), { method: 'store' });
      assert.equal(readFileSync(a).length, readFileSync(b).length);
      const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: `swap-${validators}`, status: 'success' });
      const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: a });
      world.sim.swapArchive(j.id, { archive: b, afterGets: 1 });
      const dest = `swap-${validators}`;
      const r = await runMeasured(world, fetchArgs(world, j.id, dest), world.env({ ARTIFACT_RELAY_OVERLAP: '1' }));
      world.sim.storageValidators = 'both';
      assert.equal(r.status, 0, r.output);
      const summary = JSON.parse(readFileSync(join(world.workspace, `${dest}.json`), 'utf8'));
      assert.equal(summary.sources[0].sha256, sha(readFileSync(b)));
      assert.deepEqual(snapshotTree(join(world.workspace, dest)), unzipTree(world, b));
      if (validators !== 'none') {
        const ranged = world.sim.requests.filter((q) => q.origin === 'storage' && q.headers.range);
        for (const q of ranged.slice(1)) assert.ok(q.headers['if-range'], `ranged request without If-Range: ${q.headers.range}`);
      }
    });
  }
});
