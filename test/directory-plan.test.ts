// The compact forms of the central directory (Directory: typed arrays and one Buffer of names) and of the plan (Plan:
// no object or path string per entry): names decode as the parsers always decoded them, records read back as given,
// and the plan's checks (names, duplicates, entries below files or symlinks) report the same entry as before.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  Directory,
  type LeanRecord,
  readDirectoryFromFile,
  readDirectoryFromTail,
  reusedSliceReader,
} from '../src/archive/central-directory.ts';
import { planEntries } from '../src/archive/plan.ts';
import { pythonZip } from './helpers/archives.ts';

const work = mkdtempSync(join(tmpdir(), 'directory-plan-'));
after(() => rmSync(work, { recursive: true, force: true }));

const FILE = (0o100644 << 16) >>> 0;
const LINK = (0o120777 << 16) >>> 0;
const DIR = ((0o040755 << 16) | 0x10) >>> 0;
let records = 0;
const rec = (path: string, externalFileAttributes = FILE, over: Partial<LeanRecord> = {}): LeanRecord => ({
  path,
  versionMadeBy: 0x0314,
  flags: 0,
  compressionMethod: 8,
  lastModifiedTime: 0x6000,
  lastModifiedDate: 0x5a21,
  crc32: 0xdeadbeef,
  compressedSize: 10,
  uncompressedSize: 20,
  externalFileAttributes,
  offsetToLocalFileHeader: 100 * records++,
  ...over,
});
const plan = (...records: LeanRecord[]) => planEntries(Directory.fromRecords(records));

describe('Directory', () => {
  test('records read back as given: names with non-ASCII, non-BMP and replacement characters, zip64 sizes', () => {
    const records = [
      rec('plain.txt'),
      rec('café/ü.txt', FILE, { flags: 0x800 }),
      rec('emoji-😀.txt'),
      rec('bad-\ufffd.bin'),
      rec('big.bin', FILE, { compressedSize: 2 ** 33 + 1, uncompressedSize: 2 ** 40 + 3, offsetToLocalFileHeader: 2 ** 35 }),
    ];
    const dir = Directory.fromRecords(records);
    assert.equal(dir.length, records.length);
    records.forEach((r, i) => {
      assert.deepEqual(dir.record(i), r);
      assert.equal(dir.path(i), r.path);
    });
  });

  test('names decode as UTF-8 whatever the UTF-8 flag says (as both parsers did): a CP437 byte becomes U+FFFD', () => {
    const zip = join(work, 'names.zip');
    pythonZip(zip, [
      { name: 'café.txt', data: 'a' },
      { name: 'xA.txt', data: 'b' },
    ]);
    // 0x82 is CP437 'é'; Python wrote the name without the UTF-8 flag (it is ASCII).
    execFileSync('python3', [
      '-c',
      "import sys; p = sys.argv[1]; b = open(p, 'rb').read().replace(b'xA.txt', b'x\\x82.txt'); open(p, 'wb').write(b)",
      zip,
    ]);
    return readDirectoryFromFile(zip).then((dir) => {
      assert.deepEqual([dir.path(0), dir.path(1)], ['café.txt', 'x\ufffd.txt']);
      assert.equal(dir.flags[0]! & 0x800, 0x800);
      assert.equal(dir.flags[1]! & 0x800, 0);
      assert.equal(dir.record(1).path, 'x\ufffd.txt');
    });
  });

  test('bytes held per record: the fixed fields (36 bytes under 4 GiB) and the name, nothing per record on the JS heap', () => {
    const n = 10_000;
    const records = Array.from({ length: n }, (_, i) => rec(`src/mod${i % 25}/pkg${i % 20}/f${String(i).padStart(6, '0')}.txt`));
    const nameBytes = records.reduce((s, r) => s + Buffer.byteLength(r.path), 0);
    const dir = Directory.fromRecords(records);
    assert.equal(dir.bytesHeld(), n * 36 + nameBytes);
  });

  test('a size or offset past 2^32 (or not a whole number) widens its column to doubles: every value stays exact', () => {
    const big = 2 ** 32 + 5;
    const records = [
      rec('a', FILE, { compressedSize: 7, offsetToLocalFileHeader: 0xffffffff }),
      rec('b', FILE, { compressedSize: big, uncompressedSize: 2 ** 53 - 1 }),
      rec('c', FILE, { offsetToLocalFileHeader: -1, uncompressedSize: 1.5 }),
    ];
    const dir = Directory.fromRecords(records);
    assert.deepEqual(
      [0, 1, 2].map((i) => [dir.compressedSize[i], dir.uncompressedSize[i], dir.offsetToLocalFileHeader[i]]),
      records.map((r) => [r.compressedSize, r.uncompressedSize, r.offsetToLocalFileHeader]),
    );
    assert.ok(dir.compressedSize instanceof Float64Array && dir.uncompressedSize instanceof Float64Array);
    assert.ok(dir.offsetToLocalFileHeader instanceof Float64Array);
    const small = Directory.fromRecords([rec('a', FILE, { compressedSize: 0xffffffff, offsetToLocalFileHeader: 0xffffffff })]);
    assert.ok(small.compressedSize instanceof Uint32Array && small.offsetToLocalFileHeader instanceof Uint32Array);
    assert.equal(small.compressedSize[0], 0xffffffff);
  });

  test('from a file: every slice is read into one reused buffer, and records that straddle slices read back exactly', async () => {
    const zip = join(work, 'slices.zip');
    const names = Array.from(
      { length: 40_000 },
      (_, i) => `pkg${i % 13}/a-name-long-enough-to-fill-slices-${String(i).padStart(6, '0')}.txt`,
    );
    pythonZip(
      zip,
      names.map((name, i) => ({ name, data: `${i}` })),
    );
    const listed = execFileSync('python3', ['-c', 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))', zip], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const fh = await open(zip, 'r');
    try {
      const { size } = await fh.stat();
      const readAt = reusedSliceReader(fh, size);
      const first = await readAt(0, 1024 * 1024);
      const second = await readAt(1024 * 1024, 4);
      assert.equal(first.buffer, second.buffer, 'one buffer for both reads');
      assert.deepEqual(second, readFileSync(zip).subarray(1024 * 1024, 1024 * 1024 + 4));
      assert.equal((await readAt(size - 10, 100)).length, 10, 'short at the end of the file');
    } finally {
      await fh.close();
    }
    const dir = await readDirectoryFromFile(zip);
    assert.ok(names.length * 46 + names.join('').length > 3 * 1024 * 1024, 'the directory spans more than three 1 MiB slices');
    assert.deepEqual(
      Array.from({ length: dir.length }, (_, i) => dir.path(i)),
      listed.trimEnd().split('\n'),
    );
    assert.equal(dir.length, names.length);
  });

  test('from a tail: the gaps fetched before it are freed once parsed (detached), the tail is left whole', async () => {
    const zip = join(work, 'gap.zip');
    pythonZip(
      zip,
      Array.from({ length: 3000 }, (_, i) => ({ name: `dir${i % 7}/a-longer-file-name-${String(i).padStart(5, '0')}.txt`, data: `${i}` })),
    );
    const data = readFileSync(zip);
    const tail = Buffer.from(data.subarray(data.length - 4096));
    const gaps: Buffer[] = [];
    const dir = await readDirectoryFromTail(tail, data.length, async (s, e) => {
      const gap = Buffer.from(data.subarray(s, e)); // its own ArrayBuffer, as a ranged body is
      gaps.push(gap);
      return gap;
    });
    assert.equal(dir?.length, 3000);
    assert.equal(dir.path(2999), 'dir3/a-longer-file-name-02999.txt');
    assert.equal(gaps.length, 1);
    assert.ok(data.length - 4096 - (dir.offsetToLocalFileHeader[2999]! + 100) > 64 * 1024, 'the gap is large');
    assert.equal(gaps[0]!.length, 0, 'the gap is detached');
    assert.deepEqual(tail, data.subarray(data.length - 4096));
  });
});

describe('Plan', () => {
  test('paths, types and modes; a directory entry loses its trailing slash; the record keeps its name', () => {
    const p = plan(rec('d/', DIR), rec('d/f.txt'), rec('d/l', LINK), rec('./x.txt'));
    assert.deepEqual(
      Array.from({ length: p.length }, (_, i) => [p.path(i), p.type(i), p.modes[i]]),
      [
        ['d', 'directory', 0o755],
        ['d/f.txt', 'file', 0o644],
        ['d/l', 'symlink', 0o777],
        ['x.txt', 'file', 0o644],
      ],
    );
    assert.equal(p.entry(0).record.path, 'd/');
    assert.equal(p.entry(3).record.path, './x.txt');
    assert.equal(p.entry(1).record.path, 'd/f.txt');
    assert.deepEqual(Array.from(p.indices('file')), [1, 3]);
  });

  test('the first duplicate in archive order is reported, before a later invalid name; an earlier invalid name first', () => {
    assert.throws(() => plan(rec('a'), rec('b'), rec('b'), rec('a'), rec('../x')), /^ArchiveError: duplicate entry in archive: "b"$/);
    assert.throws(() => plan(rec('a'), rec('b'), rec('a'), rec('b')), /duplicate entry in archive: "a"$/);
    assert.throws(() => plan(rec('a'), rec('../x'), rec('a')), /unsafe path/);
    assert.throws(() => plan(rec('d/', DIR), rec('d')), /duplicate entry in archive: "d"$/);
  });

  test('an entry below a file or a symlink: the deepest such parent of the first such entry is named', () => {
    assert.throws(() => plan(rec('f'), rec('f/g')), /path is both a file and a directory \(f\)/);
    assert.throws(() => plan(rec('l', LINK), rec('ok/x'), rec('l/x')), /entry inside a symlink \(l is a symlink\)/);
    assert.throws(() => plan(rec('a/b/c'), rec('a', LINK), rec('a/b/c/d')), /entry inside a symlink \(a is a symlink\): "a\/b\/c"$/);
    assert.throws(() => plan(rec('a/b/c/d'), rec('a/b', LINK), rec('a/b/c')), /both a file and a directory \(a\/b\/c\): "a\/b\/c\/d"$/);
    assert.doesNotThrow(() => plan(rec('a/', DIR), rec('a/b/', DIR), rec('a/b/c'), rec('a/bc'), rec('a.b')));
  });
});
