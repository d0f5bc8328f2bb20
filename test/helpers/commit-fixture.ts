// The destination and staged tree both commit tests use (test/commit-transaction.test.ts injects failures in-process;
// test/commit-signals-e2e.test.ts sends signals to a child process): what exists before, what arrives, the step count.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { listing, snapshotTree } from './tree.ts';

type Spec = Record<string, string | { link: string }>;

const EXISTING: Spec = { 'a.txt': 'old a', 'd/b.txt': 'old b', 'keep.txt': 'keep', link1: { link: 'a.txt' } };
export const INCOMING: Spec = {
  'a.txt': 'new a',
  'd/b.txt': 'new b',
  'd/c.txt': 'new c',
  'e/f.txt': 'new f',
  link1: { link: 'd/c.txt' },
  'n/m/o.txt': 'new o',
};
/** journal, aside+place a.txt, aside+place d/b.txt, place d/c.txt, place e, aside+place link1, place n, commit. */
export const STEPS = 11;

export function writeSpec(root: string, spec: Spec) {
  for (const [p, v] of Object.entries(spec)) {
    const abs = join(root, p);
    mkdirSync(dirname(abs), { recursive: true });
    if (typeof v === 'string') writeFileSync(abs, v);
    else symlinkSync(v.link, abs);
  }
}

let n = 0;
/** A destination inside its own box under `work`, holding EXISTING; `before` is its snapshot, `boxBefore` the box's listing. */
export function box(work: string) {
  const dir = join(work, `box-${n++}`);
  const dest = join(dir, 'dest');
  mkdirSync(dest, { recursive: true });
  writeSpec(dest, EXISTING);
  return { dir, dest, before: snapshotTree(dest), boxBefore: listing(dir) };
}

export function assertNew(dest: string) {
  assert.equal(readFileSync(join(dest, 'a.txt'), 'utf8'), 'new a');
  assert.equal(readFileSync(join(dest, 'd/b.txt'), 'utf8'), 'new b');
  assert.equal(readFileSync(join(dest, 'n/m/o.txt'), 'utf8'), 'new o');
  assert.equal(readFileSync(join(dest, 'keep.txt'), 'utf8'), 'keep');
  assert.equal(readlinkSync(join(dest, 'link1')), 'd/c.txt');
}
