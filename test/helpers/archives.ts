// Test archives written by real archivers: Python's zipfile, Info-ZIP zip, and Go's archive/zip (like GitLab Runner),
// plus hostile and damaged variants.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { snapshotTree, type TreeEntry } from './tree.ts';

export interface SpecEntry {
  name: string;
  data?: string | Buffer;
  target?: string;
  /** Permission bits (e.g. 0o755); default 0o644 for files, 0o755 for dirs. */
  mode?: number;
  type?: 'file' | 'dir' | 'symlink';
}

export interface ZipOptions {
  method?: 'deflate' | 'store';
}

function toB64(data: string | Buffer | undefined): string {
  return Buffer.from(data ?? '').toString('base64');
}

/** Generated archives, by a hash of the generator's code and inputs: each is built once per machine (tmpdir). */
const FIXTURE_CACHE = join(tmpdir(), 'artifact-relay-fixtures');

/**
 * Writes `file` as `build` would, from the cache when an archive with the same `key` (everything the output depends
 * on: generator code, inputs) was built before. The generators are deterministic (fixed timestamps), so a cached copy
 * is byte-identical to a fresh one.
 */
let pruned = false;
function cachedFixture(file: string, key: unknown, build: (out: string) => void): string {
  if (!pruned) {
    pruned = true;
    // Fixtures with random data never hit again: drop what no run used for a day, so the cache does not grow forever.
    const stale = Date.now() - 86_400_000;
    if (existsSync(FIXTURE_CACHE))
      for (const name of readdirSync(FIXTURE_CACHE)) {
        const p = join(FIXTURE_CACHE, name);
        // Concurrent test files prune and rename here too: an entry gone since the listing is skipped.
        const st = statSync(p, { throwIfNoEntry: false });
        if (st && st.mtimeMs < stale) rmSync(p, { force: true });
      }
  }
  const hash = createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 32);
  const cached = join(FIXTURE_CACHE, `${hash}.zip`);
  // Another test process may prune a stale entry between a check and its use: a vanished entry is built again.
  try {
    const now = new Date();
    utimesSync(cached, now, now);
    copyFileSync(cached, file);
    return file;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(FIXTURE_CACHE, { recursive: true });
  // Renamed into place: test files run concurrently and must never see a half-written fixture.
  const tmp = `${cached}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  build(tmp);
  renameSync(tmp, cached);
  copyFileSync(cached, file);
  return file;
}

const PY_WRITER = `
import json, sys, zipfile, base64, warnings
warnings.simplefilter('ignore')
spec = json.load(sys.stdin)
method = zipfile.ZIP_STORED if spec['method'] == 'store' else zipfile.ZIP_DEFLATED
with zipfile.ZipFile(spec['file'], 'w', compression=method) as zf:
    for e in spec['entries']:
        t = e.get('type') or 'file'
        zi = zipfile.ZipInfo(e['name'], date_time=(2024, 5, 6, 7, 8, 10))
        zi.create_system = 3
        zi.compress_type = method
        mode = e.get('mode')
        if t == 'dir':
            zi.external_attr = ((0o040000 | (0o755 if mode is None else mode)) << 16) | 0x10
            zi.compress_type = zipfile.ZIP_STORED
            data = b''
        elif t == 'symlink':
            zi.external_attr = (0o120777 << 16)
            data = e['target'].encode()
        else:
            zi.external_attr = ((0o100000 | (0o644 if mode is None else mode)) << 16)
            data = base64.b64decode(e.get('data') or '')
        zf.writestr(zi, data)
`;

/** Writes a zip with Python's zipfile (create_system=3, external_attr = mode << 16). */
export function pythonZip(file: string, entries: SpecEntry[], opts: ZipOptions = {}): string {
  const spec = { method: opts.method ?? 'deflate', entries: entries.map((e) => ({ ...e, data: toB64(e.data) })) };
  return cachedFixture(file, ['python', PY_WRITER, spec], (out) =>
    execFileSync('python3', ['-c', PY_WRITER], { input: JSON.stringify({ ...spec, file: out }), maxBuffer: 1 << 26 }),
  );
}

/**
 * An archive written by a Python script of the test's own (`python3 -c code out`), cached like every fixture: for
 * archives too large to build on every run. The script may assert what it wrote; a failed check is never cached.
 */
export function pythonScriptZip(file: string, code: string): string {
  return cachedFixture(file, ['python-script', code], (out) => execFileSync('python3', ['-c', code, out], { maxBuffer: 1 << 26 }));
}

/** Builds a folder with `build(root)`, then runs Info-ZIP `zip -r -y -q` from inside it (symlinks stored as links). */
export function infoZip(file: string, build: (root: string) => void, extraArgs: string[] = []): string {
  const root = mkdtempSync(join(tmpdir(), 'infozip-src-'));
  build(root);
  execFileSync('zip', ['-r', '-y', '-q', ...extraArgs, resolve(file), '.'], { cwd: root });
  return file;
}

/** Writes a folder tree for infoZip from a spec (files with modes, directories, symlinks). */
export function buildTree(root: string, entries: SpecEntry[]): void {
  const dirModes: [string, number][] = [];
  for (const e of entries) {
    const p = join(root, e.name);
    if (e.type === 'dir') {
      mkdirSync(p, { recursive: true });
      if (e.mode !== undefined) dirModes.push([p, e.mode]);
    } else {
      mkdirSync(dirname(p), { recursive: true });
      if (e.type === 'symlink') symlinkSync(e.target!, p);
      else {
        writeFileSync(p, e.data ?? '');
        chmodSync(p, e.mode ?? 0o644);
      }
    }
  }
  for (const [p, m] of dirModes.reverse()) chmodSync(p, m);
}

const GO_SOURCE = fileURLToPath(new URL('./gozip/main.go', import.meta.url));
/** The snapshot format is part of a cached snapshot's key. */
const TREE_SOURCE = fileURLToPath(new URL('./tree.ts', import.meta.url));

function goBinary(): string {
  const source = readFileSync(GO_SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const bin = join(tmpdir(), `artifact-relay-gozip-${hash}`);
  if (!existsSync(bin)) {
    const work = mkdtempSync(join(tmpdir(), 'gozip-build-'));
    writeFileSync(join(work, 'main.go'), source);
    const tmpBin = join(work, 'gozip');
    execFileSync('go', ['build', '-o', tmpBin, 'main.go'], {
      cwd: work,
      env: { ...process.env, GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'artifact-relay-gocache'), GO111MODULE: 'off', GOFLAGS: '' },
    });
    renameSync(tmpBin, bin);
  }
  return bin;
}

/** Writes a zip with Go's archive/zip (data descriptors; `many` generated files, 70,000 → zip64). */
export function goZip(file: string, spec: { entries?: SpecEntry[]; method?: 'deflate' | 'store'; many?: number }): string {
  const json = {
    method: spec.method ?? 'deflate',
    entries: (spec.entries ?? []).map((e) => ({
      name: e.name,
      data: toB64(e.data),
      target: e.target ?? '',
      mode: e.mode ?? (e.type === 'dir' ? 0o755 : 0o644),
      type: e.type ?? 'file',
    })),
  };
  const many = String(spec.many ?? 0);
  return cachedFixture(file, ['go', readFileSync(GO_SOURCE, 'utf8'), json, many], (out) =>
    execFileSync(goBinary(), ['-o', out, '-many', many], { input: JSON.stringify(json) }),
  );
}

// ---- hostile and damaged archives ----

export const hostile = {
  dotdot: (file: string) =>
    pythonZip(file, [
      { name: 'ok.txt', data: 'ok' },
      { name: 'a/../../evil.txt', data: 'evil' },
    ]),
  absolute: (file: string) => pythonZip(file, [{ name: '/tmp/evil-absolute.txt', data: 'evil' }]),
  backslash: (file: string) => pythonZip(file, [{ name: 'a\\..\\..\\evil.txt', data: 'evil' }]),
  escapingSymlink: (file: string) =>
    pythonZip(file, [
      { name: 'ok.txt', data: 'ok' },
      { name: 'x', type: 'symlink', target: '../../etc' },
    ]),
  absoluteSymlink: (file: string) => pythonZip(file, [{ name: 'x', type: 'symlink', target: '/etc/passwd' }]),
  /** `l1 -> .` then `l2 -> l1/..`: lexically inside, but the kernel resolves l2 to the parent of the destination. */
  chainedSymlink: (file: string) =>
    pythonZip(file, [
      { name: 'l1', type: 'symlink', target: '.' },
      { name: 'l2', type: 'symlink', target: 'l1/..' },
    ]),
  throughSymlink: (file: string) =>
    pythonZip(file, [
      { name: 'sub/keep.txt', data: 'k' },
      { name: 'link', type: 'symlink', target: 'sub' },
      { name: 'link/evil', data: 'evil' },
    ]),
  fileAndDir: (file: string) =>
    pythonZip(file, [
      { name: 'a', data: 'file' },
      { name: 'a/b', data: 'under a file' },
    ]),
  duplicate: (file: string) =>
    pythonZip(file, [
      { name: 'dup.txt', data: 'one' },
      { name: 'dup.txt', data: 'two' },
    ]),
  duplicateNormalised: (file: string) =>
    pythonZip(file, [
      { name: 'dup.txt', data: 'one' },
      { name: './dup.txt', data: 'two' },
    ]),
  /** A 200 MiB zero file, deflated (about 200 KiB). */
  ratioBomb: (file: string) => {
    // A fixed date_time and mode (writestr's own defaults), so the output depends on the script alone.
    const script = `import sys, zipfile\nzi = zipfile.ZipInfo('zeros.bin', date_time=(2024, 5, 6, 7, 8, 10))\nzi.external_attr = 0o600 << 16\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n  z.writestr(zi, bytes(200*1024*1024), zipfile.ZIP_DEFLATED)`;
    return cachedFixture(file, ['python', script], (out) => execFileSync('python3', ['-c', script, out]));
  },
  /** A stored zip with one byte of `b.txt`'s data flipped. */
  crcDamage: (file: string) => {
    pythonZip(
      file,
      [
        { name: 'a.txt', data: 'alpha\n' },
        { name: 'b.txt', data: 'bravo bravo bravo\n' },
      ],
      { method: 'store' },
    );
    execFileSync('python3', [
      '-c',
      `import zipfile,struct\nf=${JSON.stringify(file)}\nzi=zipfile.ZipFile(f).getinfo('b.txt')\nb=bytearray(open(f,'rb').read())\no=zi.header_offset\nn,e=struct.unpack('<HH',b[o+26:o+30])\nb[o+30+n+e+2]^=0xff\nopen(f,'wb').write(b)`,
    ]);
    return file;
  },
  truncated: (file: string) => {
    pythonZip(
      file,
      [
        { name: 'big.bin', data: Buffer.alloc(100_000, 7) },
        { name: 'b.txt', data: 'b' },
      ],
      { method: 'store' },
    );
    truncateSync(file, Math.floor(statSync(file).size / 2));
    return file;
  },
  html: (file: string) => {
    writeFileSync(file, '<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>\n');
    return file;
  },
  encrypted: (file: string) => infoZip(file, (root) => writeFileSync(join(root, 'secret.txt'), 'classified\n'), ['-P', 'secret']),
  /** The central directory declares `b.bin` smaller than it inflates to (lying sizes). */
  lyingSize: (file: string) => {
    pythonZip(file, [
      { name: 'a.txt', data: 'a' },
      { name: 'b.bin', data: Buffer.alloc(300_000, 1) },
    ]);
    execFileSync('python3', [
      '-c',
      `import struct\nf=${JSON.stringify(file)}\nb=bytearray(open(f,'rb').read())\ni=b.rfind(b'PK\\x01\\x02')\nstruct.pack_into('<I',b,i+24,1000)\nopen(f,'wb').write(b)`,
    ]);
    return file;
  },
};

let unzipVersion: string | undefined;

/**
 * What Info-ZIP unzip makes of `zip` (extracted under `scratch`), as a tree snapshot. Cached by the archive's bytes, the
 * umask and unzip's version: the 70,000-entry zip64 is unpacked by unzip once, not on every run of each test path.
 */
export function unzipSnapshot(zip: string, scratch: string): TreeEntry[] {
  unzipVersion ??= execFileSync('unzip', ['-v'], { encoding: 'utf8' }).split('\n')[0];
  const hash = createHash('sha256')
    .update(readFileSync(zip))
    .update(`\0${process.umask()}\0${unzipVersion}\0${readFileSync(TREE_SOURCE, 'utf8')}`)
    .digest('hex')
    .slice(0, 32);
  const cached = join(FIXTURE_CACHE, `${hash}.unzip.json`);
  try {
    return JSON.parse(readFileSync(cached, 'utf8')) as TreeEntry[];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // not cached yet, or pruned by another process
  }
  const out = mkdtempSync(join(scratch, 'unzip-'));
  execFileSync('unzip', ['-q', '-o', zip, '-d', out]);
  const snap = snapshotTree(out);
  mkdirSync(FIXTURE_CACHE, { recursive: true });
  const tmp = `${cached}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, JSON.stringify(snap));
  renameSync(tmp, cached);
  return snap;
}
