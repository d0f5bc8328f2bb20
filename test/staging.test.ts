import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RelayError } from '../src/runtime/errors.ts';
import { commitStaging, createRun, discardRun, discardStaging, findConflicts } from '../src/workspace/staging.ts';
import { listing, snapshotTree } from './helpers/tree.ts';

let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'staging-test-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
const fresh = () => {
  const d = join(work, `case-${n++}`);
  mkdirSync(d);
  return d;
};

function write(root: string, files: Record<string, string>) {
  for (const [p, data] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), data);
  }
}

async function staged(dest: string, files: Record<string, string>) {
  const { staging } = await createRun(dest);
  write(staging, files);
  return staging;
}

describe('staging', () => {
  test('createRun makes a run folder beside dest (empty staging and download), creating the parent; discardRun undoes both', async () => {
    const top = fresh();
    const dest = join(top, 'not', 'yet', 'out');
    const run = await createRun(dest);
    assert.equal(dirname(run.root), dirname(dest));
    assert.ok(basename(run.root).startsWith(`.out.artifact-relay-${process.pid}-`));
    assert.deepEqual(listing(run.staging), []);
    assert.deepEqual(listing(run.download), []);
    assert.ok(!existsSync(dest));
    await discardRun(run);
    assert.deepEqual(listing(top), []);
  });

  test('commit into a new dest is one rename and gives a normal folder mode', async () => {
    const dest = join(fresh(), 'out');
    const s = await staged(dest, { 'a.txt': 'a', 'd/b.txt': 'b' });
    await commitStaging(s, dest, { overwrite: false });
    assert.ok(!existsSync(s));
    assert.equal(readFileSync(join(dest, 'd/b.txt'), 'utf8'), 'b');
    assert.equal(statSync(dest).mode & 0o777, 0o777 & ~process.umask());
  });

  test('merge into an existing dest with overwrite', async () => {
    const dest = join(fresh(), 'out');
    write(dest, { 'keep.txt': 'keep', 'd/old.txt': 'old', 'd/same.txt': 'before' });
    const s = await staged(dest, { 'd/same.txt': 'after', 'd/new.txt': 'new', 'top.txt': 'top' });
    await commitStaging(s, dest, { overwrite: true });
    assert.ok(!existsSync(s));
    assert.deepEqual(
      snapshotTree(dest)
        .filter((e) => e.type === 'file')
        .map((e) => [e.path, readFileSync(join(dest, e.path), 'utf8')]),
      [
        ['d/new.txt', 'new'],
        ['d/old.txt', 'old'],
        ['d/same.txt', 'after'],
        ['keep.txt', 'keep'],
        ['top.txt', 'top'],
      ],
    );
  });

  test('overwrite false with a conflict leaves dest byte-identical', async () => {
    const dest = join(fresh(), 'out');
    write(dest, { 'keep.txt': 'keep', 'd/same.txt': 'before' });
    const before = snapshotTree(dest);
    const s = await staged(dest, { 'a-new.txt': 'would be added first', 'd/same.txt': 'after' });
    await assert.rejects(
      commitStaging(s, dest, { overwrite: false }),
      (err: unknown) => err instanceof RelayError && /overwrite is false.*d\/same\.txt/.test(err.message),
    );
    assert.deepEqual(snapshotTree(dest), before);
    await discardStaging(s);
    assert.ok(!existsSync(s));
  });

  test('overwrite false without conflicts merges', async () => {
    const dest = join(fresh(), 'out');
    write(dest, { 'd/old.txt': 'old' });
    const s = await staged(dest, { 'd/new.txt': 'new' });
    await commitStaging(s, dest, { overwrite: false });
    assert.deepEqual(
      snapshotTree(dest).map((e) => e.path),
      ['d', 'd/new.txt', 'd/old.txt'],
    );
  });

  test('a file replacing a folder (or the reverse) is refused before anything changes', async () => {
    const dest = join(fresh(), 'out');
    write(dest, { 'x/inner.txt': 'i', y: 'file' });
    const before = snapshotTree(dest);
    const s1 = await staged(dest, { 'aaa.txt': 'first', x: 'now a file' });
    await assert.rejects(commitStaging(s1, dest, { overwrite: true }), RelayError);
    const s2 = await staged(dest, { 'y/z.txt': 'y is a folder here' });
    await assert.rejects(commitStaging(s2, dest, { overwrite: true }), RelayError);
    assert.deepEqual(snapshotTree(dest), before);
  });

  test('dest that is a file or a symlink is refused', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'file'), 'x');
    symlinkSync('/tmp', join(dir, 'link'));
    for (const dest of [join(dir, 'file'), join(dir, 'link')]) {
      const s = await staged(dest, { 'a.txt': 'a' });
      await assert.rejects(commitStaging(s, dest, { overwrite: true }), RelayError);
      await discardStaging(s);
    }
    assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'x');
  });

  test('a symlink in dest is replaced, not followed, when overwriting', async () => {
    const dir = fresh();
    const outside = join(dir, 'outside.txt');
    writeFileSync(outside, 'outside');
    const dest = join(dir, 'out');
    mkdirSync(dest);
    symlinkSync(outside, join(dest, 'a.txt'));
    const s = await staged(dest, { 'a.txt': 'new' });
    await commitStaging(s, dest, { overwrite: true });
    assert.equal(readFileSync(outside, 'utf8'), 'outside');
    assert.equal(readFileSync(join(dest, 'a.txt'), 'utf8'), 'new');
  });

  test('findConflicts', async () => {
    const dest = join(fresh(), 'out');
    assert.deepEqual(await findConflicts(dest, ['a']), []);
    write(dest, { 'a.txt': 'a', file: 'f', 'd/x.txt': 'x' });
    symlinkSync('nowhere', join(dest, 'dangling'));
    assert.deepEqual(await findConflicts(dest, ['a.txt', 'new.txt', 'd', 'd/x.txt', 'd/y.txt', 'file/below', 'dangling', 'deeper/z']), [
      'a.txt',
      'd/x.txt',
      'file/below',
      'dangling',
    ]);
  });

  test('discardStaging: missing is fine, read-only folders are removed', async () => {
    await discardStaging(join(work, 'does-not-exist'));
    const { staging: s } = await createRun(join(fresh(), 'out'));
    write(s, { 'ro/a.txt': 'a' });
    chmodSync(join(s, 'ro'), 0o555);
    await discardStaging(s);
    assert.ok(!existsSync(s));
  });
});
