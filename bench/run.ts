// The benchmark (issues 4 and 12): `npm run bench [-- options]`. Serves generated archives from the simulator (302 to
// its storage origin, which honours Range) and times, alternating contender by contender in each round, artifact-relay
// fetch (unpacking while downloading, the plain download-then-unpack path, and as ar-ranges the fetch with
// ARTIFACT_RELAY_WIDEN=0: parallel ranges from the start, as before adaptive connections) against curl + Info-ZIP unzip,
// curl + bsdtar, curl | bsdtar (streaming), a Go net/http + archive/zip downloader (bench/go-fetch, stdlib only, as
// GitLab Runner's), python-gitlab's CLI + unzip, and curl alone. Each shape is unpacked on disk and on tmpfs (/dev/shm).
// Prints wall, CPU (user+sys, children included) and peak RSS with ratios against curl + bsdtar; --readme writes the
// table into README.md.
//
// Options (each also as an env var BENCH_<NAME>):
//   --shapes small,mixed,big     archive shapes (bench/gen-zip.py; also many83k, many300k)
//   --runs 3                     alternating rounds (medians are reported); per shape: --runs 3,big=1
//   --only ar,ar-plain,...       contenders (ids below; ar-host: artifact-relay fetch on the host's node, when that is
//                                not the --node one)
//   --node image                 the node that runs artifact-relay (bench/runtime.ts): image (BENCH_IMAGE's node binary
//                                with the wrapper's flags and a compile cache as the image has; falls back to npm's
//                                Node 24, then the host's, loudly), npm, host, or a path to a node binary
//   --dirs disk,tmpfs            where the trees are unpacked (disk: os.tmpdir(); tmpfs: /dev/shm)
//   --memory                     also measure peak RSS of artifact-relay on many83k and many300k and on a tiny archive
//                                (against node -e 0 of the same binary); on the host's node too, as info rows
//   --startup                    also time `artifact-relay --version` against `node -e 0`, on each runtime and in the image
//                                (BENCH_IMAGE, default localhost/artifact-relay:test; the row says when it is not there)
//   --readme                     write the table between the BENCH markers of README.md
//   --out bench-results/latest.json
// Archives are cached in os.tmpdir()/artifact-relay-bench (generation takes minutes for the large shapes).
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { podmanRun } from '../test/helpers/image.ts';
import { startSimulator } from '../test/simulator/index.ts';
import {
  type ArchiveInfo,
  BUNDLE,
  cacheDir,
  cleanEnv,
  ensureArchive,
  fmt,
  list,
  machine as machineLine,
  median,
  mib,
  must,
  repo,
  run,
  type Sample,
  TOKEN,
  timed,
  treeStats,
  writeReadmeSection,
} from './lib.ts';
import {
  describe,
  nodeOf,
  hostRuntime,
  type Runtime,
  resolveRuntime,
  runtimeEnv,
  runtimeHeader,
  runtimeJson,
  WRAPPER_FLAGS,
} from './runtime.ts';

const started = performance.now();
const { values: flags } = parseArgs({
  options: {
    shapes: { type: 'string' },
    runs: { type: 'string' },
    only: { type: 'string' },
    dirs: { type: 'string' },
    node: { type: 'string' },
    memory: { type: 'boolean' },
    startup: { type: 'boolean' },
    readme: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const env = process.env;
const shapes = list(flags.shapes ?? env.BENCH_SHAPES, 'small,mixed,big');
const runsSpec = String(flags.runs ?? env.BENCH_RUNS ?? '3');
/** Rounds of a shape: the plain number, or the shape's own (`3,big=1`: the 2 GiB shape's rounds take minutes). */
const runsOf = (shape: string): number => {
  let n = 3;
  for (const part of list(runsSpec, '3')) {
    const [k, v] = part.includes('=') ? part.split('=') : [undefined, part];
    if (k === undefined) n = Number(v);
    else if (k === shape) return Number(v);
  }
  return n;
};
const runs = runsOf('');
const only = list(flags.only ?? env.BENCH_ONLY, '');
const dirs = list(flags.dirs ?? env.BENCH_DIRS, 'disk,tmpfs');
const memory = flags.memory ?? env.BENCH_MEMORY === '1';
const startup = flags.startup ?? env.BENCH_STARTUP === '1';
const writeReadme = Boolean(flags.readme || env.BENCH_README);
const outJson = resolve(repo, flags.out ?? env.BENCH_OUT ?? 'bench-results/latest.json');
const outMd = outJson.replace(/(\.json)?$/, '.md');
const image = env.BENCH_IMAGE || 'localhost/artifact-relay:test';
const nodeSpec = flags.node ?? env.BENCH_NODE ?? 'image';

const JOB_TOKEN = 'glcbt-bench-job-token-0123456789';
const workRoots: Record<string, string> = { disk: cacheDir, tmpfs: '/dev/shm' };

// The Go contender, built from source each time (stdlib only).
const goBin = join(repo, 'bench/.build/go-fetch');
await mkdir(dirname(goBin), { recursive: true });
await must(['go', 'build', '-o', goBin, '.'], { cwd: join(repo, 'bench/go-fetch'), env: { ...env, GO111MODULE: 'off' } });

const rt = await resolveRuntime(nodeSpec, image);
const hostRt = await hostRuntime(rt);
const header0 = runtimeHeader(rt, hostRt);
console.log(header0.join('\n'));

const sim = await startSimulator({ downloadMode: 'redirect' });
const project = sim.addProject({ path: 'bench/app' });
const pipeline = sim.addPipeline({ projectId: project.id, ref: 'main', status: 'success' });
sim.addAccessToken(TOKEN, { kind: 'project', role: 'maintainer', scopes: ['api'] });
const notes: string[] = [];
// python-gitlab's CLI calls GET /api/v4/user first with a private token; where the simulator does not answer that,
// it uses the job token of a running job in the same project (no /user call).
let pgAuth: string[] | null = null;
if ((await run(['/usr/bin/python3', '-c', 'import gitlab'])).code === 0) {
  const user = await fetch(`${sim.apiUrl}/user`, { headers: { 'PRIVATE-TOKEN': TOKEN } });
  if (user.ok) pgAuth = ['--private-token', TOKEN];
  else {
    const consumer = sim.addJob({ pipelineId: pipeline.id, name: 'consume', status: 'running' });
    sim.addJobToken(JOB_TOKEN, consumer.id);
    pgAuth = ['--job-token', JOB_TOKEN];
    notes.push(`python-gitlab uses --job-token (the simulator answers GET /api/v4/user with ${user.status}).`);
  }
} else notes.push('python-gitlab skipped: python3-gitlab is not installed (apt-get install python3-gitlab).');

interface Contender {
  id: string;
  label: string;
  cmd: (jobId: number, out: string) => string[];
  env?: NodeJS.ProcessEnv;
  /** The node that runs it (artifact-relay's contenders). */
  rt?: Runtime;
}
const sh = (script: string) => ['sh', '-c', script];
const url = (jobId: number) => `${sim.apiUrl}/projects/${project.id}/jobs/${jobId}/artifacts`;
const curl = (jobId: number) => `curl -sfL -H "PRIVATE-TOKEN: ${TOKEN}" '${url(jobId)}'`;
const relay = (r: Runtime) => (jobId: number, out: string) => [
  ...r.argv,
  BUNDLE,
  'fetch',
  '--server-url',
  sim.url,
  '--token',
  TOKEN,
  '--project',
  String(project.id),
  '--job-id',
  String(jobId),
  '--path',
  out,
  '--max-files',
  '10000000',
];
const all: Contender[] = [
  { id: 'ar', label: 'artifact-relay fetch', cmd: relay(rt), rt },
  {
    id: 'ar-plain',
    label: 'artifact-relay fetch, ARTIFACT_RELAY_OVERLAP=0',
    cmd: relay(rt),
    rt,
    env: { ARTIFACT_RELAY_OVERLAP: '0' },
  },
  {
    id: 'ar-ranges',
    label: 'artifact-relay fetch, ARTIFACT_RELAY_WIDEN=0 (ranges from the start)',
    cmd: relay(rt),
    rt,
    env: { ARTIFACT_RELAY_WIDEN: '0' },
  },
  { id: 'ar-1conn', label: 'artifact-relay fetch, connections: 1', cmd: relay(rt), rt, env: { INPUT_CONNECTIONS: '1' } },
  ...(hostRt ? [{ id: 'ar-host', label: `artifact-relay fetch, host Node ${hostRt.version}`, cmd: relay(hostRt), rt: hostRt }] : []),
  { id: 'unzip', label: 'curl + unzip -q', cmd: (j, out) => sh(`${curl(j)} -o a.zip && unzip -q a.zip -d ${out}`) },
  { id: 'bsdtar', label: 'curl + bsdtar', cmd: (j, out) => sh(`${curl(j)} -o a.zip && mkdir ${out} && bsdtar -xf a.zip -C ${out}`) },
  { id: 'bsdtar-pipe', label: 'curl | bsdtar (streaming)', cmd: (j, out) => sh(`mkdir ${out} && ${curl(j)} | bsdtar -xf - -C ${out}`) },
  { id: 'go', label: 'Go net/http + archive/zip', cmd: (j, out) => [goBin, url(j), TOKEN, out] },
  {
    id: 'pygl',
    label: 'python-gitlab CLI + unzip -q',
    cmd: (j, out) =>
      sh(
        `/usr/bin/python3 -m gitlab --server-url '${sim.url}' ${pgAuth!.join(' ')} project-job artifacts --project-id ${project.id} --id ${j} > a.zip && unzip -q a.zip -d ${out}`,
      ),
  },
  { id: 'curl', label: 'download alone (curl > /dev/null)', cmd: (j) => sh(`${curl(j)} > /dev/null`) },
];
const contenders = all.filter((c) => (only.length === 0 || only.includes(c.id)) && (c.id !== 'pygl' || pgAuth));
if (only.includes('ar-host') && !hostRt) notes.push("ar-host left out: artifact-relay already runs on the host's node.");
const BASE = 'bsdtar';

interface Row {
  shape: string;
  dir: string;
  id: string;
  label: string;
  wall: number;
  cpu: number;
  rssMB: number;
  wallRatio: number | null;
  cpuRatio: number | null;
  samples: Sample[];
}
const rows: Row[] = [];
const archives: Record<string, ArchiveInfo> = {};
/** info: measured for comparison (the host's node), not a target. */
const extra: { name: string; value: number | null; limit: number; unit: string; note?: string; info?: boolean }[] = [];

const STARTUP_ROUNDS = 30;
/** Median wall times (ms) of `cmds`, run one after the other `rounds` times (alternating, so load hits all alike). */
async function alternate(cmds: { cmd: string[]; env: NodeJS.ProcessEnv }[], rounds: number, cwd: string): Promise<number[]> {
  const walls = cmds.map(() => [] as number[]);
  for (let i = 0; i < rounds; i++) {
    for (const [j, { cmd, env: runEnv }] of cmds.entries()) {
      const t = performance.now();
      const r = await run(cmd, { cwd, env: runEnv });
      walls[j]!.push(performance.now() - t);
      if (r.code !== 0) throw new Error(`${cmd.join(' ')} exited ${r.code}:\n${r.output.slice(-2000)}`);
    }
  }
  return walls.map(median);
}

/**
 * `artifact-relay --version` (the image's wrapper: Node 24 and its compile cache) against `node -e 0`, timed inside one
 * container of the image BENCH_IMAGE (default: the image test's localhost/artifact-relay:test, built by
 * `node scripts/test.mjs --tier image`); the bundle run without the cache for comparison. Not measured (and the
 * row says why) without podman or the image.
 */
async function imageStartup(): Promise<{ value: number | null; note: string }> {
  const exists = await run(['podman', 'image', 'exists', image]).catch((e: Error) => ({ code: -1, output: e.message }));
  if (exists.code !== 0) {
    return {
      value: null,
      note: exists.code === -1 ? `no podman (${exists.output})` : `no image ${image} (build it: node scripts/test.mjs --tier image)`,
    };
  }
  const script = `const { spawnSync } = require('node:child_process');
const flags = ${JSON.stringify(WRAPPER_FLAGS)};
const cmds = [['node', ...flags, '-e', '0'], ['artifact-relay', '--version'],
  ['node', ...flags, '/usr/local/lib/artifact-relay/artifact-relay.mjs', '--version']];
const t = cmds.map(() => []);
for (let i = 0; i < ${STARTUP_ROUNDS}; i++) for (const [j, c] of cmds.entries()) {
  const s = process.hrtime.bigint();
  const r = spawnSync(c[0], c.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(c.join(' ') + ' exited ' + r.status);
  t[j].push(Number(process.hrtime.bigint() - s) / 1e6);
}
console.log(JSON.stringify({ node: process.versions.node, t }));`;
  const created = (await must(['podman', 'image', 'inspect', '--format', '{{.Created}}', image])).trim().slice(0, 16);
  const r = await podmanRun([image, 'node', '-e', script]);
  if (r.status !== 0) throw new Error(`timing inside ${image} failed (exit ${r.status}):\n${r.stderr.slice(-3000)}`);
  const { node, t } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { node: string; t: number[][] };
  const [n, v, noCache] = t.map(median) as [number, number, number];
  return {
    value: v / n,
    note: `${image} (built ${created}), Node ${node}: ${fmt(v, 0)} ms vs ${fmt(n, 0)} ms; the bundle without the compile cache ${fmt(noCache, 0)} ms (${fmt(noCache / n)}x)`,
  };
}

async function runShape(shape: string): Promise<void> {
  const { zip, info } = await ensureArchive(shape);
  archives[shape] = info;
  const job = sim.addJob({ pipelineId: pipeline.id, name: `build-${shape}`, status: 'success', archive: zip });
  console.log(`\n${shape}: ${mib(info.bytes)} MiB zip, ${info.entries} entries, ${mib(info.inflated)} MiB inflated`);
  for (const dir of dirs) {
    const work = join(workRoots[dir]!, `artifact-relay-bench-work-${process.pid}`);
    const samples = new Map<string, Sample[]>(contenders.map((c) => [c.id, []]));
    try {
      for (let round = 1; round <= runsOf(shape); round++) {
        // Every other round in reverse order: no contender always follows the same one (bench/ranged.ts does the same).
        for (const c of round % 2 ? contenders : [...contenders].reverse()) {
          const w = join(work, c.id);
          await rm(w, { recursive: true, force: true });
          await mkdir(w, { recursive: true });
          await run(['sync']);
          const { output: _output, ...s } = await timed(
            c.cmd(job.id, join(w, 'out')),
            w,
            c.rt ? runtimeEnv(c.rt, c.env) : { ...cleanEnv, ...c.env },
          );
          await c.rt?.cache?.check();
          samples.get(c.id)!.push(s);
          if (c.id !== 'curl') {
            const got = await treeStats(join(w, 'out'));
            if (got.files !== info.files || got.bytes !== info.inflated) {
              throw new Error(
                `(${c.id}) unpacked ${got.files} files / ${got.bytes} bytes; the archive has ${info.files} / ${info.inflated}`,
              );
            }
          }
          console.log(`${shape} ${dir} round ${round} ${c.id.padEnd(11)} ${fmt(s.wall)} s  cpu ${fmt(s.cpu)} s  ${fmt(s.rssMB, 0)} MB`);
          await rm(w, { recursive: true, force: true });
        }
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    const base = samples.get(BASE);
    const baseWall = base?.length ? median(base.map((s) => s.wall)) : null;
    const baseCpu = base?.length ? median(base.map((s) => s.cpu)) : null;
    for (const c of contenders) {
      const s = samples.get(c.id)!;
      const wall = median(s.map((x) => x.wall));
      const cpu = median(s.map((x) => x.cpu));
      rows.push({
        shape,
        dir,
        id: c.id,
        label: c.label,
        wall,
        cpu,
        rssMB: Math.max(...s.map((x) => x.rssMB)),
        wallRatio: baseWall ? wall / baseWall : null,
        cpuRatio: baseCpu ? cpu / baseCpu : null,
        samples: s,
      });
    }
  }
}

/** Runs of each memory measurement: peak RSS varies by a few MB from run to run; the largest is the one reported. */
const MEMORY_RUNS = 3;
/** Storage paced per connection for the "while downloading" memory rows (MiB/s): the fetch widens and unpacks alongside. */
const MEMORY_PACED = 100;

/**
 * Peak RSS of artifact-relay fetches of a shape on `r` (memory targets), unpacked on tmpfs: the largest of MEMORY_RUNS,
 * and all of them. `paced`: storage limited to that many MiB/s per connection (the simulator's storageConnectionLimit),
 * so that the fetch unpacks while it downloads, as from real object storage, instead of finding the archive complete.
 */
async function peakRss(shape: string, r: Runtime, paced?: number): Promise<{ rss: number; runs: number[]; info: ArchiveInfo }> {
  const { zip, info } = await ensureArchive(shape);
  const job = sim.addJob({ pipelineId: pipeline.id, name: `mem-${shape}-${r.source}-${paced ?? 0}`, status: 'success', archive: zip });
  const w = join('/dev/shm', `artifact-relay-bench-mem-${process.pid}`);
  const runs: number[] = [];
  sim.storageConnectionLimit = paced ? paced * 1024 * 1024 : undefined;
  try {
    for (let i = 0; i < MEMORY_RUNS; i++) {
      await rm(w, { recursive: true, force: true });
      await mkdir(w, { recursive: true });
      const s = await timed(relay(r)(job.id, join(w, 'out')), w, runtimeEnv(r));
      await r.cache?.check();
      const got = await treeStats(join(w, 'out'));
      if (got.files !== info.files || got.bytes !== info.inflated)
        throw new Error(
          `(memory ${shape}) unpacked ${got.files} files / ${got.bytes} bytes; the archive has ${info.files} / ${info.inflated}`,
        );
      runs.push(s.rssMB);
      console.log(
        `memory ${shape}${paced ? ` (storage at ${paced} MiB/s a connection)` : ''} Node ${r.version}: ${info.entries} entries, ${mib(info.bytes)} MiB zip: ${fmt(s.rssMB, 0)} MB peak RSS, ${fmt(s.wall)} s`,
      );
    }
    return { rss: Math.max(...runs), runs, info };
  } finally {
    sim.storageConnectionLimit = undefined;
    await rm(w, { recursive: true, force: true });
  }
}

/** "97.1, 98.3, 96.0 MB in 3 runs" */
const runsNote = (runs: number[]) => `${runs.map((x) => fmt(x, 1)).join(', ')} MB in ${runs.length} runs`;

try {
  for (const shape of shapes) await runShape(shape);
  if (memory) {
    // The shipped runtime's rows are the targets; the host's node, when it is another one, as info rows.
    for (const r of hostRt ? [rt, hostRt] : [rt]) {
      const info = r !== rt;
      const on = info ? `, host Node ${r.version}` : '';
      for (const [shape, limit] of [
        ['many83k', 100],
        ['many300k', 150],
      ] as const) {
        for (const paced of [undefined, MEMORY_PACED]) {
          const m = await peakRss(shape, r, paced);
          const what = shape === 'many83k' ? `${m.info.entries} entries / ${mib(m.info.bytes)} MiB` : `${m.info.entries} entries`;
          const how = paced ? `, storage at ${paced} MiB/s a connection (unpacked while downloading)` : ', served at full speed';
          extra.push({ name: `peak RSS, ${what}${how}${on}`, value: m.rss, limit, unit: ' MB', note: runsNote(m.runs), info });
        }
      }
      // A tiny archive against Node's own baseline: node -e 0 of the same binary under the same flags.
      const tiny = join(cacheDir, 'shape-tiny.zip');
      if (!existsSync(`${tiny}.json`)) {
        await must([
          'python3',
          '-c',
          `import zipfile\nwith zipfile.ZipFile(${JSON.stringify(tiny)}, 'w') as z:\n  z.writestr('a.txt', 'hello')`,
        ]);
        await writeFile(`${tiny}.json`, JSON.stringify({ bytes: 0, entries: 1, files: 1, inflated: 5, composition: {} }));
      }
      const t = await peakRss('tiny', r);
      const w = join('/dev/shm', `artifact-relay-bench-node-${process.pid}`);
      await mkdir(w, { recursive: true });
      const nodeRuns: number[] = [];
      for (let i = 0; i < 3; i++) nodeRuns.push((await timed([...r.argv, '-e', '0'], w, runtimeEnv(r, {}, false))).rssMB);
      const nodeRss = median(nodeRuns);
      await rm(w, { recursive: true, force: true });
      extra.push({
        name: `peak RSS above node -e 0, tiny archive${on}`,
        value: t.rss - nodeRss,
        limit: 30,
        unit: ' MB',
        note: `${fmt(t.rss, 0)} MB vs ${fmt(nodeRss, 0)} MB (Node ${r.version})`,
        info,
      });
    }
    notes.push(
      `Memory rows: the largest peak RSS (GNU time %M) of ${MEMORY_RUNS} runs each, unpacked on tmpfs; "served at full speed": the simulator's storage on loopback (a few hundred MiB/s over one connection), unpacked alongside the download; "storage at ${MEMORY_PACED} MiB/s a connection": the storage paced per connection (storageConnectionLimit), the fetch widens to 4 connections and unpacks while it downloads, as from real object storage.`,
    );
  }
  if (startup) {
    const w = join('/dev/shm', `artifact-relay-bench-startup-${process.pid}`);
    await mkdir(w, { recursive: true });
    // On each runtime outside a container: the bundle with the runtime's compile cache, as the wrapper runs it.
    for (const r of hostRt ? [rt, hostRt] : [rt]) {
      const [n, v] = await alternate(
        [
          { cmd: [...r.argv, '-e', '0'], env: runtimeEnv(r, {}, false) },
          { cmd: [...r.argv, BUNDLE, '--version'], env: runtimeEnv(r) },
        ],
        STARTUP_ROUNDS,
        w,
      );
      await r.cache?.check();
      extra.push({
        name: `artifact-relay --version / node -e 0, Node ${r.version} (${r.source}${r.cache ? ', compile cache' : ''})`,
        value: v! / n!,
        limit: 1.5,
        unit: 'x',
        note: `${fmt(v, 0)} ms vs ${fmt(n, 0)} ms`,
        info: r !== rt,
      });
    }
    await rm(w, { recursive: true, force: true });
    extra.push({ name: 'artifact-relay --version / node -e 0, in the image', limit: 1.5, unit: 'x', ...(await imageStartup()) });
    notes.push(
      `Startup: ${STARTUP_ROUNDS} alternating runs each, medians of the wall time from spawn to exit; in the image, inside one container (its start not counted), as its default user. NODE_EXTRA_CA_CERTS unset outside the container (Node parses that CA bundle at every start, before any script).`,
    );
  }
} finally {
  await sim.close();
}

// Results.
const machine = machineLine(describe(rt));
const command = `npm run bench -- --shapes ${shapes.join(',')} --runs ${runsSpec}${only.length ? ` --only ${only.join(',')}` : ''} --dirs ${dirs.join(',')} --node ${nodeSpec}${memory ? ' --memory' : ''}${startup ? ' --startup' : ''}`;
const targets: { name: string; value: number | null; limit: number; unit: string; status: string; note?: string; info?: boolean }[] = [];
const get = (shape: string, dir: string, id: string) => rows.find((r) => r.shape === shape && r.dir === dir && r.id === id);
for (const shape of shapes) {
  for (const dir of dirs) {
    const ar = get(shape, dir, 'ar');
    const plain = get(shape, dir, 'ar-plain');
    if (ar?.wallRatio != null)
      targets.push({ name: `${shape}, ${dir}: wall vs curl + bsdtar`, value: ar.wallRatio, limit: 1.0, unit: 'x', status: '' });
    if (ar?.cpuRatio != null)
      targets.push({ name: `${shape}, ${dir}: CPU vs curl + bsdtar`, value: ar.cpuRatio, limit: 1.5, unit: 'x', status: '' });
    if (ar && plain)
      targets.push({ name: `${shape}, ${dir}: overlapped wall vs plain`, value: ar.wall / plain.wall, limit: 1.0, unit: 'x', status: '' });
  }
}
for (const e of extra) targets.push({ ...e, status: '' });
for (const t of targets) t.status = t.value == null ? 'n/a' : t.info ? 'info' : t.value <= t.limit ? 'PASS' : 'MISS';

const header = ['shape', 'dir', 'contender', 'wall s', 'CPU s', 'peak RSS MB', 'wall ratio', 'CPU ratio'];
const cells = rows.map((r) => [
  r.shape,
  r.dir,
  r.label,
  fmt(r.wall),
  fmt(r.cpu),
  fmt(r.rssMB, 0),
  r.wallRatio == null ? '-' : fmt(r.wallRatio),
  r.cpuRatio == null ? '-' : fmt(r.cpuRatio),
]);
const shapeLines = Object.entries(archives).map(
  ([s, a]) =>
    `${s}: ${mib(a.bytes)} MiB zip, ${a.entries} entries, ${mib(a.inflated)} MiB inflated (${Object.entries(a.composition)
      .map(([k, v]) => `${k} ${v.files} / ${mib(v.bytes)} MiB`)
      .join(', ')})`,
);
// Which node ran artifact-relay: first, and loudly when it is not the image's.
const runtimeNotes = [
  ...(rt.fallback ? [`WARNING: ${rt.fallback}.`] : []),
  `artifact-relay ran on ${nodeOf(rt)}, as the image's wrapper runs it: node ${rt.flags.join(' ')} with NODE_COMPILE_CACHE${rt.cache ? '' : ' (ignored by this Node)'}; ${rt.cacheNote}${rt.cache ? `; ${rt.cache.summary()}` : ''}. NODE_EXTRA_CA_CERTS unset, as in the image.`,
  ...(hostRt
    ? [
        `"host Node ${hostRt.version}" rows: the same on ${nodeOf(hostRt)}; ${hostRt.cacheNote}${hostRt.cache ? `; ${hostRt.cache.summary()}` : ''}. Info rows are not targets.`,
      ]
    : []),
];
notes.unshift(...runtimeNotes);
notes.push(
  `Medians of ${runsSpec.includes('=') ? `alternating rounds (${runsSpec}: the default, then per shape)` : `${runs} alternating rounds`} (every other round in reverse order); ratios are against curl + bsdtar in the same shape and folder. CPU is user+sys of the command and the children it waited for (curl included); peak RSS is of the largest single process (GNU time %M).`,
  'Warm cache (the page cache cannot be dropped here); the simulator runs in the bench process on 127.0.0.1 and is not counted.',
);
const targetLines = targets.map(
  (t) =>
    `${t.status} ${t.name}: ${t.value == null ? 'not measured' : `${fmt(t.value)}${t.unit}`} (limit ${t.limit}${t.unit})${t.note ? `, ${t.note}` : ''}`,
);
const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
const line = (c: string[]) => c.map((x, i) => (i < 3 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
console.log(`\n${header0.join('\n')}\nmachine: ${machine}\n${shapeLines.join('\n')}\n`);
console.log([line(header), ...cells.map(line)].join('\n'));
console.log(`\n${targetLines.join('\n')}\n${notes.map((n) => `note: ${n}`).join('\n')}`);
console.log(`total ${((performance.now() - started) / 1000).toFixed(0)} s`);

const md = [
  ...(rt.fallback ? [`**${rt.fallback}.**`, ''] : []),
  `Measured with \`${command}\` on ${machine}.`,
  'Archives (bench/gen-zip.py), served by the simulator in redirect mode (302 to its storage origin, which honours Range):',
  ...shapeLines.map((l) => `- ${l}`),
  '',
  `| ${header.join(' | ')} |`,
  `|${header.map((_, i) => (i < 3 ? ' --- ' : ' ---: ')).join('|')}|`,
  ...cells.map((c) => `| ${c.map((x) => x.replace(/\|/g, '\\|')).join(' | ')} |`),
  '',
  ...targetLines.map((t) => `- ${t}`),
  ...notes.map((n) => `- ${n}`),
].join('\n');
await mkdir(dirname(outJson), { recursive: true });
await writeFile(
  outJson,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      command,
      machine,
      runtime: runtimeJson(rt),
      hostRuntime: hostRt && runtimeJson(hostRt),
      archives,
      runs,
      rows,
      targets,
      notes,
    },
    null,
    2,
  )}\n`,
);
await writeFile(outMd, `${md}\n`);
console.log(`wrote ${outJson} and ${outMd}`);
if (writeReadme) await writeReadmeSection('BENCH', md);
