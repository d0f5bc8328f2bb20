// Issue 11 items 1-4 through the real bundle: links escaping through links already in the workspace or from another
// job, a destination outside the project, signals during the commit and the download, and the next run (or
// `artifact-relay recover`) cleaning up after SIGKILL. Nothing outside the destination changes, nothing is left over.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BUNDLE, runBundle } from './helpers/run.ts';
import { listing, snapshotTree } from './helpers/tree.ts';
import { useWorld, type World } from './helpers/world.ts';

/** A fresh $CI_PROJECT_DIR inside its own box (so "beside the destination" and "outside" are observable). */
function project(world: World) {
  const box = mkdtempSync(join(world.dir, 'box-'));
  const dir = join(box, 'project');
  mkdirSync(dir);
  writeFileSync(join(box, 'outside.txt'), 'outside');
  return { box, dir };
}

/** Runs the bundle and sends `signal` once the output matches `when`. */
function runAndSignal(args: string[], env: NodeJS.ProcessEnv, when: RegExp, signal: NodeJS.Signals) {
  return new Promise<{ status: number | null; signal: NodeJS.Signals | null; output: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [BUNDLE, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let sent = false;
    const on = (d: Buffer) => {
      output += d;
      if (!sent && when.test(output)) {
        sent = true;
        child.kill(signal);
      }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('error', reject);
    child.on('close', (status, sig) => resolve({ status, signal: sig, output }));
  });
}

describe('links escaping through links that already exist (bundle)', () => {
  const world = useWorld();

  test("default path '.', a checkout holding x -> .: an archive link y -> x/x/../../outside.txt is refused", async () => {
    const p = project(world);
    symlinkSync('.', join(p.dir, 'x'));
    writeFileSync(join(p.dir, 'README.md'), 'checkout');
    const before = snapshotTree(p.dir);
    const boxBefore = listing(p.box);
    const zip = world.zip('escape-through-checkout.zip', [
      { name: 'ok.txt', data: 'ok' },
      { name: 'y', type: 'symlink', target: 'x/x/../../outside.txt' },
    ]);
    const pipeline = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
    const job = world.sim.addJob({ pipelineId: pipeline.id, name: 'build', status: 'success', archive: zip });
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(job.id)],
      world.env({ CI_PROJECT_DIR: p.dir }),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(
      r.output,
      /symlink escapes the destination once merged with what is already there \(y -> x\/x\/\.\.\/\.\.\/outside\.txt\)/,
    );
    assert.deepEqual(snapshotTree(p.dir), before);
    assert.deepEqual(listing(p.box), boxBefore);
  });

  test('layout merge: job A brings x -> ., job B the escaping link: refused, nothing written', async () => {
    const p = project(world);
    const boxBefore = listing(p.box);
    const pipeline = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
    world.sim.addJob({
      pipelineId: pipeline.id,
      name: 'job-a',
      status: 'success',
      archive: world.zip('a.zip', [
        { name: 'a.txt', data: 'a' },
        { name: 'x', type: 'symlink', target: '.' },
      ]),
    });
    world.sim.addJob({
      pipelineId: pipeline.id,
      name: 'job-b',
      status: 'success',
      archive: world.zip('b.zip', [{ name: 'y', type: 'symlink', target: 'x/x/../../outside.txt' }]),
    });
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--pipeline', String(pipeline.id), '--job', 'job-a,job-b', '--path', 'merged'],
      world.env({ CI_PROJECT_DIR: p.dir }),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /symlink escapes the destination/);
    assert.deepEqual(listing(p.dir), []);
    assert.deepEqual(listing(p.box), boxBefore);
  });

  test('path outside the project: exit 2 naming path, nothing downloaded or written', async () => {
    const p = project(world);
    const boxBefore = listing(p.box);
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', '../elsewhere'],
      world.env({ CI_PROJECT_DIR: p.dir }),
    );
    assert.equal(r.status, 2, r.output);
    assert.match(r.output, /Input path: "\.\.\/elsewhere" .* outside the project directory/);
    assert.deepEqual(listing(p.box), boxBefore);
  });
});

describe('signals during the commit and the download (bundle)', () => {
  const world = useWorld();
  const OLD = { 'dist/app': 'OLD APP\n', 'keep.txt': 'keep\n', current: 'a file the archive replaces with a link\n' };

  /** A project whose `out` already holds OLD (so the commit merges, with a journal). */
  function withOld() {
    const p = project(world);
    const dest = join(p.dir, 'out');
    for (const [rel, data] of Object.entries(OLD)) {
      mkdirSync(join(dest, rel, '..'), { recursive: true });
      writeFileSync(join(dest, rel), data);
    }
    return { ...p, dest, before: snapshotTree(dest), boxBefore: listing(p.box), projectBefore: listing(p.dir) };
  }
  const args = () => ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'out'];

  // current (aside, place), dist/app (aside, place), dist/config.json, dist/private.key, reports, commit: steps 0..8.
  for (const [signal, step, code] of [
    ['SIGTERM', 3, 143],
    ['SIGINT', 1, 130],
    ['SIGHUP', 8, 129],
  ] as const) {
    test(`${signal} while the commit is paused at step ${step}: rolled back, the log says so truthfully, nothing left`, async () => {
      const s = withOld();
      const r = await runAndSignal(
        args(),
        world.env({ CI_PROJECT_DIR: s.dir, ARTIFACT_RELAY_TEST_COMMIT_PAUSE: String(step) }),
        /commit paused at step/,
        signal,
      );
      assert.equal(r.status, code, r.output);
      assert.match(r.output, new RegExp(`Interrupted by ${signal}: temporary files removed, the destination is unchanged`));
      assert.deepEqual(snapshotTree(s.dest), s.before);
      assert.deepEqual(listing(s.box), s.boxBefore);
      assert.deepEqual(listing(s.dir), s.projectBefore);
    });
  }

  test('SIGKILL in the middle of the commit, then `artifact-relay recover`: the previous tree, no leftovers', async () => {
    const s = withOld();
    const r = await runAndSignal(
      args(),
      world.env({ CI_PROJECT_DIR: s.dir, ARTIFACT_RELAY_TEST_COMMIT_PAUSE: '4' }),
      /commit paused at step/,
      'SIGKILL',
    );
    assert.equal(r.signal, 'SIGKILL', r.output);
    assert.notDeepEqual(snapshotTree(s.dest), s.before, 'the kill left a half-committed tree');
    assert.notDeepEqual(listing(s.dir), s.projectBefore, 'and its run folder');
    const rec = await runBundle(['recover', '--path', 'out'], world.env({ CI_PROJECT_DIR: s.dir }));
    assert.equal(rec.status, 0, rec.output);
    assert.match(
      rec.output,
      /killed while committing into out: rolled back from its journal \(1 new entr\(ies\) taken out, 2 replaced file\(s\) put back\)/,
    );
    assert.deepEqual(snapshotTree(s.dest), s.before);
    assert.deepEqual(listing(s.box), s.boxBefore);
    assert.deepEqual(listing(s.dir), s.projectBefore);
  });

  test('SIGKILL in the middle of the commit, then the next fetch rolls back first and commits the new tree', async () => {
    const s = withOld();
    const r = await runAndSignal(
      args(),
      world.env({ CI_PROJECT_DIR: s.dir, ARTIFACT_RELAY_TEST_COMMIT_PAUSE: '6' }),
      /commit paused at step/,
      'SIGKILL',
    );
    assert.equal(r.signal, 'SIGKILL', r.output);
    const next = await runBundle(args(), world.env({ CI_PROJECT_DIR: s.dir }));
    assert.equal(next.status, 0, next.output);
    assert.ok(
      next.output.indexOf('rolled back from its journal') < next.output.indexOf('fetch from'),
      `recovery comes before anything else:\n${next.output}`,
    );
    assert.equal(readFileSync(join(s.dest, 'dist/app'), 'utf8'), '#!/bin/sh\necho app\n');
    assert.equal(readFileSync(join(s.dest, 'keep.txt'), 'utf8'), 'keep\n');
    assert.deepEqual(listing(s.box), s.boxBefore);
    assert.deepEqual(listing(s.dir), s.projectBefore);
  });

  for (const signal of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) {
    test(`${signal} during a stalled download: no staging or download folder stays behind`, async () => {
      const s = withOld();
      world.sim.injectFault({ origin: 'storage', kind: 'stall', afterBytes: 100 });
      const r = await runAndSignal(
        args(),
        world.env({ CI_PROJECT_DIR: s.dir, ARTIFACT_RELAY_OVERLAP: '0' }),
        /Download, then unpack/,
        signal,
      );
      world.sim.clearFaults();
      assert.notEqual(r.status, 0, r.output);
      assert.match(r.output, new RegExp(`Interrupted by ${signal}: temporary files removed, the destination is unchanged`));
      assert.deepEqual(snapshotTree(s.dest), s.before);
      assert.deepEqual(listing(s.box), s.boxBefore);
      assert.deepEqual(listing(s.dir), s.projectBefore);
    });
  }

  test('SIGKILL during a stalled download: the next run (recover) removes the leftovers', async () => {
    const s = withOld();
    world.sim.injectFault({ origin: 'storage', kind: 'stall', afterBytes: 100 });
    const r = await runAndSignal(
      args(),
      world.env({ CI_PROJECT_DIR: s.dir, ARTIFACT_RELAY_OVERLAP: '0' }),
      /Download, then unpack/,
      'SIGKILL',
    );
    assert.equal(r.signal, 'SIGKILL');
    assert.ok(
      listing(s.dir).some((n) => n.startsWith('.out.artifact-relay-')),
      'the kill left its run folder',
    );
    const rec = await runBundle(['recover', '--path', 'out'], world.env({ CI_PROJECT_DIR: s.dir }));
    assert.equal(rec.status, 0, rec.output);
    assert.match(rec.output, /Removed 1 leftover folder/);
    assert.deepEqual(snapshotTree(s.dest), s.before);
    assert.deepEqual(listing(s.box), s.boxBefore);
    assert.ok(!existsSync(join(s.box, 'elsewhere')));
  });
});
