// The commit as a transaction, in-process: a failure injected before every step, and in the rollback itself. After
// each: the destination byte-for-byte as before (or fully new on success), and nothing left beside it. Signals at random
// steps, in a child process, are in commit-signals-e2e.test.ts.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RelayError } from '../src/runtime/errors.ts';
import { type CommitStep, commitStaging, createRun, discardRun, recoverInterrupted } from '../src/workspace/staging.ts';
import { assertNew, box as boxIn, INCOMING, STEPS, writeSpec } from './helpers/commit-fixture.ts';
import { listing, snapshotTree } from './helpers/tree.ts';

let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'commit-txn-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

const box = () => boxIn(work);

async function stagedRun(dest: string) {
  const run = await createRun(dest);
  writeSpec(run.staging, INCOMING);
  return run;
}

describe('a failure injected at every step of the commit', () => {
  test('the fixture has the steps this file counts on, and commits fully when nothing fails', async () => {
    const b = box();
    const run = await stagedRun(b.dest);
    const steps: CommitStep[] = [];
    await commitStaging(run.staging, b.dest, { overwrite: true, workDir: run.root, onStep: (s) => void steps.push(s) });
    await discardRun(run);
    assert.equal(steps.length, STEPS);
    assert.deepEqual(
      steps.map((s) => s.phase),
      ['journal', 'aside', 'place', 'aside', 'place', 'place', 'place', 'aside', 'place', 'place', 'commit'],
    );
    assertNew(b.dest);
    assert.deepEqual(listing(b.dir), b.boxBefore);
  });

  for (let k = 0; k < STEPS; k++) {
    test(`fails before step ${k}: rolled back, the destination exactly as before, no leftovers`, async () => {
      const b = box();
      const run = await stagedRun(b.dest);
      await assert.rejects(
        commitStaging(run.staging, b.dest, {
          overwrite: true,
          workDir: run.root,
          onStep: (s) => {
            if (s.index === k) throw Object.assign(new Error('injected ENOSPC'), { code: 'ENOSPC' });
          },
        }),
        (err: unknown) => err instanceof RelayError && /injected ENOSPC.*rolled back: the destination is as it was/.test(err.message),
      );
      assert.deepEqual(snapshotTree(b.dest), b.before);
      await discardRun(run);
      assert.deepEqual(listing(b.dir), b.boxBefore);
    });
  }

  // The rollback itself fails (at its first, a middle, or its last step): the journal stays, recovery finishes it.
  for (const [k, r] of [
    [STEPS - 1, 0],
    [STEPS - 1, 4],
    [STEPS - 1, 'last'],
    [2, 0],
    [5, 'last'],
  ] as const) {
    test(`fails before step ${k}, then the rollback fails at its ${r === 'last' ? 'last' : `#${r}`} step: the journal stays and recovery restores the tree`, async () => {
      const b = box();
      const run = await stagedRun(b.dest);
      // The rollback's steps (after k commit steps): count them on a dry run first.
      const rollbackSteps: number[] = [];
      const probe = box();
      const probeRun = await stagedRun(probe.dest);
      await commitStaging(probeRun.staging, probe.dest, {
        overwrite: true,
        workDir: probeRun.root,
        onStep: (s) => {
          if (s.index === k) throw new Error('probe');
          if (s.index > k) rollbackSteps.push(s.index);
        },
      }).catch(() => undefined);
      await discardRun(probeRun);
      assert.deepEqual(snapshotTree(probe.dest), probe.before);
      const failAt = r === 'last' ? rollbackSteps.at(-1) : rollbackSteps[r];
      assert.ok(failAt !== undefined, `no rollback step ${r} in ${rollbackSteps}`);
      await assert.rejects(
        commitStaging(run.staging, b.dest, {
          overwrite: true,
          workDir: run.root,
          onStep: (s) => {
            if (s.index === k) throw new Error('injected failure');
            if (s.index === failAt) throw new Error('injected rollback failure');
          },
        }),
        (err: unknown) => err instanceof RelayError && /rollback could not restore 1 path.*artifact-relay recover/.test(err.message),
      );
      await discardRun(run); // keeps the run folder: its journal is needed
      assert.ok(existsSync(join(run.root, 'journal.json')));
      const recovered = await recoverInterrupted(b.dest);
      assert.equal(recovered.rolledBack.length, 1);
      assert.deepEqual(snapshotTree(b.dest), b.before);
      assert.deepEqual(listing(b.dir), b.boxBefore);
    });
  }
});
