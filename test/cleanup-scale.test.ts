// The pieces of cleanup at scale, without a server: the adaptive pace as a state machine fed with events (counted,
// never timed), the paced pool's in-flight cap, the shard assignment, and the storage report's arithmetic.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdaptivePace, runPaced } from '../src/cleanup/pace.ts';
import { buildStorageReport, storageMarkdown } from '../src/cleanup/report.ts';
import { inShard, shardOf } from '../src/cleanup/shards.ts';
import { parseShard } from '../src/inputs/cleanup-settings.ts';

const FAST = 10;
const SLOW = 60_000;

describe('adaptive pace', () => {
  test('starts at the configured value, halves on a 429 once per burst, never below 1', () => {
    const pace = new AdaptivePace(8, { slowMs: 1000, recoverAfter: 5 });
    assert.equal(pace.limit, 8);
    pace.rateLimited();
    assert.equal(pace.limit, 4);
    pace.rateLimited(); // same burst: the deletions in flight when it started are still answering
    assert.equal(pace.limit, 4);
    for (let i = 0; i < 4; i++) pace.done(FAST);
    pace.rateLimited();
    assert.equal(pace.limit, 2);
    for (let i = 0; i < 2; i++) pace.done(FAST);
    pace.rateLimited();
    for (let i = 0; i < 1; i++) pace.done(FAST);
    pace.rateLimited();
    assert.equal(pace.limit, 1);
    assert.equal(pace.throttled, 5, 'every 429 is counted, halved or not');
    assert.deepEqual(
      pace.changes.map((c) => `${c.from}->${c.to} ${c.why}`),
      ['8->4 rate limited', '4->2 rate limited', '2->1 rate limited'],
    );
  });

  test('recovers one step per run of quick successes, up to the hard cap and no further', () => {
    const pace = new AdaptivePace(3, { slowMs: 1000, recoverAfter: 5 });
    pace.rateLimited();
    assert.equal(pace.limit, 1);
    for (let i = 0; i < 4; i++) pace.done(FAST);
    assert.equal(pace.limit, 1, 'not yet: 4 of 5');
    pace.done(FAST);
    assert.equal(pace.limit, 2);
    for (let i = 0; i < 5; i++) pace.done(FAST);
    assert.equal(pace.limit, 3);
    for (let i = 0; i < 50; i++) pace.done(FAST);
    assert.equal(pace.limit, 3, 'the cap holds');
  });

  test('slow deletions step the limit down one per generation; a 429 resets the recovery run', () => {
    const pace = new AdaptivePace(4, { slowMs: 1000, recoverAfter: 3 });
    pace.done(SLOW);
    assert.equal(pace.limit, 3);
    pace.done(SLOW);
    pace.done(SLOW);
    assert.equal(pace.limit, 3, 'the same generation of 3 in flight');
    pace.done(SLOW);
    assert.equal(pace.limit, 2);
    pace.done(FAST);
    pace.done(FAST);
    pace.rateLimited();
    assert.equal(pace.limit, 1);
    pace.done(FAST);
    pace.done(FAST);
    assert.equal(pace.limit, 1, 'the run restarted at the 429');
    pace.done(FAST);
    assert.equal(pace.limit, 2);
  });

  test('the pool never has more in flight than the limit, re-read as it changes', async () => {
    const pace = new AdaptivePace(4, { slowMs: 1e9, recoverAfter: 1000 });
    let active = 0;
    const seen: number[] = [];
    const items = Array.from({ length: 40 }, (_, i) => i);
    await runPaced(items, pace, async (i) => {
      active++;
      seen.push(active);
      assert.ok(active <= pace.limit, `${active} in flight, limit ${pace.limit}`);
      if (i === 5) pace.rateLimited();
      await new Promise((r) => setImmediate(r));
      active--;
    });
    assert.equal(Math.max(...seen), 4);
    assert.equal(Math.max(...seen.slice(12)), 2, 'after the 429, at most 2');
  });
});

describe('shards', () => {
  test('disjoint, covering, stable, and spread over the shards', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => i + 1);
    const counts = [0, 0, 0, 0];
    for (const id of ids) {
      const owners = [1, 2, 3, 4].filter((index) => inShard(id, { index, total: 4 }));
      assert.equal(owners.length, 1, `project ${id}`);
      assert.equal(owners[0], shardOf(id, 4));
      counts[owners[0] - 1]++;
    }
    for (const n of counts) assert.ok(n > 200 && n < 300, `${counts}`);
    assert.equal(shardOf(4711, 7), shardOf(4711, 7));
    assert.ok(inShard(5, undefined));
  });

  test('shard input: GitLab variables, unset, and nonsense', () => {
    assert.deepEqual(parseShard('2/4'), { index: 2, total: 4 });
    assert.equal(parseShard('/'), undefined, 'CI_NODE_INDEX/CI_NODE_TOTAL unset');
    assert.equal(parseShard('1/1'), undefined);
    assert.throws(() => parseShard('0/4'), /Input shard/);
    assert.throws(() => parseShard('5/4'), /Input shard/);
    assert.throws(() => parseShard('1/201'), /Input shard/);
  });
});

describe('storage report', () => {
  test('per project and per reason, largest first; totals add up', () => {
    const report = buildStorageReport(
      [
        {
          project_id: 1,
          path: 'g/small',
          artifact_bytes: 500,
          by_reason: { deleted: { jobs: 1, bytes: 100 }, keep_refs: { jobs: 2, bytes: 300 } },
        },
        {
          project_id: 2,
          path: 'g/big|pipe',
          artifact_bytes: 9000,
          by_reason: { deleted: { jobs: 3, bytes: 5000 }, 'delete failed': { jobs: 1, bytes: 50 } },
        },
        { project_id: 3, path: 'g/empty', artifact_bytes: 0, skipped: 'no artifacts (project statistics)', by_reason: {} },
      ],
      false,
    );
    assert.deepEqual(
      report.projects.map((p) => p.path),
      ['g/big|pipe', 'g/small', 'g/empty'],
    );
    assert.deepEqual(report.totals, {
      artifact_bytes: 9500,
      deleted_bytes: 5100,
      kept_bytes: 300,
      failed_bytes: 50,
      projects: 3,
      skipped: 1,
    });
    assert.deepEqual(
      report.reasons.map((r) => [r.reason, r.jobs, r.bytes]),
      [
        ['deleted', 4, 5100],
        ['keep_refs', 2, 300],
        ['delete failed', 1, 50],
      ],
    );
    const md = storageMarkdown(report);
    assert.match(md, /Freed \*\*5\.0 KiB\*\* in 3 project\(s\)/);
    assert.match(md, /\| g\/big\\\|pipe \| 8\.8 KiB \| 4\.9 KiB \| 0 B \|/);
    assert.match(md, /\| g\/empty \| 0 B \| 0 B \| no artifacts \(project statistics\) \|/);
  });
});
