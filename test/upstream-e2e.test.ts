// Multi-project triggers end to end: the downstream takes the artifacts of the exact upstream pipeline that
// triggered it, waits for running jobs, and handles several jobs. The bundle runs as a child process.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { runBundle } from './helpers/run.ts';
import { snapshotTree } from './helpers/tree.ts';
import { PROFILES, PROFILE_NAMES } from './simulator/index.ts';
import { PRIVATE_TOKEN, useWorld, type World } from './helpers/world.ts';

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const dotenv = (file: string) =>
  Object.fromEntries(
    readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2)),
  );

/** A triggered downstream's environment: GitLab 18.9+ sets CI_UPSTREAM_* for pipelines started by a trigger job. */
const triggered = (world: World, pipelineId: number, extra: Record<string, string> = {}) =>
  world.env({
    CI_PIPELINE_SOURCE: 'pipeline',
    CI_UPSTREAM_PROJECT_ID: String(world.upstream.id),
    CI_UPSTREAM_PIPELINE_ID: String(pipelineId),
    ...extra,
  });

describe('the exact upstream pipeline', () => {
  const world = useWorld();

  test("takes the triggering pipeline's job while a newer successful pipeline exists on the same ref", async () => {
    const triggering = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const mine = world.zip('mine.zip', [{ name: 'which.txt', data: 'triggering pipeline\n' }]);
    const newer = world.zip('newer.zip', [{ name: 'which.txt', data: 'a newer pipeline\n' }]);
    const build = world.sim.addJob({ pipelineId: triggering.id, name: 'build', status: 'success', archive: mine });
    world.sim.addJob({ pipelineId: triggering.id, name: 'deploy-trigger', status: 'running' });
    const later = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
    world.sim.addJob({ pipelineId: later.id, name: 'build', status: 'success', archive: newer });

    const r = await runBundle(
      ['fetch', '--job', 'build', '--path', 'exact', '--summary', 'exact.json', '--dotenv', 'exact.env'],
      triggered(world, triggering.id),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(readFileSync(join(world.workspace, 'exact/which.txt'), 'utf8'), 'triggering pipeline\n');
    const summary = readJson(join(world.workspace, 'exact.json'));
    assert.equal(summary.selected_by, 'upstream');
    assert.equal(summary.upstream.variables, 'CI_UPSTREAM_PROJECT_ID + CI_UPSTREAM_PIPELINE_ID');
    assert.equal(summary.sources[0].job_id, build.id);
    assert.equal(summary.sources[0].pipeline_id, triggering.id);
    assert.match(r.output, /from CI_UPSTREAM_PROJECT_ID \+ CI_UPSTREAM_PIPELINE_ID/);
    assert.equal(dotenv(join(world.workspace, 'exact.env')).ARTIFACT_RELAY_JOB_IDS, String(build.id));
  });

  test('older GitLab: the conventional UPSTREAM_* trigger variables, with a project path', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const r = await runBundle(
      ['fetch', '--job', 'build', '--path', 'conv', '--summary', 'conv.json'],
      world.env({ CI_PIPELINE_SOURCE: 'pipeline', UPSTREAM_PROJECT_PATH: world.upstream.path, UPSTREAM_PIPELINE_ID: String(p.id) }),
    );
    assert.equal(r.status, 0, r.output);
    const summary = readJson(join(world.workspace, 'conv.json'));
    assert.equal(summary.upstream.variables, 'UPSTREAM_PROJECT_PATH + UPSTREAM_PIPELINE_ID');
    assert.equal(summary.sources[0].job_id, j.id);
  });

  test('a retried job: the newest attempt wins', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const first = world.zip('attempt1.zip', [{ name: 'attempt.txt', data: '1' }]);
    const second = world.zip('attempt2.zip', [{ name: 'attempt.txt', data: '2' }]);
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: first, retried: true });
    const retry = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: second });
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'retried', '--summary', 'retried.json'], triggered(world, p.id));
    assert.equal(r.status, 0, r.output);
    assert.equal(readFileSync(join(world.workspace, 'retried/attempt.txt'), 'utf8'), '2');
    assert.equal(readJson(join(world.workspace, 'retried.json')).sources[0].job_id, retry.id);
  });

  test('an explicit project that is not the upstream one, without pipeline, is refused with exit 2', async () => {
    const r = await runBundle(['fetch', '--job', 'build', '--project', 'grp/other'], triggered(world, 1));
    assert.equal(r.status, 2, r.output);
    assert.match(r.output, /not the upstream project/);
  });

  // lib/gitlab/ci/variables/builder/pipeline.rb: CI_UPSTREAM_PROJECT_ID is always the numeric ID (source_project_id.to_s).
  for (const token of ['job', 'private'] as const) {
    test(`project given as a path names the same project as the numeric CI_UPSTREAM_PROJECT_ID (${token} token)`, async () => {
      const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
      const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
      const r = await runBundle(
        ['fetch', '--job', 'build', '--project', world.upstream.path, '--path', `by-path-${token}`, '--summary', `by-path-${token}.json`],
        triggered(world, p.id, token === 'private' ? { INPUT_TOKEN: PRIVATE_TOKEN } : {}),
      );
      assert.equal(r.status, 0, r.output);
      const summary = readJson(join(world.workspace, `by-path-${token}.json`));
      assert.equal(summary.selected_by, 'upstream');
      assert.equal(summary.sources[0].job_id, j.id);
    });
  }

  test('project given as the path of another existing project is refused with exit 2', async () => {
    const other = world.sim.addProject({ path: 'grp/elsewhere' });
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const r = await runBundle(
      ['fetch', '--job', 'build', '--project', other.path, '--path', 'elsewhere'],
      triggered(world, p.id, { INPUT_TOKEN: PRIVATE_TOKEN }),
    );
    assert.equal(r.status, 2, r.output);
    assert.match(r.output, /not the upstream project/);
  });

  // lib/api/entities/ci/job.rb exposes artifacts_file only `if: job.artifacts?` (not expired); the pipeline lock
  // ("keep artifacts from most recent successful jobs") keeps the archive downloadable and in artifacts[].
  test('an expired archive of a locked pipeline (no artifacts_file, still in artifacts[]) is fetched', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
    const expireAt = new Date(Date.now() - 86_400_000).toISOString();
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive, expireAt, locked: true });
    for (const [how, args, env] of [
      ['upstream', ['--job', 'build'], triggered(world, p.id)],
      ['pipeline', ['--job', 'build', '--project', world.upstream.path, '--pipeline', String(p.id)], world.env()],
      ['ref', ['--job', 'build', '--project', world.upstream.path, '--ref', 'main'], world.env({ INPUT_TOKEN: PRIVATE_TOKEN })],
    ] as const) {
      const r = await runBundle(['fetch', ...args, '--path', `locked-${how}`, '--summary', `locked-${how}.json`], env);
      assert.equal(r.status, 0, `${how}: ${r.output}`);
      assert.equal(readJson(join(world.workspace, `locked-${how}.json`)).sources[0].job_id, j.id, how);
      assert.ok(existsSync(join(world.workspace, `locked-${how}/dist/app`)), how);
    }
  });

  test('an explicit pipeline input wins over the environment', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'feature', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const r = await runBundle(
      [
        'fetch',
        '--job',
        'build',
        '--project',
        world.upstream.path,
        '--pipeline',
        String(p.id),
        '--path',
        'explicit',
        '--summary',
        'explicit.json',
      ],
      triggered(world, 123456),
    );
    assert.equal(r.status, 0, r.output);
    const summary = readJson(join(world.workspace, 'explicit.json'));
    assert.equal(summary.selected_by, 'pipeline');
    assert.equal(summary.sources[0].job_id, j.id);
  });
});

describe("older GitLab without pipeline variables: the triggering pipeline found through the upstream's trigger jobs", () => {
  const world = useWorld();

  /** A downstream pipeline started by a trigger job of `upstreamPipelineId`; only the upstream project is passed. */
  const downstreamOf = (upstreamPipelineId: number) => {
    const own = world.sim.addPipeline({
      projectId: world.downstream.id,
      ref: 'main',
      status: 'running',
      upstream: { projectId: world.upstream.id, pipelineId: upstreamPipelineId },
    });
    return world.env({ CI_PIPELINE_SOURCE: 'pipeline', CI_PIPELINE_ID: String(own.id), INPUT_PROJECT: world.upstream.path });
  };

  test('with an access token: the exact triggering pipeline, while newer pipelines exist', async () => {
    const triggering = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const build = world.sim.addJob({
      pipelineId: triggering.id,
      name: 'build',
      status: 'success',
      archive: world.zip('bridge-mine.zip', [{ name: 'which.txt', data: 'triggering\n' }]),
    });
    const env = downstreamOf(triggering.id);
    for (let i = 0; i < 3; i++) {
      const newer = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
      world.sim.addJob({
        pipelineId: newer.id,
        name: 'build',
        status: 'success',
        archive: world.zip(`bridge-newer-${i}.zip`, [{ name: 'which.txt', data: 'newer\n' }]),
      });
    }
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'bridged', '--summary', 'bridged.json'], {
      ...env,
      INPUT_TOKEN: PRIVATE_TOKEN,
    });
    assert.equal(r.status, 0, r.output);
    assert.equal(readFileSync(join(world.workspace, 'bridged/which.txt'), 'utf8'), 'triggering\n');
    const summary = readJson(join(world.workspace, 'bridged.json'));
    assert.equal(summary.selected_by, 'bridge');
    assert.equal(summary.sources[0].job_id, build.id);
    assert.match(r.output, new RegExp(`Pipeline ${triggering.id} of grp/app triggered this one`));
  });
  // The job-token case depends on the GitLab version: see 'upstream key flows on GitLab <profile>' below.
});

describe('waiting for upstream jobs', () => {
  const world = useWorld();

  test('a running job finishes after a few polls and its artifacts arrive within wait', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'running' });
    // Polls 1 and 2 see it running, poll 3 sees it done (counted polls, not a timer racing the child's start).
    world.sim.setJobStatusAfterPolls(j.id, 2, 'success', { archive: world.archive });
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'waited', '--wait', '60'], triggered(world, p.id));
    assert.equal(r.status, 0, r.output);
    assert.equal(r.output.match(/Waiting for build \(\d+\) running/g)?.length, 2, r.output);
    assert.equal(world.sim.pollsOf(j.id), 3);
    assert.deepEqual(
      snapshotTree(join(world.workspace, 'waited')).map((e) => e.path),
      ['current', 'dist', 'dist/app', 'dist/config.json', 'dist/private.key', 'reports', 'reports/build.log'],
    );
  });

  // app/models/concerns/ci/has_status.rb: ACTIVE_STATUSES includes waiting_for_callback (the job waits for an
  // external callback and then goes on by itself).
  test('a job in waiting_for_callback is waited for, not failed', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'waiting_for_callback' });
    world.sim.afterRequests({ path: new RegExp(`/pipelines/${p.id}/jobs$`) }, 2, () =>
      world.sim.setJobStatus(j.id, 'success', { archive: world.archive }),
    );
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'callback', '--wait', '300'], triggered(world, p.id));
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /waiting_for_callback/);
    assert.ok(existsSync(join(world.workspace, 'callback/dist/app')));
  });

  test('an upstream job that fails ends the wait at once, naming its status and URL', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'running' });
    world.sim.setJobStatusAfterPolls(j.id, 1, 'failed');
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'failed', '--wait', '300'], triggered(world, p.id));
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, new RegExp(`Job ${j.id} "build" ended with status failed`));
    assert.match(r.output, /accept_status/);
    assert.equal(world.sim.pollsOf(j.id), 2, 'the first look after the failure ended the wait');
    assert.equal(existsSync(join(world.workspace, 'failed')), false);
  });

  test('accept_status success,failed takes the artifacts of a failed job', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'failed' });
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'failed', archive: world.archive });
    const r = await runBundle(
      ['fetch', '--job', 'build', '--path', 'accepted', '--accept-status', 'success,failed'],
      triggered(world, p.id),
    );
    assert.equal(r.status, 0, r.output);
  });

  test('a manual job fails fast: it will not run by itself', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'manual' });
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'manual' });
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'manual', '--wait', '300'], triggered(world, p.id));
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /manual job/);
  });

  test('wait running out exits 1 saying how long it waited', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'pending' });
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'timeout', '--wait', '1'], triggered(world, p.id));
    assert.equal(r.status, 1, r.output);
    // The elapsed seconds are measured (1 or more on a busy machine); the wait input is what is guaranteed.
    const gaveUp = /Gave up after waiting (\d+) s \(wait: 1\)/.exec(r.output);
    assert.ok(gaveUp && Number(gaveUp[1]) >= 1, r.output);
    assert.match(r.output, /build \(\d+\) pending/);
  });

  test('a job token that cannot read jobs waits by polling the job-id artifact endpoint', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'running' });
    world.sim.setJobStatusAfterPolls(j.id, 2, 'success', { archive: world.archive });
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', 'polled', '--wait', '60'],
      world.env(),
    );
    assert.equal(r.status, 0, r.output);
    const heads = world.sim.requests.filter((q) => q.method === 'HEAD' && q.path.endsWith(`/jobs/${j.id}/artifacts`));
    assert.deepEqual(
      heads.map((q) => q.status),
      [404, 404, 302],
      'polled while missing, then the 302 ends the wait',
    );
    // The 302 answers the poll: a URL signed for GET may refuse HEAD at the storage (GCS, MinIO).
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage' && q.method === 'HEAD').length, 0);
    assert.ok(existsSync(join(world.workspace, 'polled/dist/app')));
  });

  test('wait 0 with a running job says to set wait', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'running' });
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'nowait'], triggered(world, p.id));
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /Set wait/);
  });
});

describe('several jobs', () => {
  const world = useWorld();
  let pipelineId: number;
  before(() => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
    pipelineId = p.id;
    const shared = { name: 'README.md', data: 'same in both\n' };
    world.sim.addJob({
      pipelineId: p.id,
      name: 'build: [linux]',
      status: 'success',
      archive: world.zip('linux.zip', [shared, { name: 'bin/app-linux', data: 'L', mode: 0o755 }]),
    });
    world.sim.addJob({
      pipelineId: p.id,
      name: 'build: [macos]',
      status: 'success',
      archive: world.zip('macos.zip', [shared, { name: 'bin/app-macos', data: 'M', mode: 0o755 }]),
    });
    world.sim.addJob({
      pipelineId: p.id,
      name: 'test 1/2',
      status: 'success',
      archive: world.zip('t1.zip', [{ name: 'report.xml', data: '<one/>' }]),
    });
    world.sim.addJob({
      pipelineId: p.id,
      name: 'test 2/2',
      status: 'success',
      archive: world.zip('t2.zip', [{ name: 'report.xml', data: '<two/>' }]),
    });
  });

  test('layout merge: a glob over two jobs, identical files allowed', async () => {
    const r = await runBundle(['fetch', '--job', 'build: *', '--path', 'merged', '--dotenv', 'merged.env'], triggered(world, pipelineId));
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(
      snapshotTree(join(world.workspace, 'merged')).map((e) => e.path),
      ['README.md', 'bin', 'bin/app-linux', 'bin/app-macos'],
    );
    assert.equal(dotenv(join(world.workspace, 'merged.env')).ARTIFACT_RELAY_JOB_IDS.split(',').length, 2);
  });

  test('layout merge: two jobs writing the same file differently fail, and nothing is written', async () => {
    const r = await runBundle(['fetch', '--job', 'test */2', '--path', 'conflict'], triggered(world, pipelineId));
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /report\.xml with different content/);
    assert.match(r.output, /per-job/);
    assert.equal(existsSync(join(world.workspace, 'conflict')), false);
  });

  test('layout per-job: one safe folder per job', async () => {
    const r = await runBundle(
      ['fetch', '--job', 'test 1/2,test 2/2', '--layout', 'per-job', '--path', 'perjob', '--summary', 'perjob.json'],
      triggered(world, pipelineId),
    );
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(
      snapshotTree(join(world.workspace, 'perjob')).map((e) => e.path),
      ['test_1_2', 'test_1_2/report.xml', 'test_2_2', 'test_2_2/report.xml'],
    );
    const summary = readJson(join(world.workspace, 'perjob.json'));
    assert.deepEqual(summary.sources.map((s: { path: string }) => s.path).sort(), ['perjob/test_1_2', 'perjob/test_2_2']);
  });

  // app/finders/ci/jobs_finder.rb: a token without read_build gets 200 [] from the pipeline jobs listing.
  test('a Guest token sees an empty pipeline: the advice names the Reporter role', async () => {
    world.sim.addAccessToken('glpat-guest-token-0123456789abcdef', { role: 'guest', scopes: ['read_api'] });
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const r = await runBundle(
      ['fetch', '--job', 'build', '--project', world.upstream.path, '--pipeline', String(p.id), '--path', 'guest'],
      world.env({ INPUT_TOKEN: 'glpat-guest-token-0123456789abcdef' }),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /No job matches "build"/);
    assert.match(r.output, /Reporter role/);
  });

  test('a name that matches nothing lists the jobs there are', async () => {
    const r = await runBundle(['fetch', '--job', 'biuld', '--path', 'none'], triggered(world, pipelineId));
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /No job matches "biuld"/);
    assert.match(r.output, /"build: \[linux\]"/);
  });
});

describe('large pipelines and limited job tokens', () => {
  const world = useWorld();

  test('pagination over more than 100 jobs finds a job on the last page', async () => {
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
    const target = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    for (let i = 0; i < 230; i++) world.sim.addJob({ pipelineId: p.id, name: `lint ${i}`, status: 'success' });
    world.sim.requests.length = 0;
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'paged', '--summary', 'paged.json'], triggered(world, p.id));
    assert.equal(r.status, 0, r.output);
    assert.equal(readJson(join(world.workspace, 'paged.json')).sources[0].job_id, target.id);
    assert.equal(world.sim.requests.filter((q) => q.path.endsWith(`/pipelines/${p.id}/jobs`)).length, 3);
  });

  test('a job token that cannot list jobs gets the recipe (exit 1), and the same token succeeds by job id', async () => {
    const locked = world.sim.addProject({ path: 'grp/old-gitlab', jobTokenAllowlist: [world.downstream.id], jobTokenCanListJobs: false });
    const p = world.sim.addPipeline({ projectId: locked.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const env = world.env({
      CI_PIPELINE_SOURCE: 'pipeline',
      CI_UPSTREAM_PROJECT_ID: String(locked.id),
      CI_UPSTREAM_PIPELINE_ID: String(p.id),
    });
    const refused = await runBundle(['fetch', '--job', 'build', '--path', 'old'], env);
    assert.equal(refused.status, 1, refused.output);
    assert.match(refused.output, /cannot list the jobs/);
    assert.match(refused.output, /read_api/);
    assert.match(refused.output, /BUILD_JOB_ID=\$CI_JOB_ID/);
    const byId = await runBundle(['fetch', '--job-id', String(j.id), '--path', 'old'], env);
    assert.equal(byId.status, 0, byId.output);
    assert.ok(existsSync(join(world.workspace, 'old/dist/app')));
  });

  test('an access token lists jobs where the job token cannot', async () => {
    const locked = world.sim.addProject({ path: 'grp/old-gitlab-2', jobTokenCanListJobs: false });
    const p = world.sim.addPipeline({ projectId: locked.id, ref: 'main', status: 'running' });
    world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const env = world.env({
      INPUT_TOKEN: PRIVATE_TOKEN,
      CI_PIPELINE_SOURCE: 'pipeline',
      CI_UPSTREAM_PROJECT_ID: String(locked.id),
      CI_UPSTREAM_PIPELINE_ID: String(p.id),
    });
    const r = await runBundle(['fetch', '--job', 'build', '--path', 'pat'], env);
    assert.equal(r.status, 0, r.output);
  });
});

// Key upstream flows on every GitLab version profile (test/simulator/profiles.ts).
for (const profile of PROFILE_NAMES) {
  const routes = PROFILES[profile];
  describe(`upstream key flows on GitLab ${profile}`, () => {
    const world = useWorld({ profile });

    /** An upstream pipeline with a finished build, and a downstream pipeline its trigger job started. */
    const triggeredPair = (tag: string) => {
      const up = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
      const build = world.sim.addJob({
        pipelineId: up.id,
        name: 'build',
        status: 'success',
        archive: world.zip(`${tag}-${profile}.zip`, [{ name: 'which.txt', data: `${tag}\n` }]),
      });
      const newer = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
      world.sim.addJob({ pipelineId: newer.id, name: 'build', status: 'success', archive: world.archive });
      const own = world.sim.addPipeline({
        projectId: world.downstream.id,
        ref: 'main',
        status: 'running',
        upstream: { projectId: world.upstream.id, pipelineId: up.id },
      });
      return { up, build, own };
    };

    test(`job names in the triggering pipeline, from ${routes.upstreamVariables ? 'CI_UPSTREAM_* (set by GitLab)' : 'the trigger variables UPSTREAM_*'}`, async () => {
      const { up, build, own } = triggeredPair('names');
      // lib/gitlab/ci/variables/builder/pipeline.rb: CI_UPSTREAM_* from 18.9 only; before, the trigger job passes them
      const vars = routes.upstreamVariables
        ? world.sim.upstreamVariables(own.id)
        : { UPSTREAM_PROJECT_ID: String(world.upstream.id), UPSTREAM_PIPELINE_ID: String(up.id) };
      assert.equal(Object.keys(world.sim.upstreamVariables(own.id)).length > 0, routes.upstreamVariables);
      // where pipeline jobs do not take a job token, an access token lists them
      const token = routes.jobToken.pipelineJobs ? {} : { INPUT_TOKEN: PRIVATE_TOKEN };
      const r = await runBundle(
        ['fetch', '--job', 'build', '--path', `names-${profile}`, '--summary', `names-${profile}.json`],
        world.env({ CI_PIPELINE_SOURCE: 'pipeline', CI_PIPELINE_ID: String(own.id), ...vars, ...token }),
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(readFileSync(join(world.workspace, `names-${profile}/which.txt`), 'utf8'), 'names\n');
      assert.equal(readJson(join(world.workspace, `names-${profile}.json`)).sources[0].job_id, build.id);
    });

    test(`a job token listing the upstream pipeline's jobs: ${routes.jobToken.pipelineJobs ? 'accepted' : 'anonymous, exit 1 with the job-id recipe'}`, async () => {
      const { up, own } = triggeredPair('jt-names');
      const r = await runBundle(
        ['fetch', '--job', 'build', '--path', `jt-names-${profile}`],
        world.env({
          CI_PIPELINE_SOURCE: 'pipeline',
          CI_PIPELINE_ID: String(own.id),
          UPSTREAM_PROJECT_ID: String(world.upstream.id),
          UPSTREAM_PIPELINE_ID: String(up.id),
        }),
      );
      if (routes.jobToken.pipelineJobs) {
        assert.equal(r.status, 0, r.output);
      } else {
        assert.equal(r.status, 1, r.output);
        assert.match(r.output, /404 Project Not Found/);
        assert.match(r.output, /anonymous/);
        assert.match(r.output, /job_id: \$BUILD_JOB_ID/);
      }
    });

    if (routes.upstreamVariables) {
      test('project given as a path with the numeric CI_UPSTREAM_PROJECT_ID: the same project, fetched', async () => {
        const { build, own } = triggeredPair('path');
        const token = routes.jobToken.pipelineJobs ? {} : { INPUT_TOKEN: PRIVATE_TOKEN };
        const r = await runBundle(
          ['fetch', '--job', 'build', '--project', world.upstream.path, '--path', `path-${profile}`, '--summary', `path-${profile}.json`],
          world.env({ CI_PIPELINE_SOURCE: 'pipeline', CI_PIPELINE_ID: String(own.id), ...world.sim.upstreamVariables(own.id), ...token }),
        );
        assert.equal(r.status, 0, r.output);
        assert.equal(readJson(join(world.workspace, `path-${profile}.json`)).sources[0].job_id, build.id);
      });
    }

    if (routes.statuses.includes('waiting_for_callback')) {
      test('a job in waiting_for_callback is waited for', async () => {
        const { up, own } = triggeredPair('callback');
        const j = world.sim.addJob({ pipelineId: up.id, name: 'late', status: 'waiting_for_callback' });
        world.sim.afterRequests({ path: new RegExp(`/pipelines/${up.id}/jobs$`) }, 2, () =>
          world.sim.setJobStatus(j.id, 'success', { archive: world.archive }),
        );
        const r = await runBundle(
          ['fetch', '--job', 'late', '--path', `callback-${profile}`, '--wait', '300'],
          world.env({ CI_PIPELINE_SOURCE: 'pipeline', CI_PIPELINE_ID: String(own.id), ...world.sim.upstreamVariables(own.id) }),
        );
        assert.equal(r.status, 0, r.output);
        assert.match(r.output, /waiting_for_callback/);
      });
    }

    test('an expired archive of a locked pipeline is fetched (artifacts[] without artifacts_file)', async () => {
      const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'success' });
      const expireAt = new Date(Date.now() - 86_400_000).toISOString();
      const j = world.sim.addJob({ pipelineId: p.id, name: 'kept', archive: world.archive, expireAt, locked: true });
      const r = await runBundle(
        [
          'fetch',
          '--job',
          'kept',
          '--project',
          world.upstream.path,
          '--pipeline',
          String(p.id),
          '--path',
          `locked-${profile}`,
          '--summary',
          `locked-${profile}.json`,
        ],
        world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(readJson(join(world.workspace, `locked-${profile}.json`)).sources[0].job_id, j.id);
    });

    for (const token of ['access', 'job'] as const) {
      const works = token === 'access' || routes.jobToken.bridges;
      test(`only the upstream project known, ${token} token: the trigger job found through ${routes.triggerJobsRoute ? 'trigger_jobs' : 'bridges'}${works ? '' : ' (refused: exit 1)'}`, async () => {
        const { build, own } = triggeredPair(`bridge-${token}`);
        world.sim.requests.length = 0;
        const r = await runBundle(
          ['fetch', '--job', 'build', '--path', `bridge-${token}-${profile}`, '--summary', `bridge-${token}-${profile}.json`],
          world.env({
            CI_PIPELINE_SOURCE: 'pipeline',
            CI_PIPELINE_ID: String(own.id),
            INPUT_PROJECT: world.upstream.path,
            ...(token === 'access' ? { INPUT_TOKEN: PRIVATE_TOKEN } : {}),
          }),
        );
        const asked = (route: string) => world.sim.requests.filter((q) => q.path.endsWith(`/${route}`));
        if (!works) {
          assert.equal(r.status, 1, r.output);
          assert.match(r.output, /cannot read the pipelines or trigger jobs of grp\/app/);
          assert.match(r.output, /treated the request as anonymous/);
          assert.match(r.output, /read_api/);
          return;
        }
        assert.equal(r.status, 0, r.output);
        assert.equal(readJson(join(world.workspace, `bridge-${token}-${profile}.json`)).sources[0].job_id, build.id);
        if (routes.triggerJobsRoute) {
          // bridges is deprecated in 19.2 (lib/api/ci/pipelines.rb): the newer route is used, bridges never asked
          assert.ok(asked('trigger_jobs').length > 0 && asked('trigger_jobs').every((q) => q.status === 200));
          assert.equal(asked('bridges').length, 0);
        } else {
          assert.equal(asked('trigger_jobs').length, 1, 'asked once, then remembered');
          assert.ok(asked('bridges').length > 0);
        }
      });
    }
  });
}
