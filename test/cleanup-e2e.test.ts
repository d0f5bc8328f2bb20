// Scheduled cleanup end to end: the bundle runs against the simulator with a project of several refs, tags,
// ages, retried jobs, jobs without artifacts and a few thousand jobs; the deleted set must be exactly the
// one the policy describes, built here job by job with the reason each one goes or stays.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { Job, Project, Simulator } from './simulator/index.ts';
import { runBundle } from './helpers/run.ts';
import { JOB_TOKEN, PRIVATE_TOKEN, useWorld, type World } from './helpers/world.ts';
import { PROFILE_NAMES } from './simulator/index.ts';

const DAY = 86_400_000;
const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const ago = (days: number) => new Date(Date.now() - days * DAY - 3_600_000).toISOString();
const erasable = (sim: Simulator, id: number) => {
  const job = sim.jobs().find((j) => j.id === id) as Job;
  return (job.archive?.size ?? 0) + 180 + job.extraArtifacts.reduce((n, e) => n + e.size, 0);
};

interface Scenario {
  project: Project;
  expectedDeleted: Set<number>;
  expectedBytes: number;
  kept: number;
}

/** Builds the project; every job with an archive is recorded as deleted or kept, per the policy of the tests below. */
function buildScenario(world: World, path: string, groupId?: number): Scenario {
  const { sim } = world;
  const project = sim.addProject({ path, groupId });
  const archive = world.archive;
  const expectedDeleted = new Set<number>();
  let kept = 0;
  const job = (
    pipelineId: number,
    name: string,
    days: number,
    deleted: boolean,
    extra: Partial<Parameters<Simulator['addJob']>[0]> = {},
  ) => {
    const j = sim.addJob({ pipelineId, name, status: 'success', archive, finishedAt: ago(days), ...extra });
    if (deleted) expectedDeleted.add(j.id);
    else kept++;
    return j;
  };
  // main: 30 pipelines, one a day. older_than 10d deletes days >= 10; keep_latest 1 keeps the newest (day 0).
  for (let day = 29; day >= 0; day--) {
    const status = day === 20 ? 'failed' : 'success';
    const p = sim.addPipeline({ projectId: project.id, ref: 'main', status });
    job(p.id, 'build', day, day >= 10);
    job(p.id, 'test', day, day >= 10);
    sim.addJob({ pipelineId: p.id, name: 'lint', status: 'success', finishedAt: ago(day) }); // no artifacts: not a candidate
    if (day === 15) job(p.id, 'build', day, true, { retried: true });
    if (day === 20) job(p.id, 'keep-me please', day, false); // exclude_job
    if (day === 25)
      for (let i = 0; i < 2000; i++) sim.addJob({ pipelineId: p.id, name: `shard ${i}`, status: 'success', finishedAt: ago(day) });
  }
  // feature/x: the newest *successful* pipeline of the ref stays although it is old; older ones and failed ones go.
  const f1 = sim.addPipeline({ projectId: project.id, ref: 'feature/x', status: 'success' });
  job(f1.id, 'build', 25, true);
  const f0 = sim.addPipeline({ projectId: project.id, ref: 'feature/x', status: 'success' });
  job(f0.id, 'build', 15, false);
  const f2 = sim.addPipeline({ projectId: project.id, ref: 'feature/x', status: 'failed' });
  job(f2.id, 'build', 12, true, { status: 'failed' });
  // Tags stay (keep_tags), release/* stays (keep_refs), even when old.
  const tag = sim.addPipeline({ projectId: project.id, ref: 'v1.0.0', status: 'success', tag: true });
  job(tag.id, 'build', 40, false);
  const rel = sim.addPipeline({ projectId: project.id, ref: 'release/1.x', status: 'success' });
  job(rel.id, 'build', 40, false);
  const expectedBytes = [...expectedDeleted].reduce((n, id) => n + erasable(sim, id), 0);
  return { project, expectedDeleted, expectedBytes, kept };
}

const POLICY = ['--older-than', '10d', '--keep-latest', '1', '--keep-refs', 'release/*', '--exclude-job', 'keep-me*'];

describe('cleanup by policy', () => {
  const world = useWorld();
  let scenario: Scenario;
  before(() => {
    scenario = buildScenario(world, 'grp/service');
  });

  test("dry run lists exactly the policy's jobs and sends no DELETE", async () => {
    world.sim.requests.length = 0;
    const r = await runBundle(
      ['cleanup', '--project', 'grp/service', ...POLICY, '--dry-run', '--report', 'dry.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(world.sim.requests.filter((q) => q.method === 'DELETE').length, 0);
    const report = readJson(join(world.workspace, 'dry.json'));
    assert.equal(report.dry_run, true);
    assert.deepEqual(new Set(report.projects[0].deleted), scenario.expectedDeleted);
    assert.equal(report.totals.bytes, scenario.expectedBytes);
    assert.match(r.output, /Would delete/);
    assert.ok(
      world.sim.requests.some((q) => q.query.pagination === 'keyset'),
      'keyset pagination',
    );
    assert.ok(!r.output.includes(PRIVATE_TOKEN));
  });

  test("deletes exactly the policy's jobs through a 429 storm; the report adds up", async () => {
    world.sim.requests.length = 0;
    world.sim.injectFault({ origin: 'gitlab', method: 'DELETE', kind: 'status', status: 429, retryAfter: 0, times: 25 });
    // 25 retries: even one delete drawing all 25 faults (concurrent deletes share them) gets through.
    const r = await runBundle(
      ['cleanup', '--project', 'grp/service', ...POLICY, '--report', 'report.json', '--dotenv', 'cleanup.env'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN, INPUT_RETRIES: '25' }),
      { timeoutMs: 120_000 },
    );
    world.sim.clearFaults();
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(new Set(world.sim.deletedArtifacts), scenario.expectedDeleted);
    const report = readJson(join(world.workspace, 'report.json'));
    const project = report.projects[0];
    assert.deepEqual(new Set(project.deleted), scenario.expectedDeleted);
    assert.equal(project.kept, scenario.kept);
    assert.equal(project.bytes_freed, scenario.expectedBytes);
    assert.equal(report.totals.jobs, scenario.expectedDeleted.size);
    assert.equal(report.totals.bytes, scenario.expectedBytes);
    assert.deepEqual(project.failed, []);
    assert.equal(world.sim.requests.filter((q) => q.method === 'DELETE' && q.status === 429).length, 25, 'the storm happened');
    assert.match(
      readFileSync(join(world.workspace, 'cleanup.env'), 'utf8'),
      new RegExp(`ARTIFACT_RELAY_DELETED_JOBS=${scenario.expectedDeleted.size}\n`),
    );
    assert.match(r.output, /grp\/service/);
  });

  test('a second run finds nothing left to delete', async () => {
    const r = await runBundle(
      ['cleanup', '--project', 'grp/service', ...POLICY, '--report', 'again.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(readJson(join(world.workspace, 'again.json')).totals.jobs, 0);
  });
});

describe('cleanup scope and refusals', () => {
  const world = useWorld();

  test('a group with subgroups, one project excluded', async () => {
    const top = world.sim.addGroup({ path: 'org' });
    const sub = world.sim.addGroup({ path: 'team', parentId: top.id });
    const a = buildScenario(world, 'api', top.id);
    const b = buildScenario(world, 'web', sub.id);
    buildScenario(world, 'legacy-tool', sub.id);
    const r = await runBundle(
      ['cleanup', '--group', 'org', '--exclude-project', 'org/team/legacy-*', ...POLICY, '--report', 'group.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
      { timeoutMs: 120_000 },
    );
    assert.equal(r.status, 0, r.output);
    const report = readJson(join(world.workspace, 'group.json'));
    assert.deepEqual(report.projects.map((p: { path: string }) => p.path).sort(), ['org/api', 'org/team/web']);
    assert.deepEqual(new Set(world.sim.deletedArtifacts), new Set([...a.expectedDeleted, ...b.expectedDeleted]));
    assert.equal(report.totals.bytes, a.expectedBytes + b.expectedBytes);
  });

  test('min_size and job filters narrow the selection', async () => {
    const project = world.sim.addProject({ path: 'grp/sizes' });
    const p = world.sim.addPipeline({ projectId: project.id, ref: 'old', status: 'failed' });
    const small = world.zip('small.zip', [{ name: 'a.txt', data: 'a' }]);
    const big = world.sim.addJob({ pipelineId: p.id, name: 'package', status: 'success', archive: world.archive, finishedAt: ago(30) });
    world.sim.addJob({ pipelineId: p.id, name: 'package-tiny', status: 'success', archive: small, finishedAt: ago(30) });
    world.sim.addJob({ pipelineId: p.id, name: 'docs', status: 'success', archive: world.archive, finishedAt: ago(30) });
    const r = await runBundle(
      ['cleanup', '--project', 'grp/sizes', '--older-than', '7d', '--job', 'package*', '--min-size', '1KiB', '--report', 'sizes.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(readJson(join(world.workspace, 'sizes.json')).projects[0].deleted, [big.id]);
  });

  test('an ISO date works as older_than', async () => {
    const project = world.sim.addProject({ path: 'grp/dated' });
    const p = world.sim.addPipeline({ projectId: project.id, ref: 'x', status: 'failed' });
    const old = world.sim.addJob({
      pipelineId: p.id,
      name: 'b',
      status: 'success',
      archive: world.archive,
      finishedAt: '2025-01-01T00:00:00Z',
    });
    world.sim.addJob({ pipelineId: p.id, name: 'b', status: 'success', archive: world.archive, finishedAt: '2025-06-01T00:00:00Z' });
    const r = await runBundle(
      ['cleanup', '--project', 'grp/dated', '--older-than', '2025-03-01', '--dry-run', '--report', 'dated.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(readJson(join(world.workspace, 'dated.json')).projects[0].deleted, [old.id]);
  });

  test('a deletion that keeps failing does not stop the others; exit 1 listing it', async () => {
    const project = world.sim.addProject({ path: 'grp/flaky' });
    const p = world.sim.addPipeline({ projectId: project.id, ref: 'x', status: 'failed' });
    const jobs = [0, 1, 2].map(() =>
      world.sim.addJob({ pipelineId: p.id, name: 'b', status: 'success', archive: world.archive, finishedAt: ago(30) }),
    );
    world.sim.injectFault({
      origin: 'gitlab',
      method: 'DELETE',
      path: `/api/v4/projects/${project.id}/jobs/${jobs[1].id}/artifacts`,
      kind: 'status',
      status: 403,
      times: Infinity,
    });
    const r = await runBundle(
      ['cleanup', '--project', 'grp/flaky', '--older-than', '7d', '--report', 'flaky.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    world.sim.clearFaults();
    assert.equal(r.status, 1, r.output);
    const report = readJson(join(world.workspace, 'flaky.json'));
    assert.deepEqual(report.projects[0].deleted.sort(), [jobs[0].id, jobs[2].id].sort());
    assert.deepEqual(
      report.projects[0].failed.map((f: { job_id: number }) => f.job_id),
      [jobs[1].id],
    );
    assert.match(r.output, new RegExp(`job ${jobs[1].id}`));
  });

  test('409 (project statistics refresh) on deletes is retried until it passes', async () => {
    const project = world.sim.addProject({ path: 'grp/refreshing' });
    const p = world.sim.addPipeline({ projectId: project.id, ref: 'x', status: 'failed' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'b', status: 'success', archive: world.archive, finishedAt: ago(30) });
    world.sim.injectFault({
      origin: 'gitlab',
      method: 'DELETE',
      kind: 'status',
      status: 409,
      body: '{"message":"Action temporarily disabled. The project this pipeline belongs to is undergoing stats refresh."}',
      times: 3,
    });
    const r = await runBundle(
      ['cleanup', '--project', 'grp/refreshing', '--older-than', '7d', '--report', 'refresh.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    world.sim.clearFaults();
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(readJson(join(world.workspace, 'refresh.json')).projects[0].deleted, [j.id]);
  });

  test('expire_all queues the bulk expiry (202)', async () => {
    const project = world.sim.addProject({ path: 'grp/bulk' });
    world.sim.requests.length = 0;
    const r = await runBundle(['cleanup', '--project', 'grp/bulk', '--expire-all', 'true'], world.env({ INPUT_TOKEN: PRIVATE_TOKEN }));
    assert.equal(r.status, 0, r.output);
    assert.ok(
      world.sim.requests.some((q) => q.method === 'DELETE' && q.path === `/api/v4/projects/${project.id}/artifacts` && q.status === 202),
    );
    assert.match(r.output, /queued/);
  });

  // Through the bundle for the exit code 2 and "before any request"; every refusal is in test/inputs.test.ts.
  const refusals: [string, string[], Record<string, string>, RegExp][] = [
    [
      'no older_than and no expire_all',
      ['--project', 'grp/x'],
      { INPUT_TOKEN: PRIVATE_TOKEN },
      /older_than is empty and expire_all is false: refusing/,
    ],
    [
      'a job token, before any request',
      ['--project', 'grp/x', '--older-than', '30d'],
      { INPUT_TOKEN: JOB_TOKEN },
      /Input token is a CI\/CD job token, and GitLab never accepts job tokens for deleting artifacts/,
    ],
  ];
  for (const [label, args, env, expected] of refusals) {
    test(`refuses with exit 2: ${label}`, async () => {
      world.sim.requests.length = 0;
      const r = await runBundle(['cleanup', ...args], world.env(env));
      assert.equal(r.status, 2, r.output);
      assert.match(r.output, expected);
      assert.equal(world.sim.requests.length, 0);
      assert.ok(!r.output.includes(JOB_TOKEN) && !r.output.includes(PRIVATE_TOKEN));
    });
  }
});

// Key cleanup flows on every GitLab version profile (test/simulator/profiles.ts).
for (const profile of PROFILE_NAMES) {
  describe(`cleanup on GitLab ${profile}`, () => {
    const world = useWorld({ profile });

    test('a group cleanup never deletes in a project shared with the group, nor in an archived one; the report says why', async () => {
      const { sim } = world;
      const corp = sim.addGroup({ path: 'corp' });
      const vendor = sim.addGroup({ path: 'vendor' });
      const own = sim.addProject({ path: 'svc', groupId: corp.id });
      // lib/api/groups.rb: GET /groups/corp/projects lists vendor/lib (shared with corp) unless with_shared=false
      const shared = sim.addProject({ path: 'lib', groupId: vendor.id, sharedWithGroups: [corp.id] });
      const attic = sim.addProject({ path: 'attic', groupId: corp.id, archived: true });
      const oldJobs = (projectId: number) => {
        const p = sim.addPipeline({ projectId, ref: 'main', status: 'success' });
        return [1, 2].map((i) => sim.addJob({ pipelineId: p.id, name: `build ${i}`, archive: world.archive, finishedAt: ago(40) }).id);
      };
      const ownJobs = oldJobs(own.id);
      oldJobs(shared.id);
      oldJobs(attic.id);
      sim.requests.length = 0;
      const r = await runBundle(
        ['cleanup', '--group', 'corp', '--older-than', '10d', '--keep-latest', '0', '--report', `shared-${profile}.json`],
        world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
      );
      assert.equal(r.status, 0, r.output);
      const deletes = sim.requests.filter((q) => q.method === 'DELETE');
      assert.ok(deletes.length > 0);
      assert.ok(
        deletes.every((q) => q.path.startsWith(`/api/v4/projects/${own.id}/`)),
        deletes.map((q) => q.path).join('\n'),
      );
      assert.deepEqual(new Set(sim.deletedArtifacts), new Set(ownJobs));
      const report = readJson(join(world.workspace, `shared-${profile}.json`));
      assert.deepEqual(
        report.projects.map((p: { path: string }) => p.path),
        ['corp/svc'],
      );
      const skipped = new Map(report.skipped.map((s: { path: string; reason: string }) => [s.path, s.reason]));
      assert.match(String(skipped.get('corp/attic')), /archived/);
      assert.match(r.output, /corp\/attic.*archived/);
    });

    test('a keyset listing refused with 405 (pagination_strategies.rb) falls back to pages', async () => {
      const { sim } = world;
      const project = sim.addProject({ path: `grp/keyset-${profile.replace('.', '-')}` });
      const p = sim.addPipeline({ projectId: project.id, ref: 'main', status: 'success' });
      const j = sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive, finishedAt: ago(40) });
      sim.injectFault({
        path: `/api/v4/projects/${project.id}/jobs`,
        kind: 'status',
        status: 405,
        body: JSON.stringify({ message: 'Keyset pagination is not yet available for this type of request' }),
        headers: { 'Content-Type': 'application/json' },
      });
      const r = await runBundle(
        ['cleanup', '--project', project.path, '--older-than', '10d', '--keep-latest', '0'],
        world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
      );
      sim.clearFaults();
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /Keyset pagination refused \(HTTP 405\)/);
      assert.ok(sim.deletedArtifacts.includes(j.id));
    });

    test('the jobs_index application limit (429, no Retry-After) is waited out, window by window', async () => {
      const { sim } = world;
      const team = sim.addGroup({ path: `limited-${profile.replace('.', '-')}` });
      const doomed: number[] = [];
      for (const name of ['one', 'two', 'three']) {
        const project = sim.addProject({ path: name, groupId: team.id });
        const p = sim.addPipeline({ projectId: project.id, ref: 'main', status: 'success' });
        doomed.push(sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive, finishedAt: ago(40) }).id);
      }
      // lib/api/ci/jobs.rb check_rate_limit!(:jobs_index): the first listing finds the limit reached (limit 0, a
      // window opens), then one listing per window: each later project meets a 429 without Retry-After too
      // (test/simulator/profiles.ts rateLimitExpiry says when a window ends). Counted, not timed.
      sim.jobsIndexLimit = 0;
      sim.jobsIndexWindowMs = 1500;
      sim.afterRequests({ path: /\/projects\/\d+\/jobs$/ }, 1, () => {
        sim.jobsIndexLimit = 1;
      });
      sim.requests.length = 0;
      try {
        const r = await runBundle(
          ['cleanup', '--group', team.path, '--older-than', '10d', '--keep-latest', '0'],
          world.env({ INPUT_TOKEN: PRIVATE_TOKEN, ARTIFACT_RELAY_RATE_WINDOW_MS: '1500' }),
        );
        assert.equal(r.status, 0, r.output);
        assert.ok(
          sim.requests.some((q) => q.status === 429 && /\/jobs$/.test(q.path)),
          'the limit was hit',
        );
        assert.match(r.output, /429 without Retry-After.*window/);
        for (const id of doomed) assert.ok(sim.deletedArtifacts.includes(id), `job ${id} deleted`);
      } finally {
        sim.jobsIndexLimit = undefined;
        sim.jobsIndexWindowMs = 60_000;
      }
    });
  });
}
