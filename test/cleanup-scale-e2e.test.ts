// Cleanup at scale end to end: shards on GitLab's parallel jobs (4 shards against one simulator equal one job),
// instance scope with an administrator's token, the storage report (its totals are the bytes deleted), projects
// skipped by their statistics, the adaptive pace under 429s, and an interrupted run started again.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { Job, Project, Simulator } from './simulator/index.ts';
import { BUNDLE, runBundle } from './helpers/run.ts';
import { JOB_TOKEN, PRIVATE_TOKEN, useWorld, type World } from './helpers/world.ts';

const DAY = 86_400_000;
const ADMIN_TOKEN = 'glpat-e2eAdministratorToken0123456789';
const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const ago = (days: number) => new Date(Date.now() - days * DAY - 3_600_000).toISOString();
const POLICY = ['--older-than', '10d', '--keep-latest', '1', '--keep-refs', 'release/*'];

interface Fleet {
  projects: Project[];
  /** Projects without any job: their statistics say 0 bytes, so they are never listed. */
  empty: Project[];
  expected: Set<number>;
}

/** `count` projects in group `groupPath`, each with old (deleted) and kept jobs, plus two empty projects. */
function buildFleet(world: World, groupPath: string, count: number): Fleet {
  const { sim } = world;
  const group = sim.addGroup({ path: groupPath });
  const archive = world.zip(`${groupPath}.zip`, [{ name: 'out.txt', data: `${'x'.repeat(2000)}\n` }]);
  const expected = new Set<number>();
  const projects: Project[] = [];
  for (let i = 0; i < count; i++) {
    const project = sim.addProject({ path: `svc-${i}`, groupId: group.id });
    projects.push(project);
    for (const day of [25, 18, 12, 1]) {
      const p = sim.addPipeline({ projectId: project.id, ref: 'main', status: 'success' });
      const j = sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive, finishedAt: ago(day) });
      if (day >= 10) expected.add(j.id);
    }
    const rel = sim.addPipeline({ projectId: project.id, ref: 'release/1.x', status: 'success' });
    sim.addJob({ pipelineId: rel.id, name: 'build', status: 'success', archive, finishedAt: ago(40) });
  }
  const empty = [sim.addProject({ path: 'empty-a', groupId: group.id }), sim.addProject({ path: 'empty-b', groupId: group.id })];
  return { projects, empty, expected };
}

const erasable = (sim: Simulator, id: number) => {
  const job = sim.jobs().find((j) => j.id === id) as Job;
  return (job.archive?.size ?? 0) + 180 + job.extraArtifacts.reduce((n, e) => n + e.size, 0);
};
const deletedIds = (report: { projects: { deleted: number[] }[] }) => report.projects.flatMap((p) => p.deleted);

describe('cleanup shards on parallel jobs', () => {
  const world = useWorld();
  let fleet: Fleet;
  before(() => {
    fleet = buildFleet(world, 'fleet', 24);
  });

  test('4 shards (CI_NODE_INDEX/CI_NODE_TOTAL) together delete exactly what one job would, each project once', async () => {
    const single = await runBundle(
      ['cleanup', '--group', 'fleet', ...POLICY, '--dry-run', '--report', 'single.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(single.status, 0, single.output);
    const one = readJson(join(world.workspace, 'single.json'));
    assert.deepEqual(new Set(deletedIds(one)), fleet.expected, 'the single job selects the policy set');

    const seen = new Map<string, number>();
    for (let index = 1; index <= 4; index++) {
      const r = await runBundle(
        ['cleanup', '--group', 'fleet', ...POLICY, '--report', `shard-${index}.json`],
        world.env({ INPUT_TOKEN: PRIVATE_TOKEN, CI_NODE_INDEX: String(index), CI_NODE_TOTAL: '4' }),
      );
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, new RegExp(`shard ${index}/4`));
      const shard = readJson(join(world.workspace, `shard-${index}.json`));
      assert.deepEqual(shard.shard, { index, total: 4 });
      assert.ok(shard.projects.length > 0 && shard.projects.length < 26, `shard ${index} takes a share`);
      for (const p of shard.projects) seen.set(p.path, (seen.get(p.path) ?? 0) + 1);
    }
    assert.deepEqual(
      [...seen.entries()].filter(([, n]) => n !== 1),
      [],
      'every project in exactly one shard',
    );
    assert.deepEqual(new Set(seen.keys()), new Set(one.projects.map((p: { path: string }) => p.path)));
    assert.deepEqual(new Set(world.sim.deletedArtifacts), new Set(deletedIds(one)), 'the union of the shards is the single job');
    assert.equal(world.sim.deletedArtifacts.length, fleet.expected.size, 'nothing deleted twice');
  });

  test('a shard outside 1..total is refused with exit 2', async () => {
    const r = await runBundle(['cleanup', '--group', 'fleet', ...POLICY, '--shard', '5/4'], world.env({ INPUT_TOKEN: PRIVATE_TOKEN }));
    assert.equal(r.status, 2, r.output);
    assert.match(r.output, /Input shard/);
  });
});

describe('cleanup storage report and pace', () => {
  const world = useWorld();
  let fleet: Fleet;
  before(() => {
    fleet = buildFleet(world, 'store', 6);
  });

  test("dry run writes the storage report; the real run's report totals are the bytes deleted", async () => {
    const expectedBytes = [...fleet.expected].reduce((n, id) => n + erasable(world.sim, id), 0);
    world.sim.requests.length = 0;
    const dry = await runBundle(
      ['cleanup', '--group', 'store', ...POLICY, '--dry-run', '--report', 'dry.json', '--storage-report', 'dry.md'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(dry.status, 0, dry.output);
    const dryReport = readJson(join(world.workspace, 'dry.json'));
    assert.equal(dryReport.storage.totals.deleted_bytes, expectedBytes);
    assert.deepEqual(
      dryReport.storage.reasons.map((r: { reason: string }) => r.reason),
      ['would delete (dry run)', 'keep_refs', 'newer than older_than'],
      'largest first',
    );
    for (const p of fleet.empty) {
      const row = dryReport.projects.find((x: { path: string }) => x.path === p.path);
      assert.equal(row.skipped, 'no artifacts (project statistics)');
      assert.ok(!world.sim.requests.some((q) => q.path.startsWith(`/api/v4/projects/${p.id}/jobs`)), `${p.path} is never listed`);
    }
    const md = readFileSync(join(world.workspace, 'dry.md'), 'utf8');
    assert.match(md, /^### artifact-relay cleanup: storage \(dry run\)/);
    assert.match(md, /\| Project \| Artifacts \(statistics\) \| Would delete \| Kept \|/);
    assert.match(md, /\| store\/svc-0 \|/);
    assert.match(dry.output, /Storage: would free/);

    const real = await runBundle(
      ['cleanup', '--group', 'store', ...POLICY, '--report', 'real.json', '--storage-report', 'real.md'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(real.status, 0, real.output);
    const report = readJson(join(world.workspace, 'real.json'));
    const deletedBytes = expectedBytes; // measured before the deletion, from the simulator's own archives
    assert.deepEqual(new Set(world.sim.deletedArtifacts), fleet.expected);
    assert.equal(report.storage.totals.deleted_bytes, report.totals.bytes);
    assert.equal(report.storage.totals.deleted_bytes, deletedBytes);
    assert.equal(
      report.storage.projects.reduce((n: number, p: { deleted_bytes: number }) => n + p.deleted_bytes, 0),
      deletedBytes,
    );
    assert.equal(report.storage.reasons.find((r: { reason: string }) => r.reason === 'deleted').bytes, deletedBytes);
    assert.match(readFileSync(join(world.workspace, 'real.md'), 'utf8'), /Freed \*\*/);
  });

  test('429s halve the deletions in flight; an interrupted run started again finishes the job exactly', async () => {
    const more = buildFleet(world, 'pace', 3);
    world.sim.injectFault({ origin: 'gitlab', method: 'DELETE', kind: 'status', status: 429, retryAfter: 0, times: 3 });
    // The run is killed once the simulator has answered its 7th DELETE (3 of them answered 429): counted requests, not time.
    let child: ReturnType<typeof spawn> | undefined;
    world.sim.afterRequests({ method: 'DELETE', path: '/api/v4/projects/' }, 7, () => child?.kill('SIGKILL'));
    const before = world.sim.deletedArtifacts.length;
    const env = world.env({ INPUT_TOKEN: PRIVATE_TOKEN, INPUT_RETRIES: '5', INPUT_CONCURRENCY: '4' });
    const first = await new Promise<{ status: number | null; output: string }>((resolve) => {
      child = spawn(process.execPath, [BUNDLE, 'cleanup', '--group', 'pace', ...POLICY, '--report', 'killed.json'], { env });
      let output = '';
      child.stdout?.on('data', (d) => {
        output += d;
      });
      child.stderr?.on('data', (d) => {
        output += d;
      });
      child.on('close', (status) => resolve({ status, output }));
    });
    world.sim.clearFaults();
    assert.notEqual(first.status, 0, 'killed halfway');
    assert.match(first.output, /Pace: 4 -> 2 deletion\(s\) in flight \(rate limited\)/);
    const firstDeleted = world.sim.deletedArtifacts.slice(before);
    assert.ok(firstDeleted.length > 0 && firstDeleted.length < more.expected.size, `halfway: ${firstDeleted.length}`);
    assert.ok(!existsSync(join(world.workspace, 'killed.json')), 'no report from a killed run');

    const again = await runBundle(['cleanup', '--group', 'pace', ...POLICY, '--report', 'again.json'], env);
    assert.equal(again.status, 0, again.output);
    const report = readJson(join(world.workspace, 'again.json'));
    const secondDeleted = deletedIds(report);
    assert.deepEqual(
      report.projects.flatMap((p: { failed: unknown[] }) => p.failed),
      [],
    );
    assert.equal(firstDeleted.filter((id) => secondDeleted.includes(id)).length, 0, 'the second run does not redo the first');
    assert.deepEqual(new Set([...firstDeleted, ...secondDeleted]), more.expected);
    assert.deepEqual(new Set(world.sim.deletedArtifacts.slice(before)), more.expected);
  });
});

describe('cleanup instance scope', () => {
  const world = useWorld();
  before(() => {
    world.sim.addAccessToken(ADMIN_TOKEN, { kind: 'personal', role: 'owner', scopes: ['api'], admin: true });
  });

  test("an administrator's token cleans every project of the instance, in and outside groups", async () => {
    const fleet = buildFleet(world, 'org-a', 2);
    const other = buildFleet(world, 'org-b', 2);
    const personal = world.sim.addProject({ path: 'alice/tool' });
    const p = world.sim.addPipeline({ projectId: personal.id, ref: 'x', status: 'failed' });
    const personalJob = world.sim.addJob({ pipelineId: p.id, name: 'b', status: 'success', archive: world.archive, finishedAt: ago(30) });
    const dry = await runBundle(
      ['cleanup', '--instance', 'true', ...POLICY, '--dry-run', '--report', 'instance-dry.json'],
      world.env({ INPUT_TOKEN: ADMIN_TOKEN }),
    );
    assert.equal(dry.status, 0, dry.output);
    assert.equal(world.sim.requests.filter((q) => q.method === 'DELETE').length, 0);
    const report = readJson(join(world.workspace, 'instance-dry.json'));
    const paths = report.projects.map((x: { path: string }) => x.path);
    for (const path of ['grp/app', 'grp/deploy', 'alice/tool', 'org-a/svc-0', 'org-b/svc-1', 'org-b/empty-a'])
      assert.ok(paths.includes(path), path);
    assert.match(dry.output, /Instance scope: \d+ project\(s\) listed/);

    const real = await runBundle(
      ['cleanup', '--instance', 'true', '--exclude-project', 'grp/*', ...POLICY, '--report', 'instance.json'],
      world.env({ INPUT_TOKEN: ADMIN_TOKEN }),
    );
    assert.equal(real.status, 0, real.output);
    assert.deepEqual(new Set(world.sim.deletedArtifacts), new Set([...fleet.expected, ...other.expected, personalJob.id]));
  });

  const refusals: [string, string[], Record<string, string>, number, RegExp][] = [
    [
      'a token that is not an administrator',
      ['--instance', 'true', '--older-than', '30d'],
      { INPUT_TOKEN: PRIVATE_TOKEN },
      1,
      /not an administrator/,
    ],
    ['a job token, before any request', ['--instance', 'true', '--older-than', '30d'], { INPUT_TOKEN: JOB_TOKEN }, 2, /job token/],
    ['no older_than', ['--instance', 'true'], { INPUT_TOKEN: ADMIN_TOKEN }, 2, /older_than.*refusing/s],
    [
      'instance with group',
      ['--instance', 'true', '--group', 'org-a', '--older-than', '30d'],
      { INPUT_TOKEN: ADMIN_TOKEN },
      2,
      /cannot be combined with group/,
    ],
  ];
  for (const [label, args, env, code, expected] of refusals) {
    test(`instance scope refuses: ${label}`, async () => {
      world.sim.requests.length = 0;
      const r = await runBundle(['cleanup', ...args], world.env(env));
      assert.equal(r.status, code, r.output);
      assert.match(r.output, expected);
      assert.equal(world.sim.requests.filter((q) => q.method === 'DELETE').length, 0);
      if (code === 2) assert.equal(world.sim.requests.length, 0, 'refused before any request');
    });
  }
});
