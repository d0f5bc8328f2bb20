// Runs test/**/*.test.ts with node's test runner (TypeScript through tsx), by tier:
//   unit   the code under test runs in the test process (fixture tools such as python3, zip, go and the reference
//          unzip may run as helpers); no bundle, no podman
//   e2e    *-e2e.test.ts: child processes: dist/artifact-relay.mjs against the simulator (build first), the commit
//          under real signals
//   image  the container image (podman) and the templates through gitlab-ci-local (build first)
// Usage: node scripts/test.mjs [--tier unit|e2e|image]... [file substring...] [-- node --test options]
//   no --tier: all three, in one runner so the tiers share the two workers.
// A whole unit tier runs in two processes, not one a file: each test process pays about 0.6 s of CPU for tsx's loader,
// which was a fifth of the tier. A file named on the command line runs in a process of its own.
import { mkdtempSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';

const IMAGE = ['test/image.test.ts', 'test/gitlab-ci-local.test.ts'];
const tierOf = (file) => (IMAGE.includes(file) ? 'image' : file.endsWith('-e2e.test.ts') ? 'e2e' : 'unit');
// Long files first, so the last minute is not one slow file running alone.
const ORDER = { image: 0, e2e: 1, unit: 2 };
// Within the unit tier, the files that write the largest trees go first for the same reason.
const LONG_UNIT = ['test/extract-zip64.test.ts', 'test/extract.test.ts', 'test/archive-bounds.test.ts'];
const rank = (file) => (LONG_UNIT.includes(file) ? LONG_UNIT.indexOf(file) : LONG_UNIT.length);
// CPU seconds a unit file takes on this project's 2-core machine, to balance the two unit processes; 1 if not listed.
const UNIT_CPU = {
  'test/extract.test.ts': 16,
  'test/extract-zip64.test.ts': 12,
  'test/archive-bounds.test.ts': 5,
  'test/templates.test.ts': 4,
  'test/api-client.test.ts': 6, // waits on retry delays as well
  'test/simulator.test.ts': 2.5,
};
const GROUPS = 2;

function collect(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === 'fixtures' ? [] : collect(p);
    return p.endsWith('.test.ts') ? [p] : [];
  });
}

const args = process.argv.slice(2);
const dash = args.indexOf('--');
const own = dash < 0 ? args : args.slice(0, dash);
const passThrough = dash < 0 ? [] : args.slice(dash + 1);
const tiers = [];
const filters = [];
for (let i = 0; i < own.length; i++) {
  if (own[i] === '--tier') tiers.push(own[++i]);
  else filters.push(own[i]);
}
for (const t of tiers) {
  if (!(t in ORDER)) {
    console.error(`unknown tier ${t}: use unit, e2e or image`);
    process.exit(2);
  }
}
const files = collect('test')
  .filter((f) => tiers.length === 0 || tiers.includes(tierOf(f)))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort((a, b) => ORDER[tierOf(a)] - ORDER[tierOf(b)] || rank(a) - rank(b) || a.localeCompare(b));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// Longest first, each into the lighter group. The tests of one file keep their order; root hooks (before, after) of
// every file in a group run before its first and after its last test.
function groupUnitFiles(unit) {
  const groups = Array.from({ length: GROUPS }, () => ({ cpu: 0, files: [] }));
  for (const f of [...unit].sort((a, b) => (UNIT_CPU[b] ?? 1) - (UNIT_CPU[a] ?? 1))) {
    const g = groups.reduce((a, b) => (b.cpu < a.cpu ? b : a));
    g.cpu += UNIT_CPU[f] ?? 1;
    g.files.push(f);
  }
  const dir = mkdtempSync(join(tmpdir(), 'artifact-relay-unit-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return groups.map((g, i) => {
    const entry = join(dir, `unit-${i + 1}-of-${GROUPS}.mjs`);
    writeFileSync(entry, g.files.map((f) => `import ${JSON.stringify(pathToFileURL(resolve(f)).href)};\n`).join(''));
    return entry;
  });
}
const unit = files.filter((f) => tierOf(f) === 'unit');
const runFiles =
  unit.length > GROUPS && filters.length === 0 ? [...files.filter((f) => tierOf(f) !== 'unit'), ...groupUnitFiles(unit)] : files;

// The tests write and delete a few hundred thousand small files (the zip64 case alone 70,000 per tree); on a disk
// mounted with discard every unlink waits for the device. A roomy tmpfs takes them instead, unless TMPDIR is set.
const env = { ...process.env };
if (!env.TMPDIR) {
  try {
    const shm = statfsSync('/dev/shm');
    if (shm.bavail * shm.bsize > 4 * 2 ** 30) env.TMPDIR = '/dev/shm';
  } catch {
    // no /dev/shm: the default temporary folder
  }
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...passThrough, ...runFiles], {
  stdio: 'inherit',
  env,
});
process.exit(r.status ?? 1);
