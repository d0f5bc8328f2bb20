// Issue 11 items 7-9: max_files counts every entry and the directory's record count is capped before records are
// held; overlapping entries (the "better zip bomb") and archive-wide inflation refused; an end record whose count
// disagrees with the directory never leads to a silent partial unpack; a zip64 extra lacking a required field is
// damage. Archives from Python's zipfile and Info-ZIP, patched by hand where the class needs it.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readDirectoryFromFile, readDirectoryFromTail } from '../src/archive/central-directory.ts';
import { type ExtractOptions, extractArchive, listArchive } from '../src/archive/extract.ts';
import { ArchiveError } from '../src/runtime/errors.ts';
import { infoZip, pythonScriptZip, pythonZip } from './helpers/archives.ts';
import { snapshotTree } from './helpers/tree.ts';

const OPTS: ExtractOptions = { maxBytes: 1024 ** 3, maxFiles: 1_000_000, maxRatio: 500 };
let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'archive-bounds-'));
});
after(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => {
  const d = join(work, `${name}-${n++}`);
  mkdirSync(d);
  return d;
};
const py = (code: string, ...args: string[]) => execFileSync('python3', ['-c', code, ...args], { maxBuffer: 1 << 26 }).toString();

/** Python helpers: patch the end record, append directory records, build local entries by hand. */
const PY_LIB = `
import struct, sys, zipfile, zlib
def parts(path):
    b = open(path, 'rb').read()
    e = b.rfind(b'PK\\x05\\x06')
    start = struct.unpack('<I', b[e+16:e+20])[0]
    return b, start, e
def write(path, body, cd, count16=None, comment=b''):
    n = 0; i = 0
    while i < len(cd):
        l = struct.unpack('<HHH', cd[i+28:i+34]); i += 46 + sum(l); n += 1
    c = n & 0xffff if count16 is None else count16
    open(path, 'wb').write(body + cd + struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, c, c, len(cd), len(body), len(comment)) + comment)
`;

async function rejects(p: Promise<unknown>, re: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ArchiveError, `expected ArchiveError, got ${String(err)}`);
    assert.match(err.message, re);
    return true;
  });
}

describe('item 7: max_files counts every entry; records capped before they are held', () => {
  test('directories count: 3 folders + 2 files is 5 entries', async () => {
    const zip = pythonZip(join(fresh('z'), 'dirs.zip'), [
      { name: 'a/', type: 'dir' },
      { name: 'a/b/', type: 'dir' },
      { name: 'c/', type: 'dir' },
      { name: 'a/b/f.txt', data: 'f' },
      { name: 'g.txt', data: 'g' },
    ]);
    const dest = fresh('d');
    await rejects(extractArchive(zip, dest, { ...OPTS, maxFiles: 4 }), /more than max_files \(4\)/);
    assert.deepEqual(readdirSync(dest), []);
    const r = await extractArchive(zip, fresh('d'), { ...OPTS, maxFiles: 5 });
    assert.equal(r.files + r.directories + r.symlinks, 5);
  });

  test('Info-ZIP archive of folders only: each folder counts', async () => {
    const zip = infoZip(join(fresh('z'), 'folders.zip'), (root) => {
      for (let i = 0; i < 6; i++) mkdirSync(join(root, `d${i}`));
    });
    await rejects(extractArchive(zip, fresh('d'), { ...OPTS, maxFiles: 5 }), /max_files/);
  });

  test('the record count is capped while scanning, before any record is parsed (junk after the cap is never reached)', async () => {
    const dir = fresh('z');
    const zip = join(dir, 'many.zip');
    pythonZip(
      zip,
      Array.from({ length: 30 }, (_, i) => ({ name: `f${i}.txt`, data: `${i}` })),
    );
    // Damage record 20: with a cap of 10 the refusal names the cap, not the damage.
    py(
      `${PY_LIB}
b, start, e = parts(sys.argv[1]); cd = bytearray(b[start:e]); i = 0
for k in range(20):
    l = struct.unpack('<HHH', cd[i+28:i+34]); i += 46 + sum(l)
cd[i:i+4] = b'XXXX'
write(sys.argv[1], b[:start], bytes(cd))`,
      zip,
    );
    await rejects(readDirectoryFromFile(zip, { maxRecords: 10 }), /more than 10 entries/);
    await rejects(readDirectoryFromFile(zip), /damaged zip archive/);
    const data = readFileSync(zip);
    await rejects(
      readDirectoryFromTail(data, data.length, async (s, e) => data.subarray(s, e), { maxRecords: 10 }) as Promise<unknown>,
      /more than 10 entries/,
    );
    // Through extraction without filters, max_files is that cap.
    await rejects(extractArchive(zip, fresh('d'), { ...OPTS, maxFiles: 10 }), /more than max_files \(10\)/);
  });
});

/** `copies` more directory records named like the first one but pointing at its local header (Fifield's full overlap). */
function sameOffsetBomb(file: string, copies: number, size = 100_000) {
  py(
    `${PY_LIB}
zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED).writestr('kernel', b'\\0' * int(sys.argv[3]))
b, start, e = parts(sys.argv[1]); rec = b[start:e]; nl = struct.unpack('<H', rec[28:30])[0]
recs = [rec] + [rec[:46] + ('f%05d' % k).encode()[:nl].ljust(nl, b'x') + rec[46+nl:] for k in range(int(sys.argv[2]))]
write(sys.argv[1], b[:start], b''.join(recs))`,
    file,
    String(copies),
    String(size),
  );
  return file;
}

/** A stored entry whose data quotes a whole second local entry, and a directory record for that one too. */
function quotedOverlap(file: string) {
  py(
    `${PY_LIB}
def local(name, data):
    return struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data), len(name), 0) + name + data
def central(name, data, off):
    return struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 0x314, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data), len(name), 0, 0, 0, 0, 0o100644 << 16, off) + name
inner = local(b'b.txt', b'hello from inside a.bin\\n')
outer = local(b'a.bin', inner)
cd = central(b'a.bin', inner, 0) + central(b'b.txt', b'hello from inside a.bin\\n', 30 + 5)
write(sys.argv[1], outer, cd)`,
    file,
  );
  return file;
}

describe('item 8: overlapping entries and inflation across the archive', () => {
  test('20 directory records sharing one local entry are refused (as Info-ZIP refuses them)', async () => {
    const zip = sameOffsetBomb(join(fresh('z'), 'same.zip'), 20);
    const unzip = spawnSync('unzip', ['-t', zip]);
    assert.match(`${unzip.stdout}${unzip.stderr}`, /overlapped components/);
    const dest = fresh('d');
    await rejects(extractArchive(zip, dest, OPTS), /overlapping entries/);
    assert.deepEqual(readdirSync(dest), []);
    await rejects(listArchive(zip), /overlapping entries/);
  });

  test('an entry whose data holds another entry (quoted overlap) is refused', async () => {
    const zip = quotedOverlap(join(fresh('z'), 'quoted.zip'));
    const dest = fresh('d');
    await rejects(extractArchive(zip, dest, OPTS), /overlapping entries/);
    assert.deepEqual(readdirSync(dest), []);
    const data = readFileSync(zip);
    await rejects(readDirectoryFromTail(data, data.length, async (s, e) => data.subarray(s, e)) as Promise<unknown>, /overlapping entries/);
  });

  test('inflation is counted across the archive: 12 entries of 9 MiB of zeros (each under the per-entry threshold)', async () => {
    const zip = join(fresh('z'), 'spread.zip');
    py(
      `import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n  for i in range(12): z.writestr('zeros%d.bin' % i, bytes(9 * 1024 * 1024))`,
      zip,
    );
    const dest = fresh('d');
    await rejects(extractArchive(zip, dest, OPTS), /max_ratio \(500\) across the archive/);
    assert.deepEqual(readdirSync(dest), []);
  });

  test('a normal archive with many small entries is not an overlap', async () => {
    const zip = pythonZip(
      join(fresh('z'), 'fine.zip'),
      Array.from({ length: 50 }, (_, i) => ({ name: `f${i}`, data: i % 2 ? '' : 'x'.repeat(i) })),
      { method: 'store' },
    );
    const r = await extractArchive(zip, fresh('d'), OPTS);
    assert.equal(r.files, 50);
  });
});

describe('item 9: the end record disagrees with the directory', () => {
  test('a count that is simply wrong (2 for 3 records): every record is read, as Python and Info-ZIP do', async () => {
    const zip = join(fresh('z'), 'count.zip');
    pythonZip(zip, [
      { name: 'a.txt', data: 'a' },
      { name: 'b.txt', data: 'b' },
      { name: 'c.txt', data: 'c' },
    ]);
    py(`${PY_LIB}\nb, start, e = parts(sys.argv[1])\nwrite(sys.argv[1], b[:start], b[start:e], count16=2)`, zip);
    assert.equal(py(`import zipfile, sys\nprint(len(zipfile.ZipFile(sys.argv[1]).namelist()))`, zip).trim(), '3');
    const ours = fresh('ours');
    await extractArchive(zip, ours, OPTS);
    const theirs = fresh('unzip');
    spawnSync('unzip', ['-q', '-o', zip, '-d', theirs]);
    assert.deepEqual(snapshotTree(ours), snapshotTree(theirs));
    assert.equal(snapshotTree(ours).length, 3);
    const data = readFileSync(zip);
    assert.equal((await readDirectoryFromTail(data, data.length, async (s, e) => data.subarray(s, e)))?.length, 3);
  });

  test('65,537 entries without zip64: the 16-bit count wrapped to 1, all 65,537 are listed', async () => {
    // Built once and cached (about 2 s of Python); the script checks that Python's zipfile still lists all 65,537.
    const zip = pythonScriptZip(
      join(fresh('z'), 'wrapped.zip'),
      `${PY_LIB}
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    for i in range(65537): z.writestr('f%05d' % i, b'')
b, start, e = parts(sys.argv[1])
z64 = b.rfind(b'PK\\x06\\x06', 0, e)
write(sys.argv[1], b[:start], b[start:z64])
assert len(zipfile.ZipFile(sys.argv[1]).namelist()) == 65537`,
    );
    const raw = readFileSync(zip);
    assert.equal(raw.readUInt16LE(raw.length - 22 + 10), 1, 'the end record says 1');
    assert.equal(raw.indexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06])), -1, 'no zip64 end record');
    assert.equal((await listArchive(zip)).length, 65_537);
  });

  test('bytes after the last record that are not a record: refused', async () => {
    const zip = join(fresh('z'), 'junk.zip');
    pythonZip(zip, [{ name: 'a.txt', data: 'a' }]);
    py(`${PY_LIB}\nb, start, e = parts(sys.argv[1])\nwrite(sys.argv[1], b[:start], b[start:e] + b'JUNKJUNK' * 8)`, zip);
    await rejects(extractArchive(zip, fresh('d'), OPTS), /damaged zip archive/);
  });

  for (const [label, extra] of [
    ['an empty zip64 extra field', 'struct.pack("<HH", 1, 0)'],
    ['a zip64 extra field holding only 4 of the 8 offset bytes', 'struct.pack("<HHI", 1, 4, 0)'],
    [
      'a zip64 extra field too short, followed by another field',
      'struct.pack("<HH", 1, 0) + struct.pack("<HHBI", 0x5455, 5, 1, 0) + bytes(8)',
    ],
    ['no zip64 extra field at all', 'b""'],
  ]) {
    test(`a directory record whose offset says "in the zip64 extra" with ${label}: refused as damaged`, async () => {
      const zip = join(fresh('z'), 'z64.zip');
      pythonZip(zip, [{ name: 'a.txt', data: 'aaaa' }], { method: 'store' });
      py(
        `${PY_LIB}
b, start, e = parts(sys.argv[1]); rec = bytearray(b[start:e])
nl = struct.unpack('<H', rec[28:30])[0]
extra = ${extra}
rec = rec[:46 + nl] + extra
struct.pack_into('<H', rec, 30, len(extra)); struct.pack_into('<I', rec, 42, 0xffffffff)
write(sys.argv[1], b[:start], bytes(rec))`,
        zip,
      );
      const dest = fresh('d');
      await rejects(extractArchive(zip, dest, OPTS), /damaged zip archive \(zip64 extra field/);
      assert.deepEqual(readdirSync(dest), []);
    });
  }
});
