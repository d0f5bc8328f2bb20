import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extractArchive, listArchive, type ExtractOptions } from '../src/archive/extract.ts';
import { compileGlobs, selectEntry } from '../src/archive/glob.ts';
import { entryMode, entryType } from '../src/archive/modes.ts';
import { validateEntryPath } from '../src/archive/validate.ts';
import { ArchiveError } from '../src/runtime/errors.ts';
import { buildTree, goZip, hostile, infoZip, pythonZip, type SpecEntry, unzipSnapshot } from './helpers/archives.ts';
import { type Extract, PATHS } from './helpers/extract-paths.ts';
import { listing, snapshotTree } from './helpers/tree.ts';

const OPTS: ExtractOptions = { maxBytes: 1024 ** 3, maxFiles: 1_000_000, maxRatio: 100 };
let work: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'extract-test-'));
});
after(() => {
  execFileSync('chmod', ['-R', 'u+rwx', work]);
  rmSync(work, { recursive: true, force: true });
});

let n = 0;
function fresh(name: string): string {
  const d = join(work, `${name}-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Extracts with our code and with Info-ZIP unzip, and compares the trees. */
async function assertLikeUnzip(zip: string, opts: Partial<ExtractOptions> = {}, extract: Extract = extractArchive) {
  const ours = fresh('ours');
  const result = await extract(zip, ours, { ...OPTS, ...opts });
  assert.deepEqual(snapshotTree(ours), unzipSnapshot(zip, work));
  return { result, ours };
}

const MIXED: SpecEntry[] = [
  { name: 'bin/', type: 'dir', mode: 0o755 },
  { name: 'bin/run.sh', data: '#!/bin/sh\necho hi\n', mode: 0o755 },
  { name: 'secret.key', data: 'k'.repeat(1000), mode: 0o600 },
  { name: 'readonly.txt', data: 'r\n', mode: 0o444 },
  { name: 'private/', type: 'dir', mode: 0o700 },
  { name: 'private/notes.txt', data: 'n\n' },
  { name: 'locked/', type: 'dir', mode: 0o555 },
  { name: 'locked/inside.txt', data: 'written before the folder is locked\n' },
  { name: 'deep/a/b/c/file.bin', data: Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919) % 251)) },
  { name: 'big-text.txt', data: 'lorem ipsum dolor sit amet\n'.repeat(20_000) },
  { name: 'empty.txt', data: '' },
  { name: 'ünïcode ✓.txt', data: 'utf-8 name\n' },
  { name: 'link-to-run', type: 'symlink', target: 'bin/run.sh' },
  { name: 'deep/a/up', type: 'symlink', target: '../../big-text.txt' },
  { name: 'dirlink', type: 'symlink', target: 'deep/a' },
];

describe('validateEntryPath', () => {
  test('accepts and normalises', () => {
    assert.equal(validateEntryPath('a/b.txt'), 'a/b.txt');
    assert.equal(validateEntryPath('dir/'), 'dir');
    assert.equal(validateEntryPath('./a/./b'), 'a/b');
    assert.equal(validateEntryPath('a..b/c..'), 'a..b/c..');
  });
  for (const bad of ['/etc/passwd', 'C:/x', 'c:x', 'a/../b', '..', '../x', 'a\\b', 'a\\..\\b', 'a\0b', 'a//b', './', '.', '', 'a/b//']) {
    test(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => validateEntryPath(bad), ArchiveError));
  }
});

describe('globs', () => {
  test('patterns', () => {
    const m = compileGlobs(['src/*.js', 'docs', 'lib/', 'assets/**', '**/*.map', 'img/?.{png,jpg}']);
    assert.ok(m('src/a.js'));
    assert.ok(!m('src/sub/a.js'));
    assert.ok(m('docs/x/y.md'));
    assert.ok(m('docs'));
    assert.ok(!m('docsx/a'));
    assert.ok(m('lib/a/b'));
    assert.ok(m('assets/a/b/c'));
    assert.ok(m('a.map') && m('x/y/z.map'));
    assert.ok(m('img/a.png') && m('img/b.jpg') && !m('img/ab.png') && !m('img/a.gif'));
    assert.ok(!compileGlobs([])('anything'));
    assert.ok(compileGlobs(['**'])('a/b'));
  });
  test('selectEntry', () => {
    assert.ok(selectEntry('a/b', [], []));
    assert.ok(selectEntry('src/a.js', ['src'], ['**/*.ts']));
    assert.ok(!selectEntry('src/a.ts', ['src'], ['**/*.ts']));
    assert.ok(!selectEntry('other/a.js', ['src'], []));
  });
});

describe('modes', () => {
  test('unix, DOS and symlink entries', () => {
    const umask = process.umask();
    assert.equal(entryMode({ path: 'a', versionMadeBy: 0x31e, externalFileAttributes: (0o104755 << 16) >>> 0 }), 0o755);
    assert.equal(entryType({ path: 'a', versionMadeBy: 0x31e, externalFileAttributes: (0o120777 << 16) >>> 0 }), 'symlink');
    assert.equal(entryType({ path: 'a', versionMadeBy: 0x31e, externalFileAttributes: (0o040700 << 16) >>> 0 }), 'directory');
    assert.equal(entryType({ path: 'a', versionMadeBy: 0x14, externalFileAttributes: 0x10 }), 'directory');
    assert.equal(entryType({ path: 'a/', versionMadeBy: 0x14, externalFileAttributes: 0 }), 'directory');
    assert.equal(entryMode({ path: 'a', versionMadeBy: 0x14, externalFileAttributes: 0x20 }), 0o644 & ~umask);
    assert.equal(entryMode({ path: 'a/', versionMadeBy: 0x14, externalFileAttributes: 0x10 }), 0o755 & ~umask);
    // A DOS-made entry with S_IFLNK-looking high bits is not a symlink.
    assert.equal(entryType({ path: 'a', versionMadeBy: 0x14, externalFileAttributes: (0o120777 << 16) >>> 0 }), 'file');
    assert.equal(entryMode({ path: 'a', versionMadeBy: 0x314, externalFileAttributes: (0o600 << 16) >>> 0 }), 0o600);
  });
});

for (const [label, extract] of PATHS) {
  describe(`good archives extract like Info-ZIP unzip, ${label}`, () => {
    test('python zipfile, deflated', async () => {
      const { result } = await assertLikeUnzip(pythonZip(join(fresh('z'), 'py.zip'), MIXED), {}, extract);
      assert.equal(result.symlinks, 3);
      assert.equal(result.directories, 3);
      assert.equal(result.files, MIXED.length - 6);
    });
    test('python zipfile, stored, concurrency 1', async () => {
      await assertLikeUnzip(pythonZip(join(fresh('z'), 'py-store.zip'), MIXED, { method: 'store' }), { concurrency: 1 }, extract);
    });
    test('Info-ZIP zip -r -y with modes and symlinks', async () => {
      const zip = infoZip(join(fresh('z'), 'info.zip'), (root) =>
        buildTree(
          root,
          MIXED.map((e) => ({ ...e, name: e.name.replace(/\/$/, '') })),
        ),
      );
      const { ours } = await assertLikeUnzip(zip, {}, extract);
      const snap = snapshotTree(ours);
      const mode = (p: string) => snap.find((e) => e.path === p)?.mode;
      assert.equal(mode('bin/run.sh'), 0o755);
      assert.equal(mode('secret.key'), 0o600);
      assert.equal(mode('readonly.txt'), 0o444);
      assert.equal(mode('private'), 0o700);
      assert.equal(mode('locked'), 0o555);
      assert.equal(snap.find((e) => e.path === 'link-to-run')?.target, 'bin/run.sh');
    });
    test('Go archive/zip (data descriptors), deflated and stored', async () => {
      const dir = fresh('z');
      await assertLikeUnzip(goZip(join(dir, 'go.zip'), { entries: MIXED }), {}, extract);
      await assertLikeUnzip(goZip(join(dir, 'go-store.zip'), { entries: MIXED, method: 'store' }), {}, extract);
    });
  });

  describe(`hostile and damaged archives are rejected as a whole, ${label}`, () => {
    const cases: [keyof typeof hostile, RegExp][] = [
      ['dotdot', /unsafe path.*'\.\.'/],
      ['absolute', /unsafe path.*absolute/],
      ['backslash', /unsafe path.*backslash/],
      ['escapingSymlink', /symlink escapes/],
      ['absoluteSymlink', /symlink escapes/],
      ['chainedSymlink', /symlink escapes/],
      ['throughSymlink', /inside a symlink/],
      ['fileAndDir', /both a file and a directory/],
      ['duplicate', /duplicate entry/],
      ['duplicateNormalised', /duplicate entry/],
      ['ratioBomb', /max_ratio/],
      ['crcDamage', /CRC mismatch/],
      ['truncated', /damaged zip archive/],
      ['html', /not a zip archive \(starts with '<!DOCTYPE html/],
      ['encrypted', /encrypted entries are not supported/],
      ['lyingSize', /size mismatch \(entry inflates to more than its declared size\)/],
    ];
    for (const [name, message] of cases) {
      test(name, async () => {
        const sentinel = fresh(`sentinel-${name}`);
        const zip = hostile[name](join(fresh('z'), `${name}.zip`));
        const dest = join(sentinel, 'staging');
        mkdirSync(dest);
        writeFileSync(join(sentinel, 'marker'), 'x');
        const before = listing(sentinel);
        await assert.rejects(extract(zip, dest, OPTS), (err: unknown) => {
          assert.ok(err instanceof ArchiveError, `expected ArchiveError, got ${String(err)}`);
          assert.match(err.message, message);
          return true;
        });
        assert.deepEqual(listing(sentinel), before);
        assert.ok(!existsSync('/tmp/evil-absolute.txt'));
        assert.ok(!existsSync(join(sentinel, 'evil.txt')) && !existsSync(join(work, 'evil.txt')));
        // Validation failures happen before anything is written.
        if (!['crcDamage', 'lyingSize'].includes(name)) assert.deepEqual(readdirSync(dest), []);
      });
    }
    test('a central directory shorter than the end record says is rejected', async () => {
      const zip = pythonZip(join(fresh('z'), 'count.zip'), [
        { name: 'a.txt', data: 'a' },
        { name: 'b.txt', data: 'b' },
      ]);
      execFileSync('python3', [
        '-c',
        `import struct\nf=${JSON.stringify(zip)}\nb=bytearray(open(f,'rb').read())\ni=b.rfind(b'PK\\x05\\x06')\nstruct.pack_into('<HH',b,i+8,5,5)\nopen(f,'wb').write(b)`,
      ]);
      await assert.rejects(extract(zip, fresh('d'), OPTS), /damaged zip archive/);
    });
    test('listArchive rejects the same names', async () => {
      await assert.rejects(listArchive(hostile.escapingSymlink(join(fresh('z'), 'l.zip'))), /symlink escapes/);
      await assert.rejects(listArchive(hostile.html(join(fresh('z'), 'h.zip'))), /not a zip archive/);
    });
  });

  describe(`small entries written on worker threads, ${label}`, () => {
    // 1,500 small files in 30 folders (text and incompressible bytes, several modes) around MIXED's entries: more
    // than one batch per thread, so batches run on both threads at once.
    const noise = (n: number, seed: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0, x = seed; i < n; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        b[i] = x >>> 24;
      }
      return b;
    };
    // Large entries (64 KiB compressed and more) are streamed on a thread in 1 MiB pieces: one of several pieces,
    // incompressible and compressible.
    const large: SpecEntry[] = [
      { name: 'large/noise.bin', data: noise(2_500_000, 1), mode: 0o755 },
      { name: 'large/log.txt', data: Array.from({ length: 60_000 }, (_, i) => `${i} ${noise(8, i).toString('hex')}\n`).join('') },
      { name: 'large/small-noise.bin', data: noise(70_000, 2) },
    ];
    const smallFiles = (count: number): SpecEntry[] =>
      Array.from({ length: count }, (_, i) => ({
        name: `many/d${i % 30}/f${i}.${i % 2 ? 'bin' : 'txt'}`,
        data:
          i % 2
            ? Buffer.from(Array.from({ length: 1000 + (i % 7) * 500 }, (_, j) => (j * 131 + i * 17) % 256))
            : `line ${i}\n`.repeat(i % 50),
        mode: i % 10 === 0 ? 0o755 : i % 10 === 1 ? 0o600 : 0o644,
      }));
    const many: SpecEntry[] = [...MIXED, ...large, ...smallFiles(1500)];
    // The damage cases force threads (threads: 2), so a few batches' worth of small files is enough.
    const few: SpecEntry[] = [...MIXED, ...large, ...smallFiles(60)];
    /**
     * What extracting `zip` ends in ('extracted' or the error's message), on the main thread, on threads, and on one
     * thread with the main thread writing too (as on a complete archive).
     */
    const bothWays = async (zip: string) => {
      const outcome = (threads: number, mainWrites = false) =>
        extract(zip, fresh('d'), { ...OPTS, threads, mainWrites }).then(
          () => 'extracted',
          (err: Error) => err.message,
        );
      return { inline: await outcome(0), threaded: await outcome(2), shared: await outcome(1, true) };
    };
    test('the tree is byte for byte what Info-ZIP unzip writes, with threads and without', async () => {
      const zip = pythonZip(join(fresh('z'), 'many.zip'), many);
      const { ours, result } = await assertLikeUnzip(zip, { threads: 2 }, extract);
      const inline = fresh('inline');
      await extract(zip, inline, { ...OPTS, threads: 0 });
      assert.deepEqual(snapshotTree(ours), snapshotTree(inline));
      assert.equal(result.files, many.filter((e) => e.type !== 'dir' && e.type !== 'symlink').length);
    });
    test('with the main thread writing beside a thread, both write batches and the tree is the same', async () => {
      const zip = pythonZip(join(fresh('z'), 'shared.zip'), many);
      const { ours, result } = await assertLikeUnzip(zip, { threads: 1, mainWrites: true }, extract);
      // From a complete file every batch can be posted at once: the thread holds two, the main thread takes the
      // next. While the archive is written, batches come as their bytes do, and the thread may keep up with them.
      if (extract === extractArchive) assert.ok(result.batches.main > 0 && result.batches.threads > 0, JSON.stringify(result.batches));
      else assert.ok(result.batches.main + result.batches.threads > 1, JSON.stringify(result.batches));
      const threadedDir = fresh('threaded');
      const threaded = await extract(zip, threadedDir, { ...OPTS, threads: 2 });
      assert.equal(threaded.batches.main, 0);
      assert.deepEqual(snapshotTree(ours), snapshotTree(threadedDir));
    });
    test('a CRC mismatch in a batch on a thread rejects the archive, naming the entry', async () => {
      const zip = pythonZip(join(fresh('z'), 'crc.zip'), few, { method: 'store' });
      execFileSync('python3', [
        '-c',
        `import zipfile,struct\nf=${JSON.stringify(zip)}\nzi=zipfile.ZipFile(f).getinfo('many/d2/f32.txt')\nb=bytearray(open(f,'rb').read())\no=zi.header_offset\nn,e=struct.unpack('<HH',b[o+26:o+30])\nb[o+30+n+e+2]^=0xff\nopen(f,'wb').write(b)`,
      ]);
      const sentinel = fresh('sentinel-crc');
      writeFileSync(join(sentinel, 'marker'), 'x');
      const before = listing(sentinel);
      await assert.rejects(extract(zip, fresh('d'), { ...OPTS, threads: 2 }), (err: unknown) => {
        assert.ok(err instanceof ArchiveError, `expected ArchiveError, got ${String(err)}`);
        assert.match(err.message, /CRC mismatch: "many\/d2\/f32.txt"/);
        return true;
      });
      assert.deepEqual(listing(sentinel), before);
    });
    test('a damaged large entry streamed on a thread is rejected as on the main thread', async () => {
      for (const [method, name, at] of [
        ['store', 'large/noise.bin', 1_500_000],
        ['deflate', 'large/log.txt', 200_000],
        ['deflate', 'large/log.txt', 600],
      ] as const) {
        const zip = pythonZip(join(fresh('z'), `large-${method}-${at}.zip`), few, { method });
        execFileSync('python3', [
          '-c',
          `import zipfile,struct\nf=${JSON.stringify(zip)}\nzi=zipfile.ZipFile(f).getinfo('${name}')\nb=bytearray(open(f,'rb').read())\no=zi.header_offset\nn,e=struct.unpack('<HH',b[o+26:o+30])\nfor k in range(8): b[o+30+n+e+${at}+k]^=0x5a\nopen(f,'wb').write(b)`,
        ]);
        const { inline, threaded, shared } = await bothWays(zip);
        assert.ok(threaded.includes(name), threaded);
        assert.equal(threaded, inline);
        assert.equal(shared, inline);
      }
    });
    for (const name of ['crcDamage', 'lyingSize', 'truncated'] as const) {
      test(`${name} is rejected on a thread as on the main thread`, async () => {
        const zip = hostile[name](join(fresh('z'), `${name}.zip`));
        const { inline, threaded, shared } = await bothWays(zip);
        assert.notEqual(threaded, 'extracted');
        assert.equal(threaded, inline);
        assert.equal(shared, inline);
      });
    }
    test('a write error on a thread rejects the archive with that error', async () => {
      const zip = pythonZip(join(fresh('z'), 'exists.zip'), few);
      const dest = fresh('d');
      mkdirSync(join(dest, 'many/d7'), { recursive: true });
      writeFileSync(join(dest, 'many/d7/f37.bin'), 'in the way');
      await assert.rejects(extract(zip, dest, { ...OPTS, threads: 2 }), (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'EEXIST');
        assert.match(err.message, /f37\.bin/);
        return true;
      });
      assert.equal(readFileSync(join(dest, 'many/d7/f37.bin'), 'utf8'), 'in the way');
    });
  });

  describe(`caps and filters, ${label}`, () => {
    const entries: SpecEntry[] = [
      { name: 'src/a.js', data: 'a'.repeat(1000) },
      { name: 'src/b.ts', data: 'b'.repeat(1000) },
      { name: 'docs/x.md', data: 'x'.repeat(1000) },
      { name: 'node_modules/m/i.js', data: 'i'.repeat(1000) },
      { name: 'bad-but-filtered', type: 'symlink', target: 'src' },
    ];
    test('max_files', async () => {
      const zip = pythonZip(join(fresh('z'), 'c.zip'), entries);
      await assert.rejects(extract(zip, fresh('d'), { ...OPTS, maxFiles: 3 }), /max_files/);
      const r = await extract(zip, fresh('d'), { ...OPTS, maxFiles: 5 });
      assert.equal(r.files + r.symlinks, 5);
    });
    test('max_bytes', async () => {
      const zip = pythonZip(join(fresh('z'), 'c.zip'), entries);
      await assert.rejects(extract(zip, fresh('d'), { ...OPTS, maxBytes: 3999 }), /max_bytes/);
      const r = await extract(zip, fresh('d'), { ...OPTS, maxBytes: 4000 });
      assert.equal(r.bytes, 4000);
    });
    test('max_bytes on a bomb, ratio check off', async () => {
      const zip = hostile.ratioBomb(join(fresh('z'), 'bomb.zip'));
      await assert.rejects(extract(zip, fresh('d'), { ...OPTS, maxRatio: 0, maxBytes: 100 * 1024 * 1024 }), /max_bytes/);
    });
    test('declared sizes are not trusted', async () => {
      const zip = hostile.lyingSize(join(fresh('z'), 'lie.zip'));
      const dest = fresh('d');
      await assert.rejects(extract(zip, dest, { ...OPTS, maxBytes: 50_000 }), ArchiveError);
      const written = snapshotTree(dest).reduce((s, e) => s + (e.size ?? 0), 0);
      assert.ok(written <= 50_000, `wrote ${written} bytes`);
    });
    test('include/exclude: filtered entries are not written and not counted', async () => {
      const zip = pythonZip(join(fresh('z'), 'f.zip'), entries);
      const dest = fresh('d');
      const r = await extract(zip, dest, { ...OPTS, include: ['src/**', 'docs'], exclude: ['**/*.ts'], maxFiles: 2 });
      assert.deepEqual(
        snapshotTree(dest).map((e) => e.path),
        ['docs', 'docs/x.md', 'src', 'src/a.js'],
      );
      assert.equal(r.files, 2);
      assert.deepEqual(
        (await listArchive(zip, { exclude: ['node_modules'] })).map((e) => e.path),
        ['src/a.js', 'src/b.ts', 'docs/x.md', 'bad-but-filtered'],
      );
    });
    test('filtered-out names are still validated', async () => {
      const zip = pythonZip(join(fresh('z'), 'v.zip'), [
        { name: 'ok.txt', data: 'ok' },
        { name: 'x/../../evil', data: 'e' },
      ]);
      await assert.rejects(extract(zip, fresh('d'), { ...OPTS, include: ['ok.txt'] }), /unsafe path/);
    });
    test('a long archive comment and an empty archive are fine', async () => {
      const zip = join(fresh('z'), 'comment.zip');
      execFileSync('python3', [
        '-c',
        `import zipfile\nwith zipfile.ZipFile(${JSON.stringify(zip)}, 'w') as z:\n  z.writestr('a.txt', 'hello')\n  z.comment = b'x' * 300`,
      ]);
      await assertLikeUnzip(zip, {}, extract);
      // A comment holding end-record signatures (Info-ZIP unzip itself gets confused by this one).
      const tricky = join(fresh('z'), 'tricky.zip');
      execFileSync('python3', [
        '-c',
        `import zipfile\nwith zipfile.ZipFile(${JSON.stringify(tricky)}, 'w') as z:\n  z.writestr('a.txt', 'hello')\n  z.comment = b'PK\\x05\\x06' * 100`,
      ]);
      const dest = fresh('d');
      await extract(tricky, dest, OPTS);
      assert.deepEqual(
        snapshotTree(dest).map((e) => [e.path, e.size]),
        [['a.txt', 5]],
      );
      const empty = join(fresh('z'), 'empty.zip');
      execFileSync('python3', ['-c', `import zipfile\nzipfile.ZipFile(${JSON.stringify(empty)}, 'w').close()`]);
      const r = await extract(empty, fresh('d'), OPTS);
      assert.equal(r.files, 0);
    });
    test('unsupported compression method', async () => {
      const zip = join(fresh('z'), 'bz.zip');
      execFileSync('python3', [
        '-c',
        `import zipfile\nwith zipfile.ZipFile(${JSON.stringify(zip)}, 'w', zipfile.ZIP_BZIP2) as z:\n  z.writestr('a.txt', 'hello'*100)`,
      ]);
      await assert.rejects(extract(zip, fresh('d'), OPTS), /unsupported compression method 12/);
    });
  });
}

describe('archives made on DOS/Windows hosts', () => {
  /** Python's zipfile with create_system 0 (MS-DOS/FAT) and backslash-separated names, as old Windows tools write. */
  const dosZip = (file: string, names: string[]) => {
    execFileSync('python3', [
      '-c',
      `import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\nfor n in sys.argv[2:]:\n  zi = zipfile.ZipInfo(n); zi.create_system = 0; z.writestr(zi, 'data of ' + n)\nz.close()`,
      file,
      ...names,
    ]);
    return file;
  };
  for (const [label, extract] of PATHS) {
    test(`backslash separators unpack like Info-ZIP unzip (${label})`, async () => {
      const zip = dosZip(join(fresh('dos'), 'dos.zip'), ['win\\sub\\file.txt', 'win\\top.txt']);
      const ours = fresh('dos-ours');
      const theirs = fresh('dos-unzip');
      await extract(zip, ours, OPTS);
      // unzip converts them too, with a warning and exit status 1.
      assert.equal(spawnSync('unzip', ['-q', '-o', zip, '-d', theirs]).status, 1);
      assert.deepEqual(snapshotTree(ours), snapshotTree(theirs));
      assert.ok(existsSync(join(ours, 'win/sub/file.txt')));
    });
    test(`DOS attributes map to modes as Info-ZIP unzip maps them (${label})`, async () => {
      const zip = join(fresh('dosattr'), 'attrs.zip');
      // [name, external attributes, host]: FAT with consistent/inconsistent unix bits, read-only, NTFS, folders.
      const spec: [string, number, number][] = [
        ['fat600.txt', 0o600 << 16, 0],
        ['fat755.txt', 0o755 << 16, 0],
        ['fatro.txt', 1, 0],
        ['ntfs600.txt', 0o600 << 16, 11],
        ['ntfs.txt', 0x20, 11],
        ['fatdir/', 0x10, 0],
        ['fatdir700/', (0o700 << 16) | 0x10, 0],
      ];
      execFileSync('python3', [
        '-c',
        `import sys, json, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\nfor n, a, h in json.loads(sys.argv[2]):\n  zi = zipfile.ZipInfo(n); zi.create_system = h; zi.external_attr = a; z.writestr(zi, '' if n.endswith('/') else 'x')\nz.close()`,
        zip,
        JSON.stringify(spec),
      ]);
      await assertLikeUnzip(zip, {}, extract);
    });
    test(`a backslash escape is still refused (${label})`, async () => {
      const zip = dosZip(join(fresh('dos-evil'), 'evil.zip'), ['ok.txt', 'a\\..\\..\\evil.txt']);
      const dest = fresh('dos-evil-out');
      await assert.rejects(extract(zip, dest, OPTS), (err: unknown) => err instanceof ArchiveError && /\.\./.test(err.message));
      assert.deepEqual(readdirSync(dest), []);
    });
  }
});
