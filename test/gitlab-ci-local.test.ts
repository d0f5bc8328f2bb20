// End to end through a real GitLab CI emulator: gitlab-ci-local (pinned devDependency) runs a pipeline that
// includes templates/fetch.yml as a component (by $CI_COMMIT_SHA, like the project's self-test), with the
// bundle on PATH as `artifact-relay` and the GitLab simulator in this process; a later job `needs` the fetch
// job and checks the files and the dotenv outputs it received as artifacts.
// A second pipeline runs the cleanup component in dry run; a third the keep component (a dry run, then a keep).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { makeCiLocalRepo, runCiLocal, type CiLocalRepo } from './helpers/ci-local.ts';
import { assertBundleFresh, cleanEnv } from './helpers/run.ts';
import { BUILD_ENTRIES, PRIVATE_TOKEN, startWorld, type World } from './helpers/world.ts';

/** gitlab-ci-local copies artifacts with rsync; .ci/run installs it (a test never installs anything). */
function assertRsync() {
  const r = spawnSync('sh', ['-c', 'command -v rsync'], { encoding: 'utf8' });
  assert.equal(r.status, 0, 'gitlab-ci-local needs rsync on PATH: install it (.ci/run does: apt-get install rsync)');
}

describe('component through gitlab-ci-local', { timeout: 300_000 }, () => {
  let world: World;
  let repo: CiLocalRepo;
  before(async () => {
    assertBundleFresh();
    assertRsync();
    world = await startWorld({ downloadMode: 'redirect' });
    const pipeline = {
      stages: ['build', 'test'],
      include: [
        {
          component: '$CI_SERVER_FQDN/grp/artifact-relay/fetch@$CI_COMMIT_SHA',
          inputs: {
            job_name: 'relay-fetch',
            stage: 'build',
            image_tag: 'unused-by-the-shell-executor',
            server_url: world.sim.url,
            token: '$RELAY_TOKEN',
            project: world.upstream.path,
            job_id: [String(world.build.id)],
            path: 'fetched',
            exclude: ['reports/**'],
            max_bytes: '100MiB',
          },
        },
      ],
      // Merged into the component's job. gitlab-ci-local gives jobs that declare an image the docker path
      // CI_PROJECT_DIR=/builds/<project> even under --force-shell-executor: point it at the real workspace.
      'relay-fetch': { before_script: ['export CI_PROJECT_DIR="$PWD"'] },
      'check-fetch': {
        stage: 'test',
        needs: ['relay-fetch'],
        script: [
          'env | grep "^ARTIFACT_RELAY_" | sort',
          'test "$ARTIFACT_RELAY_FOUND" = true',
          `test "$ARTIFACT_RELAY_JOB_ID" = ${world.build.id}`,
          'test "$ARTIFACT_RELAY_PATH" = fetched',
          `test "$(cat fetched/dist/config.json)" = '{"version":"1.0.0"}'`,
          'test -x fetched/dist/app',
          'test -L fetched/current',
          'test ! -e fetched/reports',
          'test -s artifact-relay-fetch.json',
          'echo CHECK-FETCH-OK',
        ],
      },
    };
    repo = makeCiLocalRepo({ gitlabCi: stringify(pipeline), projectPath: 'grp/artifact-relay' });
  });
  after(async () => {
    await world?.close();
    repo?.cleanup();
  });

  test('fetch job unpacks the upstream artifacts; a later job gets the files and the dotenv outputs', async () => {
    const env = cleanEnv({ PATH: `${repo.binDir}:${process.env.PATH}` });
    const r = await runCiLocal(repo.dir, ['--shell-isolation', '--variable', `RELAY_TOKEN=${PRIVATE_TOKEN}`], env);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /CHECK-FETCH-OK/);
    // gitlab-ci-local's summary line for the job (" PASS  relay-fetch"), not any mention of it.
    assert.match(r.output, /^\s*PASS\s+.*\brelay-fetch\b/m);
    assert.ok(!r.output.includes(PRIVATE_TOKEN), 'the token appeared in the job log');
  });

  test('path . with a build stage and a checkout of its own: the fetch job uploads only the fetched tree, summary and dotenv', async () => {
    // The consuming project: repository files of its own (one at a path the upstream archive also has), and a
    // build stage whose job has artifacts. gitlab-ci-local copies the repository into every job's folder whatever
    // GIT_STRATEGY says, as a runner before 17.3 does with the unknown `empty`: the template's clean step must
    // remove that checkout, and dependencies: [] must keep own-build's artifacts out.
    const pipeline = {
      stages: ['build', 'test', 'verify'],
      include: [
        {
          component: '$CI_SERVER_FQDN/grp/artifact-relay/fetch@$CI_COMMIT_SHA',
          inputs: {
            job_name: 'relay-fetch',
            image_tag: 'unused-by-the-shell-executor',
            server_url: world.sim.url,
            token: '$RELAY_TOKEN',
            project: world.upstream.path,
            job_id: [String(world.build.id)],
            max_bytes: '100MiB',
          },
        },
      ],
      'own-build': {
        stage: 'build',
        script: ['mkdir -p build-out', 'echo own > build-out/own.txt', 'echo own > own-root.txt'],
        artifacts: { paths: ['build-out/', 'own-root.txt'] },
      },
      'relay-fetch': {
        before_script: [
          'export CI_PROJECT_DIR="$PWD"',
          // What the job starts with: the checkout (and, were dependencies not [], own-build's artifacts).
          // (one test per line: bash -e ignores a failure on the left of &&)
          'test -f own-source.txt',
          `test "$(cat dist/config.json)" = '{"from":"the checkout"}'`,
          'test ! -e build-out',
          'test ! -e own-root.txt',
        ],
      },
      'check-fetch': {
        stage: 'verify',
        needs: ['relay-fetch'],
        script: [
          'test "$ARTIFACT_RELAY_FOUND" = true',
          `test "$ARTIFACT_RELAY_JOB_ID" = ${world.build.id}`,
          'test "$ARTIFACT_RELAY_PATH" = .',
          // At the upstream paths, with the upstream content (not the checkout's dist/config.json).
          `test "$(cat dist/config.json)" = '{"version":"1.0.0"}'`,
          'test -x dist/app',
          'test "$(readlink current)" = dist/app',
          'test -s reports/build.log',
          'test -s artifact-relay-fetch.json',
          // Nothing of the build stage came through the fetch job.
          'test ! -e build-out',
          'test ! -e own-root.txt',
          'echo CHECK-DOT-OK',
        ],
      },
    };
    const dotRepo = makeCiLocalRepo({
      gitlabCi: stringify(pipeline),
      projectPath: 'grp/artifact-relay',
      files: { 'own-source.txt': 'source of the consuming project\n', 'dist/config.json': '{"from":"the checkout"}\n' },
    });
    try {
      const env = cleanEnv({ PATH: `${dotRepo.binDir}:${process.env.PATH}` });
      const r = await runCiLocal(dotRepo.dir, ['--shell-isolation', '--variable', `RELAY_TOKEN=${PRIVATE_TOKEN}`], env);
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /CHECK-DOT-OK/);
      assert.match(r.output, /emptying the project directory/);
      // The fetch job's artifacts, as gitlab-ci-local stored them (its dotenv report copy aside): exactly the
      // upstream tree plus the summary and the dotenv file.
      const stored = join(dotRepo.dir, '.gitlab-ci-local/artifacts/relay-fetch');
      const files = readdirSync(stored, { recursive: true, encoding: 'utf8' })
        .filter((f) => f !== '.gitlab-ci-reports' && !f.startsWith('.gitlab-ci-reports/'))
        .sort();
      const upstream = new Set<string>();
      for (const e of BUILD_ENTRIES) {
        const parts = e.name.replace(/\/$/, '').split('/');
        for (let i = 1; i <= parts.length; i++) upstream.add(parts.slice(0, i).join('/'));
      }
      const expected = [...upstream, 'artifact-relay-fetch.json', 'artifact-relay-fetch.env'].sort();
      assert.deepEqual(files, expected);
      assert.ok(!r.output.includes(PRIVATE_TOKEN), 'the token appeared in the job log');
    } finally {
      dotRepo.cleanup();
    }
  });

  test('cleanup component in dry run: job passes, outputs reach the next job, nothing is deleted', async () => {
    const pipeline = {
      stages: ['build', 'test'],
      include: [
        {
          component: '$CI_SERVER_FQDN/grp/artifact-relay/cleanup@$CI_COMMIT_SHA',
          inputs: {
            job_name: 'relay-cleanup',
            stage: 'build',
            server_url: world.sim.url,
            token: '$RELAY_TOKEN',
            project: [world.upstream.path],
            older_than: '1m',
            keep_latest: 0,
            dry_run: true,
          },
        },
      ],
      'relay-cleanup': { before_script: ['export CI_PROJECT_DIR="$PWD"'] },
      'check-cleanup': {
        stage: 'test',
        needs: ['relay-cleanup'],
        script: [
          'env | grep "^ARTIFACT_RELAY_" | sort',
          'test -n "$ARTIFACT_RELAY_DELETED_JOBS"',
          'test -s artifact-relay-cleanup-report.json',
          'echo CHECK-CLEANUP-OK',
        ],
      },
    };
    const cleanupRepo = makeCiLocalRepo({ gitlabCi: stringify(pipeline), projectPath: 'grp/artifact-relay' });
    try {
      const env = cleanEnv({ PATH: `${cleanupRepo.binDir}:${process.env.PATH}` });
      const r = await runCiLocal(cleanupRepo.dir, ['--shell-isolation', '--variable', `RELAY_TOKEN=${PRIVATE_TOKEN}`], env);
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /CHECK-CLEANUP-OK/);
      assert.deepEqual(world.sim.deletedArtifacts, [], 'a dry run deleted artifacts');
      assert.ok(!r.output.includes(PRIVATE_TOKEN), 'the token appeared in the job log');
    } finally {
      cleanupRepo.cleanup();
    }
  });

  test('keep component: a dry run changes nothing, then the keep removes the expiry; outputs reach the next job', async () => {
    const target = world.sim.addJob({ pipelineId: world.build.pipelineId, name: 'package: [linux]', archive: world.archive });
    const expiry = world.sim.jobs().find((j) => j.id === target.id)?.expireAt;
    assert.ok(expiry, 'the job expires before');
    const keepInputs = {
      stage: 'build',
      server_url: world.sim.url,
      token: '$RELAY_TOKEN',
      project: world.upstream.path,
      pipeline: String(world.build.pipelineId),
      job: ['package:*'],
    };
    const pipeline = {
      stages: ['build', 'test'],
      include: [
        {
          component: '$CI_SERVER_FQDN/grp/artifact-relay/keep@$CI_COMMIT_SHA',
          inputs: { ...keepInputs, job_name: 'relay-keep-dry', dry_run: true, summary: 'keep-dry.json', dotenv: 'keep-dry.env' },
        },
        { component: '$CI_SERVER_FQDN/grp/artifact-relay/keep@$CI_COMMIT_SHA', inputs: { ...keepInputs, job_name: 'relay-keep' } },
      ],
      'relay-keep-dry': { before_script: ['export CI_PROJECT_DIR="$PWD"'] },
      // The real keep runs after the dry run, so the dry run sees the expiry still set.
      'relay-keep': { needs: ['relay-keep-dry'], before_script: ['export CI_PROJECT_DIR="$PWD"'] },
      'check-keep': {
        stage: 'test',
        needs: ['relay-keep'],
        script: [
          'env | grep "^ARTIFACT_RELAY_" | sort',
          'test "$ARTIFACT_RELAY_KEPT" = true',
          `test "$ARTIFACT_RELAY_KEPT_JOB_IDS" = ${target.id}`,
          'test -s artifact-relay-keep.json',
          'echo CHECK-KEEP-OK',
        ],
      },
    };
    const keepRepo = makeCiLocalRepo({ gitlabCi: stringify(pipeline), projectPath: 'grp/artifact-relay' });
    try {
      const env = cleanEnv({ PATH: `${keepRepo.binDir}:${process.env.PATH}` });
      const r = await runCiLocal(keepRepo.dir, ['--shell-isolation', '--variable', `RELAY_TOKEN=${PRIVATE_TOKEN}`], env);
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /CHECK-KEEP-OK/);
      assert.match(r.output, new RegExp(`Would keep the artifacts of job ${target.id}`));
      const keeps = world.sim.requests.filter((q) => q.method === 'POST' && q.path.endsWith(`/jobs/${target.id}/artifacts/keep`));
      assert.equal(keeps.length, 1, 'the dry run sent no keep; the keep sent one');
      assert.equal(world.sim.jobs().find((j) => j.id === target.id)?.expireAt, null, 'kept: no expiry');
      assert.ok(!r.output.includes(PRIVATE_TOKEN), 'the token appeared in the job log');
    } finally {
      keepRepo.cleanup();
    }
  });
});
