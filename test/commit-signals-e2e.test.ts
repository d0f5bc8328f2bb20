// The commit under real signals: SIGINT, SIGTERM, SIGHUP and SIGKILL (then recovery) at seeded random steps of a
// child process committing the way fetch does (test/helpers/commit-child.ts). After each: the destination byte-for-byte
// as before (or fully new when the commit completed), and nothing left beside it. A child process per iteration, so this
// is in the e2e tier; failures injected in-process are in commit-transaction.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import { recoverInterrupted } from '../src/workspace/staging.ts';
import { assertNew, box as boxIn, INCOMING, STEPS } from './helpers/commit-fixture.ts';
import { listing, snapshotTree } from './helpers/tree.ts';

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

const box = () => boxIn(work);

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
