// The commit into an existing destination, attacked and broken on purpose: links that escape through links already
// in the destination, and failures in the middle of the moves. Nothing may land outside the destination, and on any
// failure the destination is byte-for-byte as it was.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RelayError } from '../src/runtime/errors.ts';
import { commitStaging, createRun, discardRun } from '../src/workspace/staging.ts';
import { listing, snapshotTree } from './helpers/tree.ts';

let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'commit-safety-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
const fresh = () => {
  const d = join(work, `case-${n++}`);
  mkdirSync(d);
  return d;
};

type Spec = Record<string, string | { link: string } | { dir: true }>;
function write(root: string, spec: Spec) {
  for (const [p, v] of Object.entries(spec)) {
    const abs = join(root, p);
    mkdirSync(dirname(abs), { recursive: true });
    if (typeof v === 'string') writeFileSync(abs, v);
    else if ('link' in v) symlinkSync(v.link, abs);
    else mkdirSync(abs, { recursive: true });
  }
}

/** A destination inside `box` (so "outside" is observable), with `existing`, and a staging folder holding `incoming`. */
async function setup(existing: Spec, incoming: Spec) {
  const box = fresh();
  const dest = join(box, 'dest');
  mkdirSync(dest);
  write(dest, existing);
  writeFileSync(join(box, 'outside.txt'), 'outside');
  const boxBefore = listing(box);
  const run = await createRun(dest);
  write(run.staging, incoming);
  return { box, dest, run, staging: run.staging, before: snapshotTree(dest), boxBefore };
}

describe('links resolved against the destination as it will be after the commit', () => {
  const escaping: [string, Spec, Spec][] = [
    ['an existing x -> . lets y -> x/x/../../outside.txt out', { x: { link: '.' } }, { y: { link: 'x/x/../../outside.txt' } }],
    ['an existing deep link up (a/up -> ..) makes a/up/up/.. leave', { 'a/up': { link: '..' } }, { 'a/z': { link: 'up/../..' } }],
    ['an existing link out of the destination (p -> ..) used by a new link', { p: { link: '..' } }, { q: { link: 'p/dest/../..' } }],
    ['an existing x -> sub/.., y through it twice', { sub: { dir: true }, x: { link: 'sub/..' } }, { 'sub/y': { link: '../x/..' } }],
    [
      'a new link chained through a new and an existing link',
      { e: { link: '.' } },
      { n: { link: 'e/e' }, m: { link: 'n/../outside.txt' } },
    ],
    // An existing link that points inside now (a dangling a/.., read as the root) and outside once a -> . arrives.
    ['an existing dangling b -> a/.. once the archive brings a -> .', { b: { link: 'a/..' } }, { a: { link: '.' } }],
    ['an existing sub/b -> ../a/.. once the archive brings a -> .', { 'sub/b': { link: '../a/..' } }, { a: { link: '.' } }],
  ];
  for (const [name, existing, incoming] of escaping) {
    test(`refused: ${name}`, async () => {
      const s = await setup(existing, incoming);
      await assert.rejects(commitStaging(s.staging, s.dest, { overwrite: true }), (err: unknown) => {
        assert.ok(err instanceof RelayError, String(err));
        assert.match(err.message, /symlink escapes the destination/);
        return true;
      });
      assert.deepEqual(snapshotTree(s.dest), s.before);
      await discardRun(s.run);
      assert.deepEqual(listing(s.box), s.boxBefore);
    });
  }

  test('accepted: links that stay inside through existing links', async () => {
    const s = await setup(
      { x: { link: '.' }, 'sub/f': 'f' },
      { y: { link: 'x/x/sub/f' }, 'sub/up': { link: '../x/sub' }, z: { link: 'not/yet/../there' }, 'through-abs': { link: 'abs/f' } },
    );
    symlinkSync(join(s.dest, 'sub'), join(s.dest, 'abs')); // absolute, but inside
    await commitStaging(s.staging, s.dest, { overwrite: true });
    assert.ok(snapshotTree(s.dest).some((e) => e.path === 'through-abs' && e.target === 'abs/f'));
    assert.ok(snapshotTree(s.dest).some((e) => e.path === 'y' && e.target === 'x/x/sub/f'));
  });

  test('accepted: existing links that stay inside, or already led outside, are not blamed on the archive', async () => {
    const s = await setup({ b: { link: 'a/../sub' }, p: { link: '..' }, 'sub/f': 'f' }, { a: { link: 'sub' }, n: { link: 'sub/f' } });
    await commitStaging(s.staging, s.dest, { overwrite: true });
    assert.ok(snapshotTree(s.dest).some((e) => e.path === 'a' && e.target === 'sub'));
  });

  test('a file entry under an existing symlinked folder (x -> elsewhere, entry x/file) never lands outside', async () => {
    const box = fresh();
    const elsewhere = join(box, 'elsewhere');
    mkdirSync(elsewhere);
    const s = await setup({ x: { link: elsewhere }, inner: { dir: true }, y: { link: 'inner' } }, { 'x/file': 'evil', 'y/file': 'x' });
    await assert.rejects(commitStaging(s.staging, s.dest, { overwrite: true }), /a folder in the archive, a symlink in the destination/);
    assert.deepEqual(readdirSync(elsewhere), []);
    assert.deepEqual(snapshotTree(s.dest), s.before);
  });
});

describe('a failure in the middle of the commit', () => {
  /** Makes the `nth` rename (counting from 1) of the code under test fail with `code`, through the fs module itself. */
  async function withFailingRename<T>(nth: number, code: string, run: () => Promise<T>): Promise<T> {
    const real = fsp.rename;
    let calls = 0;
    fsp.rename = (async (a, b) => {
      calls += 1;
      if (calls === nth) throw Object.assign(new Error(`${code}: injected`), { code });
      return real(a, b);
    }) as typeof fsp.rename;
    syncBuiltinESMExports();
    try {
      return await run();
    } finally {
      fsp.rename = real;
      syncBuiltinESMExports();
    }
  }

  for (const nth of [1, 2, 3]) {
    test(`rename ${nth} of the moves fails (ENOSPC): the destination is exactly as before`, async () => {
      const s = await setup(
        { 'a.txt': 'old a', 'd/b.txt': 'old b', 'keep.txt': 'keep' },
        { 'a.txt': 'new a', 'd/b.txt': 'new b', 'd/c.txt': 'new c', 'e/f.txt': 'new f' },
      );
      await assert.rejects(
        withFailingRename(nth, 'ENOSPC', () => commitStaging(s.staging, s.dest, { overwrite: true })),
        RelayError,
      );
      assert.deepEqual(snapshotTree(s.dest), s.before);
      await discardRun(s.run);
      assert.deepEqual(listing(s.box), s.boxBefore);
    });
  }
});
