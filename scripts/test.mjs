// Runs test/**/*.test.ts with node's test runner (TypeScript through tsx), by tier:
//   unit   the code under test runs in the test process (fixture tools such as python3, zip, go and the reference
//          unzip may run as helpers); no bundle, no podman
//   e2e    *-e2e.test.ts: child processes: dist/artifact-relay.mjs against the simulator (build first), the commit
//          under real signals
//   image  the container image (podman) and the templates through gitlab-ci-local (build first)
// Usage: node scripts/test.mjs [--tier unit|e2e|image]... [file substring...] [-- node --test options]
//   no --tier: all three, in one runner so the tiers share the two workers.
import { readdirSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const IMAGE = ['test/image.test.ts', 'test/gitlab-ci-local.test.ts'];
const tierOf = (file) => (IMAGE.includes(file) ? 'image' : file.endsWith('-e2e.test.ts') ? 'e2e' : 'unit');
// Long files first, so the last minute is not one slow file running alone.
const ORDER = { image: 0, e2e: 1, unit: 2 };
// Within the unit tier, the files that write the largest trees go first for the same reason.
const LONG_UNIT = ['test/extract-zip64.test.ts', 'test/extract.test.ts', 'test/archive-bounds.test.ts'];
const rank = (file) => (LONG_UNIT.includes(file) ? LONG_UNIT.indexOf(file) : LONG_UNIT.length);

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
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...passThrough, ...files], {
  stdio: 'inherit',
  env,
});
process.exit(r.status ?? 1);
