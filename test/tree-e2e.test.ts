// Artifacts across the pipeline tree end to end: a parent takes its child pipelines' jobs, a multi-project
// downstream takes a job of the upstream's child pipeline, a child pipeline that appears only after a few polls
// (a simulator hook keyed on request counts, not timers), name clashes, and a sibling downstream pipeline.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runBundle } from './helpers/run.ts';
import { PRIVATE_TOKEN, useWorld, type World } from './helpers/world.ts';

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const read = (world: World, file: string) => readFileSync(join(world.workspace, file), 'utf8');

/** A running parent pipeline in the upstream project, with a job of its own. */
function parent(world: World, own = 'prepare') {
  const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
  const job = world.sim.addJob({
    pipelineId: p.id,
    name: own,
    status: 'success',
    archive: world.zip(`${p.id}-${own}.zip`, [{ name: 'from.txt', data: `parent ${own}\n` }]),
  });
  return { pipeline: p, job };
}

function child(world: World, parentId: number, trigger: string, jobs: string[]) {
  const c = world.sim.addChildPipeline({ parentId, trigger, status: 'running' });
  const made = jobs.map((name) =>
    world.sim.addJob({
      pipelineId: c.id,
      name,
      status: 'success',
      archive: world.zip(`${c.id}-${name}.zip`, [{ name: `${name}.txt`, data: `${trigger} ${name}\n` }]),
    }),
  );
  return { pipeline: c, jobs: made };
}

const withToken = (world: World, extra: Record<string, string> = {}) => world.env({ INPUT_TOKEN: PRIVATE_TOKEN, ...extra });

describe('child pipelines', () => {
  const world = useWorld();

  test("a parent fetches its child and grandchild pipelines' jobs; the summary says where each came from", async () => {
    const { pipeline } = parent(world);
    const a = child(world, pipeline.id, 'child-a', ['build-a']);
    const b = child(world, pipeline.id, 'child-b', ['build-b']);
    const c = child(world, b.pipeline.id, 'child-c', ['docs']);
    const r = await runBundle(
      [
        'fetch',
        '--project',
        world.upstream.path,
        '--pipeline',
        String(pipeline.id),
        '--child-pipelines',
        'true',
        '--job',
        'build-a,build-b,docs,prepare',
        '--layout',
        'per-job',
        '--path',
        'tree',
        '--summary',
        'tree.json',
      ],
      withToken(world),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(read(world, 'tree/build-a/build-a.txt'), 'child-a build-a\n');
    assert.equal(read(world, 'tree/build-b/build-b.txt'), 'child-b build-b\n');
    assert.equal(read(world, 'tree/docs/docs.txt'), 'child-c docs\n');
    assert.equal(read(world, 'tree/prepare/from.txt'), 'parent prepare\n');
    const summary = readJson(join(world.workspace, 'tree.json'));
    const byName = Object.fromEntries(summary.sources.map((s: { job_name: string }) => [s.job_name, s]));
    assert.equal(byName['build-a'].pipeline_id, a.pipeline.id);
    assert.deepEqual(byName['build-a'].via_trigger_jobs, ['child-a']);
    assert.equal(byName.docs.pipeline_id, c.pipeline.id);
    assert.deepEqual(byName.docs.via_trigger_jobs, ['child-b', 'child-c']);
    assert.equal(byName.prepare.pipeline_id, pipeline.id);
    assert.deepEqual(byName.prepare.via_trigger_jobs, []);
    assert.match(r.output, new RegExp(`child pipeline ${c.pipeline.id} \\(trigger job "child-b > child-c"\\)`));
  });

  test('without child_pipelines, a name only a child pipeline has fails with a hint to set it', async () => {
    const { pipeline } = parent(world);
    child(world, pipeline.id, 'child-a', ['build-a']);
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--pipeline', String(pipeline.id), '--job', 'build-a', '--path', 'nohint'],
      withToken(world),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /No job matches "build-a"/);
    assert.match(r.output, /child pipelines \(trigger job\(s\) "child-a"\).*child_pipelines: true/s);
  });

  test("a multi-project downstream fetches a job of the upstream's child pipeline", async () => {
    const { pipeline } = parent(world);
    const c = child(world, pipeline.id, 'packaging', ['package']);
    const r = await runBundle(
      ['fetch', '--job', 'package', '--child-pipelines', 'true', '--path', 'mp', '--summary', 'mp.json'],
      withToken(world, {
        CI_PIPELINE_SOURCE: 'pipeline',
        CI_UPSTREAM_PROJECT_ID: String(world.upstream.id),
        CI_UPSTREAM_PIPELINE_ID: String(pipeline.id),
      }),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(read(world, 'mp/package.txt'), 'packaging package\n');
    const summary = readJson(join(world.workspace, 'mp.json'));
    assert.equal(summary.selected_by, 'upstream');
    assert.equal(summary.sources[0].job_id, c.jobs[0].id);
    assert.equal(summary.sources[0].pipeline_id, c.pipeline.id);
  });

  test('a child pipeline that appears only after a few polls is waited for', async () => {
    const { pipeline } = parent(world);
    const bridge = world.sim.addBridge({ pipelineId: pipeline.id, name: 'late-child', status: 'created' });
    const bridgesPath = new RegExp(`^/api/v4/projects/[^/]+/pipelines/${pipeline.id}/(trigger_jobs|bridges)$`);
    let late: ReturnType<typeof child> | undefined;
    // The third look at the trigger jobs finds the child pipeline (the world changes once the second was
    // answered): counted requests, no timers.
    world.sim.afterRequests({ method: 'GET', path: bridgesPath }, 2, () => {
      const c = world.sim.addChildPipeline({ parentId: pipeline.id, bridgeId: bridge.id, status: 'running' });
      const job = world.sim.addJob({
        pipelineId: c.id,
        name: 'late-build',
        status: 'success',
        archive: world.zip('late.zip', [{ name: 'late.txt', data: 'late\n' }]),
      });
      late = { pipeline: c, jobs: [job] };
    });
    world.sim.requests.length = 0;
    const r = await runBundle(
      [
        'fetch',
        '--project',
        world.upstream.path,
        '--pipeline',
        String(pipeline.id),
        '--child-pipelines',
        'true',
        '--job',
        'late-build',
        '--wait',
        '60',
        '--path',
        'late',
        '--summary',
        'late.json',
      ],
      withToken(world),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(read(world, 'late/late.txt'), 'late\n');
    assert.equal(world.sim.requests.filter((q) => bridgesPath.test(q.path)).length, 3, 'found on the third look, then no more looks');
    assert.match(r.output, /Waiting for trigger job\(s\) "late-child" to create their pipelines/);
    assert.equal(readJson(join(world.workspace, 'late.json')).sources[0].pipeline_id, late?.pipeline.id);
  });

  test('without wait, a child pipeline still being created is named in the not-found error', async () => {
    const { pipeline } = parent(world);
    world.sim.addBridge({ pipelineId: pipeline.id, name: 'slow-child', status: 'created' });
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--pipeline', String(pipeline.id), '--child-pipelines', 'true', '--job', 'x'],
      withToken(world),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /"slow-child" \(created\) have not created their pipelines yet; set wait/);
  });

  test('a name in two pipelines of the tree fails with advice; a trigger-job or pipeline qualifier picks one', async () => {
    const { pipeline, job: own } = parent(world, 'build');
    const a = child(world, pipeline.id, 'child-a', ['build']);
    child(world, pipeline.id, 'child-b', ['test']);
    const args = ['fetch', '--project', world.upstream.path, '--pipeline', String(pipeline.id), '--child-pipelines', 'true'];
    const clash = await runBundle([...args, '--job', 'build', '--path', 'clash'], withToken(world));
    assert.equal(clash.status, 1, clash.output);
    assert.match(clash.output, /Job name "build" \(from "build"\) is in more than one pipeline of the tree/);
    assert.match(clash.output, new RegExp(`job ${own.id} in pipeline ${pipeline.id}`));
    assert.match(clash.output, new RegExp(`job ${a.jobs[0].id} in child pipeline ${a.pipeline.id}`));
    assert.match(clash.output, /"child-a:build"/);

    const qualified = await runBundle([...args, '--job', 'child-a:build', '--path', 'q', '--summary', 'q.json'], withToken(world));
    assert.equal(qualified.status, 0, qualified.output);
    assert.equal(read(world, 'q/build.txt'), 'child-a build\n');
    assert.equal(readJson(join(world.workspace, 'q.json')).sources[0].job_id, a.jobs[0].id);

    const mine = await runBundle([...args, '--job', `${pipeline.id}:build`, '--path', 'mine', '--summary', 'mine.json'], withToken(world));
    assert.equal(mine.status, 0, mine.output);
    assert.equal(readJson(join(world.workspace, 'mine.json')).sources[0].job_id, own.id);
  });
});

describe('sibling pipelines', () => {
  const world = useWorld();

  test("pipeline A triggers B and C; C takes B's artifacts with sibling_project", async () => {
    const { sim } = world;
    const b = sim.addProject({ path: 'grp/backend' });
    const a = sim.addPipeline({ projectId: world.upstream.id, ref: 'main', status: 'running' });
    const triggerB = sim.addBridge({ pipelineId: a.id, name: 'trigger-backend' });
    const triggerC = sim.addBridge({ pipelineId: a.id, name: 'trigger-deploy' });
    const bPipeline = sim.addPipeline({
      projectId: b.id,
      status: 'running',
      upstream: { projectId: world.upstream.id, pipelineId: a.id, bridgeJobId: triggerB.id },
    });
    const bBuild = sim.addJob({
      pipelineId: bPipeline.id,
      name: 'build',
      status: 'success',
      archive: world.zip('backend.zip', [{ name: 'backend.txt', data: 'backend build\n' }]),
    });
    const cPipeline = sim.addPipeline({
      projectId: world.downstream.id,
      status: 'running',
      upstream: { projectId: world.upstream.id, pipelineId: a.id, bridgeJobId: triggerC.id },
    });
    const r = await runBundle(
      ['fetch', '--job', 'build', '--sibling-project', b.path, '--path', 'sib', '--summary', 'sib.json'],
      world.env({
        INPUT_TOKEN: PRIVATE_TOKEN,
        CI_PIPELINE_SOURCE: 'pipeline',
        CI_PIPELINE_ID: String(cPipeline.id),
        CI_UPSTREAM_PROJECT_ID: String(world.upstream.id),
        CI_UPSTREAM_PIPELINE_ID: String(a.id),
      }),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(read(world, 'sib/backend.txt'), 'backend build\n');
    const summary = readJson(join(world.workspace, 'sib.json'));
    assert.equal(summary.sources[0].job_id, bBuild.id);
    assert.equal(summary.sources[0].pipeline_id, bPipeline.id);
    assert.equal(summary.sources[0].project_id, b.id);
    assert.deepEqual(summary.sources[0].via_trigger_jobs, ['trigger-backend']);
    assert.match(r.output, /Sibling pipeline \d+ of grp\/backend, triggered by "trigger-backend"/);
  });

  test('sibling_project with job_id is refused with exit 2', async () => {
    const r = await runBundle(['fetch', '--job-id', '1', '--sibling-project', 'grp/backend'], world.env({ INPUT_TOKEN: PRIVATE_TOKEN }));
    assert.equal(r.status, 2, r.output);
    assert.match(r.output, /sibling_project works with job names/);
  });
});
