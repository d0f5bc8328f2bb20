// The parallel ranged download benchmark (issue 12): `npm run bench:ranged [-- options]`. Serves the 1 GiB `ranged`
// archive of bench/gen-zip.py (16 random 64 MiB entries, stored: the bytes on the wire are the point) from the
// simulator in redirect mode, its storage limiting every connection to --rate MiB/s as object storage does, and
// times, alternating in each round (the order reversed every other round), artifact-relay fetch over the default
// connections (the input connections, 4) against a fetch with connections: 1 (and, as `par0`, the fetch with
// ARTIFACT_RELAY_WIDEN=0: ranges from the start, as before adaptive connections), plus the download alone as a reference:
// artifact-relay's own download code into a file, nothing unpacked (bench/ranged-download.ts, parallel and one
// connection), and curl > /dev/null over one connection and over the same number of parallel ranges. Reports wall, the fetch's own
// download time (its "Downloaded ... in N s" line), CPU (user+sys, children included), the simulator's CPU (it serves
// in this process), peak RSS, the bytes storage sent, and the speed-up over one connection; each fetch's tree is
// checked complete (files and bytes) and its summary's sha256 against the archive's. --readme writes the table
// between the BENCH-RANGED markers of README.md.
//
// Options (each also as an env var BENCH_<NAME>):
//   --runs 3                 alternating rounds (medians are reported)
//   --rate 40                storage throughput per connection, MiB/s
//   --connections N          pass --connections N to the parallel fetch (default: not passed, the input's default 4)
//   --dirs disk,tmpfs        where the archive file and tree are written (disk: os.tmpdir(); tmpfs: /dev/shm)
//   --only one,par,par0,ar-dlN,ar-dl1,curl1,curlN
//   --node image             the node that runs artifact-relay, as in bench/run.ts (bench/runtime.ts): image (default),
//                            npm, host or a path; the fetches run as the image's wrapper does (its flags and a compile
//                            cache as the image's), the download-alone references through tsx on the same binary
//   --readme
//   --out bench-results/ranged.json
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startSimulator } from '../test/simulator/index.ts';
import {
  BUNDLE,
  cacheDir,
  cleanEnv,
  ensureArchive,
  fmt,
  list,
  machine,
  median,
  mib,
  repo,
  run,
  TOKEN,
  timed,
  treeStats,
  writeReadmeSection,
} from './lib.ts';
import { describe, nodeOf, resolveRuntime, runtimeEnv, runtimeHeader, runtimeJson } from './runtime.ts';

const started = performance.now();
const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string' },
    rate: { type: 'string' },
    connections: { type: 'string' },
    dirs: { type: 'string' },
    only: { type: 'string' },
    node: { type: 'string' },
    readme: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const env = process.env;
const runs = Number(flags.runs ?? env.BENCH_RUNS ?? 3);
const rateMiB = Number(flags.rate ?? env.BENCH_RATE ?? 40);
const connectionsFlag = flags.connections ?? env.BENCH_CONNECTIONS;
/** The input's default (component.yml, connections). */
const DEFAULT_CONNECTIONS = 4;
const connections = Number(connectionsFlag ?? DEFAULT_CONNECTIONS);
const dirs = list(flags.dirs ?? env.BENCH_DIRS, 'disk,tmpfs');
const only = list(flags.only ?? env.BENCH_ONLY, '');
const writeReadme = Boolean(flags.readme || env.BENCH_README);
const outJson = resolve(repo, flags.out ?? env.BENCH_OUT ?? 'bench-results/ranged.json');
const outMd = outJson.replace(/(\.json)?$/, '.md');
const workRoots: Record<string, string> = { disk: cacheDir, tmpfs: '/dev/shm' };
const nodeSpec = flags.node ?? env.BENCH_NODE ?? 'image';
const rt = await resolveRuntime(nodeSpec, env.BENCH_IMAGE || 'localhost/artifact-relay:test');
const header0 = runtimeHeader(rt, null);
console.log(header0.join('\n'));

const { zip, info } = await ensureArchive('ranged');
const archiveSha = await new Promise<string>((res, rej) => {
  const h = createHash('sha256');
  createReadStream(zip)
    .on('data', (d) => h.update(d))
    .on('end', () => res(h.digest('hex')))
    .on('error', rej);
});

const sim = await startSimulator({ downloadMode: 'redirect' });
sim.storageConnectionLimit = rateMiB * 1024 * 1024;
const project = sim.addProject({ path: 'bench/app' });
const pipeline = sim.addPipeline({ projectId: project.id, ref: 'main', status: 'success' });
const job = sim.addJob({ pipelineId: pipeline.id, name: 'build', status: 'success', archive: zip });
sim.addAccessToken(TOKEN, { kind: 'project', role: 'maintainer', scopes: ['api'] });
const url = `${sim.apiUrl}/projects/${project.id}/jobs/${job.id}/artifacts`;
const curl = `curl -sfL -H "PRIVATE-TOKEN: ${TOKEN}"`;

interface Contender {
  id: string;
  label: string;
  /** A fetch (its tree and summary are checked), else a download-only reference, run in the first folder only. */
  fetch: boolean;
  /** The download alone through artifact-relay's code: its log has the download time and the sha256 (checked). */
  logs?: boolean;
  cmd: (w: string) => string[];
  /** The environment: artifact-relay's runs get the runtime's (the fetches with its compile cache). */
  env?: NodeJS.ProcessEnv;
}
const fetchCmd = (args: string[]) => (w: string) => [
  ...rt.argv,
  BUNDLE,
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
  '--summary',
  join(w, 'summary.json'),
  ...args,
];
/** N curls, each one of N disjoint ranges of the archive, in parallel. */
const curlRanges = (n: number) => {
  const part = Math.ceil(info.bytes / n);
  const ranges = Array.from({ length: n }, (_, i) => `${i * part}-${Math.min(info.bytes, (i + 1) * part) - 1}`);
  return ['sh', '-c', `${ranges.map((r) => `${curl} -r ${r} '${url}' > /dev/null &`).join(' ')} wait`];
};
const all: Contender[] = [
  { id: 'one', label: 'fetch, connections: 1', fetch: true, cmd: fetchCmd(['--connections', '1']), env: runtimeEnv(rt) },
  {
    id: 'par',
    label: `fetch, connections: ${connections}${connectionsFlag ? '' : ' (default)'}`,
    fetch: true,
    cmd: fetchCmd(connectionsFlag ? ['--connections', String(connections)] : []),
    env: runtimeEnv(rt),
  },
  {
    id: 'par0',
    label: `fetch, connections: ${connections}, ARTIFACT_RELAY_WIDEN=0 (ranges from the start)`,
    fetch: true,
    cmd: fetchCmd(connectionsFlag ? ['--connections', String(connections)] : []),
    env: runtimeEnv(rt, { ARTIFACT_RELAY_WIDEN: '0' }),
  },
  ...[connections, 1].map(
    (n): Contender => ({
      id: `ar-dl${n === 1 ? '1' : 'N'}`,
      label: `download alone: artifact-relay's ${n === 1 ? 'one-connection' : `parallel (${n} connections)`} download to a file, through tsx`,
      fetch: false,
      logs: true,
      // The same node binary and flags; no compile cache (tsx's loader compiles the TypeScript in each run).
      env: runtimeEnv(rt, {}, false),
      cmd: (w) => [
        ...rt.argv,
        '--import',
        import.meta.resolve('tsx'), // the command runs in its work folder
        join(repo, 'bench/ranged-download.ts'),
        sim.apiUrl,
        TOKEN,
        `/projects/${project.id}/jobs/${job.id}/artifacts`,
        join(w, 'a.zip'),
        String(n),
      ],
    }),
  ),
  { id: 'curl1', label: 'download alone: curl > /dev/null', fetch: false, cmd: () => ['sh', '-c', `${curl} '${url}' > /dev/null`] },
  { id: 'curlN', label: `download alone: ${connections} curl ranges > /dev/null`, fetch: false, cmd: () => curlRanges(connections) },
];
const contenders = all.filter((c) => only.length === 0 || only.includes(c.id));

interface RangedSample {
  wall: number;
  cpu: number;
  rssMB: number;
  /** The fetch's download, from its log ("Downloaded ... in N s"); for curl, the wall time. */
  download: number;
  /** CPU of the bench process (the simulator serving) while the command ran. */
  simCpu: number;
  storageBytes: number;
  storageGets: number;
  maxInFlight: number;
  load: number;
}
interface Row {
  dir: string;
  id: string;
  label: string;
  wall: number;
  download: number;
  cpu: number;
  simCpu: number;
  rssMB: number;
  storageMiB: number;
  storageGets: number;
  maxInFlight: number;
  speedUp: number | null;
  downloadSpeedUp: number | null;
  samples: RangedSample[];
}
const rows: Row[] = [];
const loads: number[] = [];

console.log(
  `ranged: ${mib(info.bytes)} MiB zip, ${info.entries} entries (stored), storage at ${rateMiB} MiB/s per connection; ${runs} round(s), ${dirs.join(' and ')}`,
);
try {
  for (const [d, dir] of dirs.entries()) {
    const work = join(workRoots[dir]!, `artifact-relay-bench-ranged-${process.pid}`);
    const here = contenders.filter((c) => c.fetch || d === 0);
    const samples = new Map<string, RangedSample[]>(here.map((c) => [c.id, []]));
    try {
      for (let round = 1; round <= runs; round++) {
        for (const c of round % 2 ? here : [...here].reverse()) {
          const w = join(work, c.id);
          await rm(w, { recursive: true, force: true });
          await mkdir(w, { recursive: true });
          await run(['sync']);
          const from = sim.requests.length;
          sim.storageMaxInFlight = 0;
          const load = os.loadavg()[0]!;
          const cpu0 = process.cpuUsage();
          const s = await timed(c.cmd(w), w, c.env ?? cleanEnv);
          if (c.fetch) await rt.cache?.check();
          const simCpu = process.cpuUsage(cpu0);
          const storage = sim.requests.slice(from).filter((q) => q.origin === 'storage' && q.method === 'GET');
          const logged = / in ([\d.]+) s \(/.exec(s.output.split('\n').find((l) => l.includes('Downloaded')) ?? '');
          const sample: RangedSample = {
            wall: s.wall,
            cpu: s.cpu,
            rssMB: s.rssMB,
            download: c.fetch || c.logs ? Number(logged?.[1] ?? Number.NaN) : s.wall,
            simCpu: (simCpu.user + simCpu.system) / 1e6,
            storageBytes: storage.reduce((n, q) => n + (q.bytesSent ?? 0), 0),
            storageGets: storage.length,
            maxInFlight: sim.storageMaxInFlight,
            load,
          };
          loads.push(load);
          if (c.fetch) {
            const got = await treeStats(join(w, 'out'));
            if (got.files !== info.files || got.bytes !== info.inflated)
              throw new Error(
                `(${c.id}) unpacked ${got.files} files / ${got.bytes} bytes; the archive has ${info.files} / ${info.inflated}`,
              );
            const summary = JSON.parse(await readFile(join(w, 'summary.json'), 'utf8'));
            const source = summary.sources?.[0];
            if (source?.sha256 !== archiveSha || source?.archive_bytes !== info.bytes)
              throw new Error(
                `(${c.id}) summary: sha256 ${source?.sha256}, ${source?.archive_bytes} bytes; the archive: ${archiveSha}, ${info.bytes}`,
              );
          }
          if (c.logs && !s.output.includes(`sha256 ${archiveSha}`))
            throw new Error(`(${c.id}) the download's sha256 is not the archive's:\n${s.output.slice(-2000)}`);
          samples.get(c.id)!.push(sample);
          console.log(
            `${dir} round ${round} ${c.id.padEnd(5)} ${fmt(s.wall)} s (download ${fmt(sample.download)} s)  cpu ${fmt(s.cpu)} s  sim cpu ${fmt(sample.simCpu)} s  ${fmt(s.rssMB, 0)} MB  ${mib(sample.storageBytes)} MiB in ${sample.storageGets} GETs, ${sample.maxInFlight} at once  load ${fmt(load)}`,
          );
          await rm(w, { recursive: true, force: true });
        }
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    const one = samples.get('one');
    const oneWall = one?.length ? median(one.map((x) => x.wall)) : null;
    const oneDownload = one?.length ? median(one.map((x) => x.download)) : null;
    for (const c of here) {
      const s = samples.get(c.id)!;
      const wall = median(s.map((x) => x.wall));
      const download = median(s.map((x) => x.download));
      rows.push({
        dir,
        id: c.id,
        label: c.label,
        wall,
        download,
        cpu: median(s.map((x) => x.cpu)),
        simCpu: median(s.map((x) => x.simCpu)),
        rssMB: Math.max(...s.map((x) => x.rssMB)),
        storageMiB: median(s.map((x) => x.storageBytes)) / 1024 / 1024,
        storageGets: median(s.map((x) => x.storageGets)),
        maxInFlight: Math.max(...s.map((x) => x.maxInFlight)),
        speedUp: oneWall ? oneWall / wall : null,
        downloadSpeedUp: oneDownload ? oneDownload / download : null,
        samples: s,
      });
    }
  }
} finally {
  await sim.close();
}

// Results.
const command = `npm run bench:ranged -- --runs ${runs} --rate ${rateMiB}${connectionsFlag ? ` --connections ${connections}` : ''} --dirs ${dirs.join(',')}${only.length ? ` --only ${only.join(',')}` : ''} --node ${nodeSpec}`;
const header = [
  'dir',
  'contender',
  'wall s',
  'download s',
  'CPU s',
  'simulator CPU s',
  'peak RSS MB',
  'MiB from storage',
  'GETs',
  'at once',
  'speed-up (wall)',
  'speed-up (download)',
];
const ratio = (x: number | null) => (x == null ? '-' : `${fmt(x)}x`);
const cells = rows.map((r) => [
  r.dir,
  r.label,
  fmt(r.wall),
  fmt(r.download),
  fmt(r.cpu),
  fmt(r.simCpu),
  fmt(r.rssMB, 0),
  fmt(r.storageMiB, 0),
  String(r.storageGets),
  String(r.maxInFlight),
  ratio(r.speedUp),
  ratio(r.downloadSpeedUp),
]);
const targets: string[] = [];
for (const dir of dirs) {
  const par = rows.find((r) => r.dir === dir && r.id === 'par');
  if (par?.speedUp != null)
    targets.push(`${par.speedUp >= 3 ? 'PASS' : 'MISS'} ${dir}: ${connections} connections vs 1, wall: ${fmt(par.speedUp)}x (at least 3x)`);
  for (const r of rows.filter((x) => x.dir === dir && (x.id === 'one' || x.id === 'par')))
    targets.push(`${r.rssMB <= 128 ? 'PASS' : 'MISS'} ${dir}: peak RSS, ${r.label}: ${fmt(r.rssMB, 0)} MB (at most 128 MB)`);
}
const transfer = info.bytes / (rateMiB * 1024 * 1024);
const notes = [
  ...(rt.fallback ? [`WARNING: ${rt.fallback}.`] : []),
  `artifact-relay ran on ${nodeOf(rt)}: the fetches as the image's wrapper runs them, node ${rt.flags.join(' ')} with NODE_COMPILE_CACHE${rt.cache ? '' : ' (ignored by this Node)'}; ${rt.cacheNote}${rt.cache ? `; ${rt.cache.summary()}` : ''}; the download-alone references on the same binary and flags, without the cache. NODE_EXTRA_CA_CERTS unset, as in the image.`,
  `The transfer alone at ${rateMiB} MiB/s per connection: ${fmt(transfer, 1)} s over one connection, ${fmt(transfer / connections, 1)} s over ${connections}.`,
  `Medians of ${runs} alternating rounds (every other round in reverse order); speed-ups are against the fetch with connections: 1 in the same folder. CPU is user+sys of the command and the children it waited for; peak RSS is of the largest single process (GNU time %M). The download-alone references run in the first folder only; artifact-relay's runs through tsx, whose start-up (compiling the TypeScript) is in its wall, CPU and RSS but not in its download s.`,
  `Each fetch's tree was checked complete (${info.files} files, ${info.inflated} bytes) and its summary's sha256 equal to the archive's. "download s" is the fetch's own "Downloaded ... in N s" (from the first range to the last byte written, unpacking alongside); "at once" is the most storage requests answered at the same time.`,
  `The simulator serves in the bench process on 127.0.0.1 (its CPU is the simulator column, not counted in CPU s). 1-minute load average at the start of each run: ${fmt(Math.min(...loads))} to ${fmt(Math.max(...loads))} (2 cores shared with other sessions).`,
];
const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
const line = (c: string[]) => c.map((x, i) => (i < 2 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
const archiveLine = `ranged: ${mib(info.bytes)} MiB zip, ${info.entries} entries of 64 MiB of random bytes, stored (bench/gen-zip.py ranged), storage limited to ${rateMiB} MiB/s per connection`;
console.log(`\n${header0.join('\n')}\nmachine: ${machine(describe(rt))}\n${archiveLine}\n`);
console.log([line(header), ...cells.map(line)].join('\n'));
console.log(`\n${targets.join('\n')}\n${notes.map((n) => `note: ${n}`).join('\n')}`);
console.log(`total ${((performance.now() - started) / 1000).toFixed(0)} s`);

const md = [
  ...(rt.fallback ? [`**${rt.fallback}.**`, ''] : []),
  `Measured with \`${command}\` on ${machine(describe(rt))}.`,
  `Archive: ${archiveLine}; served by the simulator in redirect mode (302 to its storage origin, which honours Range).`,
  '',
  `| ${header.join(' | ')} |`,
  `|${header.map((_, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`,
  ...cells.map((c) => `| ${c.map((x) => x.replace(/\|/g, '\\|')).join(' | ')} |`),
  '',
  ...targets.map((t) => `- ${t}`),
  ...notes.map((n) => `- ${n}`),
].join('\n');
await mkdir(dirname(outJson), { recursive: true });
await writeFile(
  outJson,
  `${JSON.stringify({ date: new Date().toISOString(), command, machine: machine(describe(rt)), runtime: runtimeJson(rt), archive: info, rateMiB, connections, runs, rows, targets, notes }, null, 2)}\n`,
);
await writeFile(outMd, `${md}\n`);
console.log(`wrote ${outJson} and ${outMd}`);
if (writeReadme) await writeReadmeSection('BENCH-RANGED', md);
