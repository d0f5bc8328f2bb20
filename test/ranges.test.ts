// Partial-fetch planning (pure functions): where the selected entries lie, coalescing across small gaps, and when a partial fetch pays.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Directory, type LeanRecord } from '../src/archive/central-directory.ts';
import { coalesce, entrySpans, normalize, planPartial, spanBytes } from '../src/archive/ranges.ts';

const rec = (path: string, offset: number, compressedSize: number): LeanRecord => ({
  path,
  versionMadeBy: 0x0314,
  flags: 0,
  compressionMethod: 8,
  lastModifiedTime: 0,
  lastModifiedDate: 0,
  crc32: 0,
  compressedSize,
  uncompressedSize: compressedSize,
  externalFileAttributes: 0,
  offsetToLocalFileHeader: offset,
});

describe('range planning', () => {
  test('entrySpans: each entry from its local header to the next entry (or the directory), in any record order', () => {
    const all = Directory.fromRecords([rec('c', 300, 50), rec('a', 0, 100), rec('b', 140, 120)]);
    assert.deepEqual(entrySpans(all, [1, 2, 0], 400), [
      { start: 0, end: 140 },
      { start: 140, end: 300 },
      { start: 300, end: 400 },
    ]);
  });

  test('entrySpans: capped at the most an entry can occupy when something else lies between entries', () => {
    const all = Directory.fromRecords([rec('a', 0, 10), rec('b', 1_000_000, 10)]);
    assert.deepEqual(entrySpans(all, [0], 2_000_000), [{ start: 0, end: 30 + 0xffff + 0xffff + 24 + 10 }]);
  });

  test('normalize merges overlapping and touching spans and sorts them', () => {
    assert.deepEqual(
      normalize([
        { start: 50, end: 60 },
        { start: 0, end: 10 },
        { start: 10, end: 20 },
        { start: 55, end: 70 },
        { start: 80, end: 80 },
      ]),
      [
        { start: 0, end: 20 },
        { start: 50, end: 70 },
      ],
    );
  });

  test('coalesce bridges the smallest gaps first, within the slack', () => {
    const spans = [
      { start: 0, end: 100 },
      { start: 110, end: 200 }, // gap 10
      { start: 300, end: 400 }, // gap 100
      { start: 405, end: 500 }, // gap 5
    ];
    assert.deepEqual(coalesce(spans, 0), spans);
    assert.deepEqual(coalesce(spans, 15), [
      { start: 0, end: 200 },
      { start: 300, end: 500 },
    ]);
    assert.deepEqual(coalesce(spans, 14), [
      { start: 0, end: 100 },
      { start: 110, end: 200 },
      { start: 300, end: 500 },
    ]);
    assert.deepEqual(coalesce(spans, 1000), [{ start: 0, end: 500 }]);
  });

  test('spanBytes adds up the spans', () => {
    assert.equal(
      spanBytes([
        { start: 0, end: 10 },
        { start: 20, end: 25 },
      ]),
      15,
    );
  });
});

describe('when a partial fetch is used (planPartial)', () => {
  const MiB = 1024 * 1024;
  // Ten entries of 4 MiB and a directory of 1 KiB: a 40 MiB archive.
  const records = Array.from({ length: 10 }, (_, i) => rec(`d${i}/f.bin`, i * 4 * MiB, 4 * MiB - 64));
  const directory = Directory.fromRecords(records);
  const base = { directoryStart: 40 * MiB, total: 40 * MiB + 1024 };

  test('include leaving at most half of the bytes: only those entries, neighbours coalesced', () => {
    const plan = planPartial(directory, { ...base, include: ['d1/**', 'd2/**', 'd7/**'], exclude: [] });
    assert.equal(plan?.entries, 3);
    assert.deepEqual(plan?.ranges, [
      { start: 4 * MiB, end: 12 * MiB },
      { start: 28 * MiB, end: 32 * MiB },
    ]);
    assert.equal(plan?.bytes, 12 * MiB);
  });

  test('a gap within 2% of the selected bytes (at least 64 KiB) is bridged; a larger one is not', () => {
    const small = Directory.fromRecords([
      rec('a', 0, 1000),
      rec('gap', 1100, 60 * 1024),
      rec('b', 1100 + 60 * 1024 + 100, 1000),
      rec('rest', 10 * MiB, MiB),
    ]);
    const total = 12 * MiB;
    const bridged = planPartial(small, { include: ['a', 'b'], exclude: [], directoryStart: 11 * MiB, total });
    assert.deepEqual(bridged?.ranges, [{ start: 0, end: 1100 + 60 * 1024 + 100 + 30 + 0xffff + 0xffff + 24 + 1000 }]);
    const wide = Directory.fromRecords([
      rec('a', 0, 1000),
      rec('gap', 1100, 200 * 1024),
      rec('b', 1100 + 200 * 1024, 1000),
      rec('rest', 10 * MiB, MiB),
    ]);
    const apart = planPartial(wide, { include: ['a', 'b'], exclude: [], directoryStart: 11 * MiB, total });
    assert.equal(apart?.ranges.length, 2);
  });

  test('every symlink is fetched (its target is checked), selected or not', () => {
    const link = { ...rec('link', 36 * MiB, 4 * MiB - 64), externalFileAttributes: (0o120777 << 16) >>> 0 };
    const withLink = Directory.fromRecords([...records.slice(0, 9), link]);
    const plan = planPartial(withLink, { ...base, include: ['d1/**'], exclude: [] });
    assert.equal(plan?.entries, 2);
    assert.deepEqual(plan?.ranges, [
      { start: 4 * MiB, end: 8 * MiB },
      { start: 36 * MiB, end: 40 * MiB },
    ]);
  });

  test('a selection of more than half, or no selection at all: no partial fetch (the whole archive)', () => {
    assert.equal(planPartial(directory, { ...base, include: [], exclude: ['d0/**'] }), undefined);
    assert.equal(planPartial(directory, { ...base, include: [], exclude: [] }), undefined);
    const some = (n: number) => Array.from({ length: n }, (_, i) => `d${i}/**`);
    assert.ok(planPartial(directory, { ...base, include: some(5), exclude: [] }), 'five of ten entries: 20 MiB of 40 MiB');
    assert.equal(planPartial(directory, { ...base, include: some(6), exclude: [] }), undefined);
  });

  test('an invalid entry path: no plan (the whole-archive path rejects it with the right message)', () => {
    const bad = Directory.fromRecords([...records, rec('../escape', 40 * MiB - 100, 10)]);
    assert.equal(planPartial(bad, { ...base, include: ['d1/**'], exclude: [] }), undefined);
  });
});
