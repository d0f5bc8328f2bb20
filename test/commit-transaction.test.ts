// The commit as a transaction: a failure injected before every step (and in the rollback itself), and SIGINT,
// SIGTERM, SIGHUP and SIGKILL (then recovery) at seeded random steps. After each: the destination byte-for-byte as
// before (or fully new on success), and nothing left beside it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import { RelayError } from '../src/runtime/errors.ts';
import { type CommitStep, commitStaging, createRun, discardRun, recoverInterrupted } from '../src/workspace/staging.ts';
import { listing, snapshotTree } from './helpers/tree.ts';

type Spec = Record<string, string | { link: string }>;

const EXISTING: Spec = { 'a.txt': 'old a', 'd/b.txt': 'old b', 'keep.txt': 'keep', link1: { link: 'a.txt' } };
const INCOMING: Spec = {
  'a.txt': 'new a',
  'd/b.txt': 'new b',
  'd/c.txt': 'new c',
  'e/f.txt': 'new f',
  link1: { link: 'd/c.txt' },
  'n/m/o.txt': 'new o',
};
/** journal, aside+place a.txt, aside+place d/b.txt, place d/c.txt, place e, aside+place link1, place n, commit. */
const STEPS = 11;

let work: string;
let child: string;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'commit-txn-'));
  child = join(work, 'commit-child.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./helpers/commit-child.ts', import.meta.url))],
    outfile: child,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
});
after(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
function write(root: string, spec: Spec) {
  for (const [p, v] of Object.entries(spec)) {
    const abs = join(root, p);
    mkdirSync(dirname(abs), { recursive: true });
    if (typeof v === 'string') writeFileSync(abs, v);
    else symlinkSync(v.link, abs);
  }
}

/** A destination inside its own box, holding EXISTING; `before` is its snapshot, `boxBefore` the box's listing. */
function box() {
  const dir = join(work, `box-${n++}`);
  const dest = join(dir, 'dest');
  mkdirSync(dest, { recursive: true });
  write(dest, EXISTING);
  return { dir, dest, before: snapshotTree(dest), boxBefore: listing(dir) };
}

function assertNew(dest: string) {
  assert.equal(readFileSync(join(dest, 'a.txt'), 'utf8'), 'new a');
  assert.equal(readFileSync(join(dest, 'd/b.txt'), 'utf8'), 'new b');
  assert.equal(readFileSync(join(dest, 'n/m/o.txt'), 'utf8'), 'new o');
  assert.equal(readFileSync(join(dest, 'keep.txt'), 'utf8'), 'keep');
  assert.equal(readlinkSync(join(dest, 'link1')), 'd/c.txt');
}

async function stagedRun(dest: string) {
  const run = await createRun(dest);
  write(run.staging, INCOMING);
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

/** Deterministic RNG (mulberry32). */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function runChild(dest: string, pause: number, signal: NodeJS.Signals | undefined) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    const p = spawn(process.execPath, [child, JSON.stringify({ dest, incoming: INCOMING, pause })], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
      if (signal && stdout.includes('paused\n') && !p.killed) p.kill(signal);
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    p.on('error', reject);
    p.on('close', (code, sig) => resolve({ code, signal: sig, stdout, stderr }));
  });
}

describe('signals at random steps of the commit (seeded), in a child process', () => {
  const EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as Record<string, number>;
  const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGKILL'];
  const random = rng(0x11c0ffee);
  const plan = Array.from({ length: 52 }, (_, i) => ({
    signal: SIGNALS[i % SIGNALS.length],
    // Mostly a pause at a random step; now and then none (the commit completes).
    pause: random() < 0.1 ? -1 : Math.floor(random() * STEPS),
  }));
  test('52 iterations (4 at a time): rolled back to exactly the previous tree (or fully new), nothing left behind', async () => {
    const one = async (i: number) => {
      const { signal, pause } = plan[i];
      const b = box();
      const r = await runChild(b.dest, pause, pause < 0 ? undefined : signal);
      const what = `iteration ${i}: ${signal} at step ${pause}\n${r.stdout}${r.stderr}`;
      if (pause < 0) {
        assert.equal(r.code, 0, what);
        assertNew(b.dest);
      } else if (signal === 'SIGKILL') {
        assert.equal(r.signal, 'SIGKILL', what);
        const recovered = await recoverInterrupted(b.dest);
        assert.equal(recovered.removed.length, 1, what);
        assert.equal(recovered.rolledBack.length, pause === 0 ? 0 : 1, what);
        assert.deepEqual(snapshotTree(b.dest), b.before, what);
      } else {
        assert.equal(r.code, EXIT[signal], what);
        assert.match(r.stderr, new RegExp(`Interrupted by ${signal}: temporary files removed, the destination is unchanged`), what);
        assert.deepEqual(snapshotTree(b.dest), b.before, what);
      }
      assert.deepEqual(listing(b.dir), b.boxBefore, what);
    };
    let next = 0;
    const worker = async () => {
      while (next < plan.length) await one(next++);
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  });
});
