// Keep end to end: the simulator's keep route as GitLab answers it, fetch with keep: true, the keep command
// (selection as fetch, dry run, refusals, expired or missing artifacts explained), and cleanup sparing kept jobs.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { Job } from './simulator/index.ts';
import { runBundle } from './helpers/run.ts';
import { JOB_TOKEN, PRIVATE_TOKEN, useWorld, type World } from './helpers/world.ts';

const DEV_TOKEN = 'glpat-e2eDeveloperToken0123456789';
const REPORTER_TOKEN = 'glpat-e2eReporterToken0123456789';
const READ_API_TOKEN = 'glpat-e2eReadApiToken01234567890';
const PAST = '2020-01-01T00:00:00.000Z';

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const dotenv = (file: string) =>
  Object.fromEntries(
    readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2)),
  );
const job = (world: World, id: number) => world.sim.jobs().find((j) => j.id === id) as Job;
const keepRequests = (world: World) => world.sim.requests.filter((q) => q.method === 'POST' && q.path.endsWith('/artifacts/keep'));

function addTokens(world: World) {
  world.sim.addAccessToken(DEV_TOKEN, { kind: 'project', role: 'developer', scopes: ['api'] });
  world.sim.addAccessToken(REPORTER_TOKEN, { kind: 'project', role: 'reporter', scopes: ['api'] });
  world.sim.addAccessToken(READ_API_TOKEN, { kind: 'project', role: 'maintainer', scopes: ['read_api'] });
}

describe('simulator: POST /projects/:id/jobs/:job_id/artifacts/keep as GitLab answers it', () => {
  const world = useWorld();
  before(() => addTokens(world));
  const keep = async (projectId: number, jobId: number, headers: Record<string, string>) => {
    const res = await fetch(`${world.sim.apiUrl}/projects/${projectId}/jobs/${jobId}/artifacts/keep`, { method: 'POST', headers });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  test('a job token counts as anonymous (no job_token_allowed): 401 on private and public projects alike', async () => {
    const pub = world.sim.addProject({ path: 'grp/public-app', visibility: 'public', jobTokenAllowlist: [world.downstream.id] });
    const p = world.sim.addPipeline({ projectId: pub.id });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive });
    for (const [projectId, jobId] of [
      [world.upstream.id, world.build.id],
      [pub.id, j.id],
    ]) {
      assert.deepEqual(await keep(projectId, jobId, { 'JOB-TOKEN': JOB_TOKEN }), { status: 401, body: { message: '401 Unauthorized' } });
      assert.deepEqual(await keep(projectId, jobId, {}), { status: 401, body: { message: '401 Unauthorized' } });
    }
    assert.notEqual(job(world, world.build.id).expireAt, null);
  });

  test('roles and scopes: 403 below Developer and with read_api; Developer keeps (200, Job entity, artifacts_expire_at null); twice is harmless', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive });
    assert.equal((await keep(world.upstream.id, j.id, { 'PRIVATE-TOKEN': REPORTER_TOKEN })).status, 403);
    assert.equal((await keep(world.upstream.id, j.id, { 'PRIVATE-TOKEN': READ_API_TOKEN })).status, 403);
    assert.ok(job(world, j.id).expireAt);
    for (let i = 0; i < 2; i++) {
      const r = await keep(world.upstream.id, j.id, { 'PRIVATE-TOKEN': DEV_TOKEN });
      assert.equal(r.status, 200);
      assert.equal(r.body.id, j.id);
      assert.equal(r.body.artifacts_expire_at, null);
      assert.ok(r.body.artifacts_file, 'artifacts_file is shown: artifacts? is true');
    }
    assert.equal(job(world, j.id).expireAt, null);
  });

  test('404 when artifacts? is false: expired (a locked pipeline too), no archive, erased, unknown job', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id });
    const expired = world.sim.addJob({ pipelineId: p.id, name: 'old', archive: world.archive, expireAt: PAST });
    const locked = world.sim.addJob({ pipelineId: p.id, name: 'locked', archive: world.archive, expireAt: PAST, locked: true });
    const none = world.sim.addJob({ pipelineId: p.id, name: 'lint' });
    const erased = world.sim.addJob({ pipelineId: p.id, name: 'erased', archive: world.archive, erased: true });
    for (const j of [expired, locked, none, erased]) {
      assert.deepEqual(await keep(world.upstream.id, j.id, { 'PRIVATE-TOKEN': PRIVATE_TOKEN }), {
        status: 404,
        body: { message: '404 Not Found' },
      });
    }
    assert.deepEqual(await keep(world.upstream.id, 999_999, { 'PRIVATE-TOKEN': PRIVATE_TOKEN }), {
      status: 404,
      body: { message: '404 Not found' },
    });
    assert.equal(job(world, expired.id).expireAt, PAST);
  });
});

describe('fetch with keep: true', () => {
  const world = useWorld();
  before(() => addTokens(world));

  test('fetches, then keeps the fetched job: its expiry is gone; log, summary and dotenv say so', async () => {
    assert.ok(job(world, world.build.id).expireAt, 'the build expires before');
    world.sim.requests.length = 0;
    const r = await runBundle(
      [
        'fetch',
        '--project',
        world.upstream.path,
        '--job-id',
        String(world.build.id),
        '--path',
        'kept',
        '--keep',
        '--summary',
        'kept.json',
        '--dotenv',
        'kept.env',
      ],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 0, r.output);
    assert.ok(existsSync(join(world.workspace, 'kept/dist/app')));
    assert.equal(job(world, world.build.id).expireAt, null);
    assert.match(r.output, new RegExp(`Kept the artifacts of job ${world.build.id}`));
    const summary = readJson(join(world.workspace, 'kept.json'));
    assert.equal(summary.kept, true);
    assert.equal(summary.sources[0].kept, true);
    assert.equal(dotenv(join(world.workspace, 'kept.env')).ARTIFACT_RELAY_KEPT, 'true');
    // Kept after the download, never before.
    const keepAt = world.sim.requests.findIndex((q) => q.method === 'POST' && q.path.endsWith('/artifacts/keep'));
    const downloadAt = world.sim.requests.findIndex((q) => q.method === 'GET' && q.path.endsWith(`/jobs/${world.build.id}/artifacts`));
    assert.ok(downloadAt >= 0 && keepAt > downloadAt, 'keep comes after the download');
    assert.ok(!r.output.includes(PRIVATE_TOKEN));
  });

  test('several jobs by pipeline and glob, through a 502 on keep (retried): every one kept', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id });
    const a = world.sim.addJob({ pipelineId: p.id, name: 'pkg:a', archive: world.zip('a.zip', [{ name: 'a.txt', data: 'a\n' }]) });
    const b = world.sim.addJob({ pipelineId: p.id, name: 'pkg:b', archive: world.zip('b.zip', [{ name: 'b.txt', data: 'b\n' }]) });
    world.sim.injectFault({ origin: 'gitlab', method: 'POST', kind: 'status', status: 502, times: 1 });
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--pipeline', String(p.id), '--job', 'pkg:*', '--path', 'pkgs', '--keep', 'true'],
      world.env({ INPUT_TOKEN: DEV_TOKEN, INPUT_SUMMARY: 'pkgs.json' }),
    );
    world.sim.clearFaults();
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /HTTP 502; retrying/);
    assert.equal(job(world, a.id).expireAt, null);
    assert.equal(job(world, b.id).expireAt, null);
    const summary = readJson(join(world.workspace, 'pkgs.json'));
    assert.deepEqual(
      summary.sources.map((s: { kept: boolean }) => s.kept),
      [true, true],
    );
  });

  test('a job token with keep is refused before any request, with advice', async () => {
    world.sim.requests.length = 0;
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--keep'], world.env());
    assert.equal(r.status, 2, r.output);
    assert.match(r.output, /job token.*keep.*401.*access token with the api scope and at least the Developer role/s);
    assert.equal(world.sim.requests.length, 0);
  });

  test('a refused keep does not undo the fetch: files, summary and dotenv stay with kept false; exit 3, or 0 under keep_failure: warn', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive });
    const args = [
      'fetch',
      '--project',
      world.upstream.path,
      '--job-id',
      String(j.id),
      '--keep',
      '--summary',
      'r.json',
      '--dotenv',
      'r.env',
    ];
    const r = await runBundle([...args, '--path', 'refused'], world.env({ INPUT_TOKEN: REPORTER_TOKEN }));
    assert.equal(r.status, 3, r.output);
    assert.ok(existsSync(join(world.workspace, 'refused/dist/app')), 'the fetched files stay');
    assert.match(r.output, /HTTP 403/);
    assert.match(r.output, /at least the Developer role/);
    const summary = readJson(join(world.workspace, 'r.json'));
    assert.equal(summary.found, true);
    assert.equal(summary.kept, false);
    assert.equal(summary.sources[0].kept, false);
    assert.match(summary.sources[0].keep_error, /403/);
    assert.deepEqual(
      [dotenv(join(world.workspace, 'r.env')).ARTIFACT_RELAY_KEPT, dotenv(join(world.workspace, 'r.env')).ARTIFACT_RELAY_FOUND],
      ['false', 'true'],
    );
    assert.ok(job(world, j.id).expireAt, 'still expires');

    const w = await runBundle([...args, '--path', 'warned', '--keep-failure', 'warn'], world.env({ INPUT_TOKEN: REPORTER_TOKEN }));
    assert.equal(w.status, 0, w.output);
    assert.match(w.output, /keep_failure: warn/);
    assert.ok(existsSync(join(world.workspace, 'warned/dist/app')));
  });
});

describe('keep command', () => {
  const world = useWorld();
  let pipelineId: number;
  let linux: Job;
  let mac: Job;
  let test1: Job;
  before(() => {
    addTokens(world);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main' });
    pipelineId = p.id;
    linux = world.sim.addJob({ pipelineId: p.id, name: 'build: [linux]', archive: world.archive });
    mac = world.sim.addJob({ pipelineId: p.id, name: 'build: [mac]', archive: world.archive });
    test1 = world.sim.addJob({ pipelineId: p.id, name: 'test 1/2', archive: world.archive });
  });
  const byPipeline = () => ['keep', '--project', world.upstream.path, '--pipeline', String(pipelineId), '--job', 'build:*'];

  test('dry run by pipeline and job glob: lists the matched jobs, keeps nothing', async () => {
    world.sim.requests.length = 0;
    const r = await runBundle(
      [...byPipeline(), '--dry-run', '--summary', 'dry.json', '--dotenv', 'dry.env'],
      world.env({ INPUT_TOKEN: DEV_TOKEN }),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(keepRequests(world).length, 0);
    assert.match(r.output, new RegExp(`Would keep the artifacts of job ${linux.id}`));
    assert.match(r.output, new RegExp(`Would keep the artifacts of job ${mac.id}`));
    const summary = readJson(join(world.workspace, 'dry.json'));
    assert.equal(summary.dry_run, true);
    assert.equal(summary.selected_by, 'pipeline');
    assert.deepEqual(
      summary.sources.map((s: { job_id: number; kept: boolean }) => [s.job_id, s.kept]).sort(),
      [
        [linux.id, false],
        [mac.id, false],
      ].sort(),
    );
    const env = dotenv(join(world.workspace, 'dry.env'));
    assert.equal(env.ARTIFACT_RELAY_KEPT, 'false');
    assert.deepEqual(env.ARTIFACT_RELAY_JOB_IDS.split(',').map(Number).sort(), [linux.id, mac.id].sort());
    for (const j of [linux, mac]) assert.ok(job(world, j.id).expireAt);
  });

  test('by pipeline and job glob: keeps exactly the matched jobs; a second run is harmless', async () => {
    for (let run = 0; run < 2; run++) {
      const r = await runBundle([...byPipeline(), '--summary', 'keep.json', '--dotenv', 'keep.env'], world.env({ INPUT_TOKEN: DEV_TOKEN }));
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /Kept the artifacts of 2 job\(s\)/);
    }
    assert.equal(job(world, linux.id).expireAt, null);
    assert.equal(job(world, mac.id).expireAt, null);
    assert.ok(job(world, test1.id).expireAt, 'a job the glob does not match still expires');
    const summary = readJson(join(world.workspace, 'keep.json'));
    assert.equal(summary.kept, true);
    for (const s of summary.sources) assert.equal(s.artifacts_expire_at, null);
    const env = dotenv(join(world.workspace, 'keep.env'));
    assert.equal(env.ARTIFACT_RELAY_KEPT, 'true');
    assert.deepEqual(env.ARTIFACT_RELAY_KEPT_JOB_IDS.split(',').map(Number).sort(), [linux.id, mac.id].sort());
  });

  test('by the upstream pipeline (CI_UPSTREAM_*) and by ref + job, as fetch selects', async () => {
    const up = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'release' });
    const upJob = world.sim.addJob({ pipelineId: up.id, name: 'package', archive: world.archive });
    const r = await runBundle(
      ['keep', '--job', 'package'],
      world.env({ INPUT_TOKEN: DEV_TOKEN, CI_UPSTREAM_PROJECT_ID: String(world.upstream.id), CI_UPSTREAM_PIPELINE_ID: String(up.id) }),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(job(world, upJob.id).expireAt, null);
    const byRef = await runBundle(
      ['keep', '--project', world.upstream.path, '--ref', 'main', '--job', 'test 1/2'],
      world.env({ INPUT_TOKEN: DEV_TOKEN }),
    );
    assert.equal(byRef.status, 0, byRef.output);
    assert.equal(job(world, test1.id).expireAt, null);
  });

  const refusals: [string, Record<string, string>, string[], RegExp][] = [
    ['a job token', { INPUT_TOKEN: JOB_TOKEN }, [], /job token.*401.*api scope and at least the Developer role/s],
    ['$CI_JOB_TOKEN passed with --token', {}, ['--token', JOB_TOKEN], /job token/],
    ['no token (the default)', {}, [], /token is empty.*api scope.*Developer/s],
  ];
  for (const [label, env, extra, expected] of refusals) {
    test(`refuses ${label} before any request (exit 2)`, async () => {
      world.sim.requests.length = 0;
      const r = await runBundle(['keep', '--project', world.upstream.path, '--job-id', String(linux.id), ...extra], world.env(env));
      assert.equal(r.status, 2, r.output);
      assert.match(r.output, expected);
      assert.equal(world.sim.requests.length, 0);
      assert.ok(!r.output.includes(JOB_TOKEN));
    });
  }

  test('a 404 on already-expired artifacts is explained (expired at when), and told apart from missing ones', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id });
    const expired = world.sim.addJob({ pipelineId: p.id, name: 'old', archive: world.archive, expireAt: PAST });
    const missing = world.sim.addJob({ pipelineId: p.id, name: 'lint' });
    const fine = world.sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive });
    const ids = [expired.id, missing.id, fine.id].join(',');
    const r = await runBundle(
      ['keep', '--project', world.upstream.path, '--job-id', ids, '--summary', 'x.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, new RegExp(`job ${expired.id}.*they expired at ${PAST.replace(/\./g, '\\.')} \\(HTTP 404\\)`));
    assert.match(r.output, new RegExp(`job ${missing.id}.*has no artifacts archive \\(HTTP 404\\)`));
    assert.equal(job(world, fine.id).expireAt, null, 'the others are still kept');
    const summary = readJson(join(world.workspace, 'x.json'));
    assert.deepEqual(
      summary.sources.map((s: { reason?: string; kept: boolean }) => [s.kept, s.reason ?? null]),
      [
        [false, 'expired'],
        [false, 'missing'],
        [true, null],
      ],
    );
    // Under if_not_found: warn the run passes and still says why.
    const w = await runBundle(
      ['keep', '--project', world.upstream.path, '--job-id', String(expired.id), '--if-not-found', 'warn'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(w.status, 0, w.output);
    assert.match(w.output, /expired at/);
  });

  test('a role below Developer fails with exit 1 and says what is needed', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive });
    const r = await runBundle(
      ['keep', '--project', world.upstream.path, '--job-id', String(j.id), '--if-not-found', 'ignore'],
      world.env({ INPUT_TOKEN: REPORTER_TOKEN }),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /HTTP 403.*at least the Developer role/s);
  });
});

describe('cleanup and keep agree', () => {
  const world = useWorld();

  test('cleanup leaves a kept job alone by default; delete_kept: true deletes it too', async () => {
    const project = world.sim.addProject({ path: 'grp/releases' });
    const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
    const jobs = [0, 1, 2].map(() => {
      const p = world.sim.addPipeline({ projectId: project.id, ref: 'feature', status: 'failed' });
      return world.sim.addJob({ pipelineId: p.id, name: 'build', archive: world.archive, finishedAt: old });
    });
    const kept = await runBundle(
      ['keep', '--project', project.path, '--job-id', String(jobs[1].id)],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(kept.status, 0, kept.output);
    assert.equal(job(world, jobs[1].id).expireAt, null);

    const r = await runBundle(
      ['cleanup', '--project', project.path, '--older-than', '7d', '--keep-latest', '0', '--report', 'c.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(new Set(world.sim.deletedArtifacts), new Set([jobs[0].id, jobs[2].id]));
    assert.match(r.output, /1 left alone because their artifacts never expire/);
    const report = readJson(join(world.workspace, 'c.json'));
    assert.equal(report.policy.delete_kept, false);
    assert.equal(report.projects[0].kept, 1);

    const d = await runBundle(
      ['cleanup', '--project', project.path, '--older-than', '7d', '--keep-latest', '0', '--delete-kept'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(d.status, 0, d.output);
    assert.ok(world.sim.deletedArtifacts.includes(jobs[1].id));
  });
});
