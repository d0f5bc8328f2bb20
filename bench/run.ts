// The benchmark of issue 4: `npm run bench` (options: --size-mb 500 --runs 3 --out bench-results/latest.json
// --only a,b,c1,c2,d --keep --readme --work-dir DIR; or env BENCH_SIZE_MB, BENCH_RUNS, BENCH_OUT, BENCH_ONLY, BENCH_KEEP,
// BENCH_WORK_DIR). The archive is cached in os.tmpdir()/artifact-relay-bench; the trees are unpacked under --work-dir
// (default: that same folder; /dev/shm takes the disk's file-creation cost out of the comparison).
// Serves a generated archive from the simulator and times, alternating round by round, artifact-relay against
// curl+unzip, unzip alone against artifact-relay's extraction, and python-gitlab's CLI+unzip.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { startSimulator } from '../src/simulator/index.ts';

const repo = fileURLToPath(new URL('..', import.meta.url));
const started = performance.now();
const { values: flags } = parseArgs({
  options: {
    'size-mb': { type: 'string' },
    runs: { type: 'string' },
    out: { type: 'string' },
    only: { type: 'string' },
    keep: { type: 'boolean' },
    readme: { type: 'boolean' },
    'work-dir': { type: 'string' },
  },
});
const env = process.env;
const sizeMb = Number(flags['size-mb'] ?? env.BENCH_SIZE_MB ?? 500);
const runs = Number(flags.runs ?? env.BENCH_RUNS ?? 3);
const outJson = resolve(repo, flags.out ?? env.BENCH_OUT ?? 'bench-results/latest.json');
const outMd = outJson.replace(/(\.json)?$/, '.md');
const only = (flags.only ?? env.BENCH_ONLY ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const keep = flags.keep ?? env.BENCH_KEEP === '1';
const readmePath = flags.readme || env.BENCH_README ? resolve(repo, env.BENCH_README ?? 'README.md') : null;

const TOKEN = 'glpat-bench-token-0123456789';
const JOB_TOKEN = 'glcbt-bench-job-token-0123456789';
const cacheDir = join(os.tmpdir(), 'artifact-relay-bench');
const archive = join(cacheDir, `archive-${sizeMb}.zip`);
const work = join(resolve(flags['work-dir'] ?? env.BENCH_WORK_DIR ?? cacheDir), `artifact-relay-bench-work-${process.pid}`);

/** Runs a command; resolves with its exit code and its stdout+stderr. */
function run(cmd: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; output: string }> {
  return new Promise((res, rej) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { cwd: opts.cwd, env: opts.env ?? env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const add = (d: Buffer) => (output += d.toString());
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    child.on('error', rej);
    child.on('close', (code) => res({ code: code ?? 1, output }));
  });
}

async function must(cmd: string[], opts: { cwd?: string } = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} exited ${r.code}:\n${r.output.slice(-5000)}`);
  return r.output;
}

// 1. The archive, generated once per size and cached.
interface ArchiveInfo {
  bytes: number;
  entries: number;
  files: number;
  inflated: number;
  composition: Record<string, { files: number; bytes: number }>;
}
async function ensureArchive(): Promise<ArchiveInfo> {
  await mkdir(cacheDir, { recursive: true });
  if (!existsSync(archive) || !existsSync(`${archive}.json`)) {
    const t = performance.now();
    const tree = join(cacheDir, `tree-${sizeMb}`);
    await rm(tree, { recursive: true, force: true });
    console.log(`generating a ${sizeMb} MB archive in ${archive} ...`);
    const composition = JSON.parse(await must(['python3', join(repo, 'bench/gen-tree.py'), tree, String(sizeMb), '3.6']));
    await rm(`${archive}.tmp`, { force: true });
    await must(['zip', '-q', '-r', `${archive}.tmp`, '.'], { cwd: tree });
    await rm(tree, { recursive: true, force: true });
    const names = (await must(['zipinfo', '-1', `${archive}.tmp`])).split('\n').filter(Boolean);
    const totals = /([\d]+) bytes uncompressed, (\d+) bytes compressed/.exec(await must(['zipinfo', '-t', `${archive}.tmp`]))!;
    const info: ArchiveInfo = {
      bytes: Number(totals[2]),
      entries: names.length,
      files: names.filter((n) => !n.endsWith('/')).length,
      inflated: Number(totals[1]),
      composition,
    };
    await writeFile(`${archive}.json`, JSON.stringify(info));
    await rename(`${archive}.tmp`, archive);
    console.log(`generated in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
  const info = JSON.parse(await readFile(`${archive}.json`, 'utf8')) as ArchiveInfo;
  info.bytes = (await stat(archive)).size;
  return info;
}

/** Files and bytes of a tree (regular files only). */
async function treeStats(dir: string): Promise<{ files: number; bytes: number }> {
  const sizes = (await must(['find', dir, '-type', 'f', '-printf', '%s\\n'])).split('\n').filter(Boolean);
  return { files: sizes.length, bytes: sizes.reduce((a, s) => a + Number(s), 0) };
}

const mb = (n: number) => (n / 1024 / 1024).toFixed(0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

const info = await ensureArchive();
console.log(`archive: ${mb(info.bytes)} MB, ${info.entries} entries (${info.files} files), ${mb(info.inflated)} MB inflated`);

// extract-local bundled once, so tsx's startup is not measured.
const extractLocal = join(repo, 'bench/.build/extract-local.mjs');
await build({
  entryPoints: [join(repo, 'bench/extract-local.ts')],
  outfile: extractLocal,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  logLevel: 'warning',
  external: ['@aws-sdk/client-s3'],
  banner: { js: "import { createRequire as __arCreateRequire } from 'node:module';\nconst require = __arCreateRequire(import.meta.url);" },
});

// 2. The simulator, redirecting downloads to its storage origin.
const sim = await startSimulator({ downloadMode: 'redirect' });
const project = sim.addProject({ path: 'bench/app' });
const pipeline = sim.addPipeline({ projectId: project.id, ref: 'main', status: 'success' });
const job = sim.addJob({ pipelineId: pipeline.id, name: 'build', status: 'success', archive });
sim.addAccessToken(TOKEN, { kind: 'project', role: 'maintainer', scopes: ['api'] });
const artifactsUrl = `${sim.apiUrl}/projects/${project.id}/jobs/${job.id}/artifacts`;

// python-gitlab: its CLI calls GET /api/v4/user first when given a private token. When the simulator does not
// answer that, use a job token (no /user call) of a running job in the same project.
const notes: string[] = [];
const wanted = (id: string) => only.length === 0 || only.includes(id);
let pgAuth: string[] | null = null;
if (wanted('d')) {
  if ((await run(['/usr/bin/python3', '-c', 'import gitlab'])).code !== 0) await run(['apt-get', 'install', '-y', 'python3-gitlab']);
  if ((await run(['/usr/bin/python3', '-c', 'import gitlab'])).code !== 0) {
    notes.push('(d) skipped: python3-gitlab is not installable here.');
  } else {
    const user = await fetch(`${sim.apiUrl}/user`, { headers: { 'PRIVATE-TOKEN': TOKEN } });
    if (user.ok) {
      pgAuth = ['--private-token', TOKEN];
    } else {
      const consumer = sim.addJob({ pipelineId: pipeline.id, name: 'consume', status: 'running' });
      sim.addJobToken(JOB_TOKEN, consumer.id);
      pgAuth = ['--job-token', JOB_TOKEN];
      notes.push(
        `(d) uses --job-token: the simulator answers GET /api/v4/user with ${user.status}, which python-gitlab's CLI calls first with --private-token.`,
      );
    }
  }
}

// 3. Contenders. Each runs in its own work dir W, unpacking into W/out.
interface Contender {
  id: string;
  label: string;
  baseline?: string;
  cmd: (w: string) => string[];
}
const sh = (script: string) => ['sh', '-c', script];
/** Node flags the image's artifact-relay wrapper uses (Dockerfile): measure what users run. */
const NODE = ['node', '--max-semi-space-size=1'];
const all: Contender[] = [
  {
    id: 'a',
    label: 'artifact-relay fetch (API → unpacked tree)',
    baseline: 'b',
    cmd: (w) => [
      ...NODE,
      join(repo, 'dist/artifact-relay.mjs'),
      'fetch',
      '--server-url',
      sim.url,
      '--token',
      TOKEN,
      '--project',
      String(project.id),
      '--job-id',
      String(job.id),
      '--path',
      join(w, 'out'),
    ],
  },
  {
    id: 'b',
    label: 'curl -L + unzip -q',
    cmd: () => sh(`curl -sfL -H "PRIVATE-TOKEN: ${TOKEN}" -o a.zip '${artifactsUrl}' && unzip -q a.zip -d out`),
  },
  { id: 'c1', label: 'unzip -q (local zip)', cmd: () => ['unzip', '-q', archive, '-d', 'out'] },
  { id: 'c2', label: 'artifact-relay extraction (local zip)', baseline: 'c1', cmd: () => [...NODE, extractLocal, archive, 'out'] },
  {
    id: 'd',
    label: 'python-gitlab CLI + unzip -q',
    baseline: 'b',
    cmd: () =>
      sh(
        `/usr/bin/python3 -m gitlab --server-url '${sim.url}' ${pgAuth!.join(' ')} project-job artifacts --project-id ${project.id} --id ${job.id} > a.zip && unzip -q a.zip -d out`,
      ),
  },
];
const contenders = all.filter((c) => wanted(c.id) && (c.id !== 'd' || pgAuth));

// A clean environment: no CI_* variables leaking into artifact-relay's defaults.
const cleanEnv = Object.fromEntries(
  Object.entries(env).filter(([k]) => !k.startsWith('CI_') && !k.startsWith('INPUT_') && !k.startsWith('GITLAB_')),
);
const samples = new Map<string, { wall: number; rssKiB: number }[]>(contenders.map((c) => [c.id, []]));
const verified = new Map<string, { files: number; bytes: number }>();
const benchStart = performance.now();
try {
  for (let round = 1; round <= runs; round++) {
    for (const c of contenders) {
      const w = join(work, c.id);
      await rm(w, { recursive: true, force: true });
      await mkdir(w, { recursive: true });
      const timeFile = join(work, `${c.id}.time`);
      const r = await run(['/usr/bin/time', '-f', '%e %M', '-o', timeFile, ...c.cmd(w)], { cwd: w, env: cleanEnv });
      if (r.code !== 0) throw new Error(`(${c.id}) exited ${r.code}:\n${r.output.slice(-5000)}`);
      const [wall, rss] = (await readFile(timeFile, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number) as [number, number];
      samples.get(c.id)!.push({ wall, rssKiB: rss });
      // The tree must match the archive's listing (so (a) matches (b)): checked outside the timed region.
      const got = await treeStats(join(w, 'out'));
      if (got.files !== info.files || got.bytes !== info.inflated) {
        throw new Error(`(${c.id}) unpacked ${got.files} files / ${got.bytes} bytes, the archive has ${info.files} / ${info.inflated}`);
      }
      verified.set(c.id, got);
      console.log(`round ${round} (${c.id}) ${wall.toFixed(2)} s, ${mb(rss * 1024)} MB peak RSS`);
      await rm(w, { recursive: true, force: true });
    }
  }
} finally {
  await sim.close();
  await rm(work, { recursive: true, force: true });
  if (!keep) for (const f of [archive, `${archive}.json`]) await rm(f, { force: true });
}
const benchSeconds = (performance.now() - benchStart) / 1000;

// 4. Results.
const rows = contenders.map((c) => {
  const s = samples.get(c.id)!;
  const walls = s.map((x) => x.wall);
  const base = c.baseline && samples.get(c.baseline)?.length ? median(samples.get(c.baseline)!.map((x) => x.wall)) : null;
  return {
    id: c.id,
    label: c.label,
    median: median(walls),
    min: Math.min(...walls),
    max: Math.max(...walls),
    ratio: base ? median(walls) / base : null,
    baseline: c.baseline ?? null,
    peakRssMB: Math.max(...s.map((x) => x.rssKiB)) / 1024,
    samples: s,
  };
});
const row = (id: string) => rows.find((r) => r.id === id);
const target = (name: string, value: number | null | undefined, limit: number, unit = '') =>
  value == null ? { name, value: null, limit, status: 'n/a' } : { name, value, limit, status: value <= limit ? 'PASS' : 'MISS', unit };
const targets = [
  target('(a)/(b) wall ≤ 1.0', row('a')?.ratio, 1.0),
  target('(c2)/(c1) wall ≤ 1.5', row('c2')?.ratio, 1.5),
  {
    ...target('peak RSS of (a) < 150 MB', row('a')?.peakRssMB, 150, ' MB'),
    ...(row('a') && { status: row('a')!.peakRssMB < 150 ? 'PASS' : 'MISS' }),
  },
];
const cpus = os.cpus();
const machine = `${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GB RAM, ${os.type()} ${os.release()}, Node ${process.version}`;
const comp = Object.entries(info.composition)
  .map(([k, v]) => `${k} ${v.files} files / ${mb(v.bytes)} MB`)
  .join(', ');
const archiveLine = `${mb(info.bytes)} MB zip (Info-ZIP zip -r), ${info.entries} entries (${info.files} files), ${mb(info.inflated)} MB inflated: ${comp}`;
const workDir = flags['work-dir'] ?? env.BENCH_WORK_DIR;
const command = `npm run bench -- --size-mb ${sizeMb} --runs ${runs}${only.length ? ` --only ${only.join(',')}` : ''}${workDir ? ` --work-dir ${workDir}` : ''}`;
notes.push(
  'All runs are warm-cache (page cache cannot be dropped here); the simulator runs in the bench process on 127.0.0.1.',
  'Wall and peak RSS come from GNU time (%e %M); for sh -c pipelines %M is the max RSS of the biggest single process, not a sum.',
);

const fmt = (n: number | null, d = 2) => (n == null ? '-' : n.toFixed(d));
const header = ['contender', 'median s', 'min s', 'max s', 'ratio', 'peak RSS MB'];
const cells = rows.map((r) => [
  `(${r.id}) ${r.label}`,
  fmt(r.median),
  fmt(r.min),
  fmt(r.max),
  r.ratio == null ? '-' : `${fmt(r.ratio)} vs (${r.baseline})`,
  fmt(r.peakRssMB, 0),
]);
const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
const targetLines = targets.map(
  (t) => `${t.status.padEnd(4)}  ${t.name}: ${t.value == null ? 'not measured' : `${fmt(t.value)}${t.unit ?? ''}`}`,
);

console.log(
  `\nmachine: ${machine}\narchive: ${archiveLine}\nunpacked under: ${work}\nruns: ${runs} (alternating), bench ${benchSeconds.toFixed(0)} s, total ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
);
console.log([line(header), ...cells.map(line)].join('\n'));
console.log(`\n${targetLines.join('\n')}\n${notes.map((n) => `note: ${n}`).join('\n')}`);
console.log(
  `trees verified against the archive listing: ${[...verified.keys()].map((k) => `(${k})`).join(' ')} = ${info.files} files, ${info.inflated} bytes`,
);

const md = [
  `Measured with \`${command}\` on ${machine}.`,
  `Archive: ${archiveLine}. Served by the simulator in redirect mode (302 to its storage origin).`,
  '',
  `| ${header.join(' | ')} |`,
  `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
  ...cells.map((c) => `| ${c.join(' | ')} |`),
  '',
  ...targets.map((t) => `- ${t.status} ${t.name}: ${t.value == null ? 'not measured' : `${fmt(t.value)}${t.unit ?? ''}`}`),
  ...notes.map((n) => `- ${n}`),
].join('\n');

await mkdir(dirname(outJson), { recursive: true });
const result = {
  date: new Date().toISOString(),
  command,
  machine,
  archive: info,
  runs,
  benchSeconds,
  totalSeconds: (performance.now() - started) / 1000,
  rows,
  targets,
  notes,
  verified: Object.fromEntries(verified),
};
await writeFile(outJson, `${JSON.stringify(result, null, 2)}\n`);
await writeFile(outMd, `${md}\n`);
console.log(`wrote ${outJson} and ${outMd}`);
if (readmePath) {
  const text = await readFile(readmePath, 'utf8');
  const re = /(<!-- BEGIN BENCH -->\n)[\s\S]*?(<!-- END BENCH -->)/;
  if (!re.test(text)) throw new Error(`${readmePath} has no <!-- BEGIN BENCH --> ... <!-- END BENCH --> section`);
  await writeFile(
    readmePath,
    text.replace(re, (_m, a: string, b: string) => `${a}${md}\n${b}`),
  );
  console.log(`updated the bench section of ${readmePath}`);
}
