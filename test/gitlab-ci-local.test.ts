// End to end through a real GitLab CI emulator: gitlab-ci-local (pinned devDependency) runs a pipeline that
// includes templates/fetch.yml as a component (by $CI_COMMIT_SHA, like the project's self-test), with the
// bundle on PATH as `artifact-relay` and the GitLab simulator in this process; a later job `needs` the fetch
// job and checks the files and the dotenv outputs it received as artifacts.
// A second pipeline runs the cleanup component in dry run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { makeCiLocalRepo, runCiLocal, type CiLocalRepo } from './helpers/ci-local.ts';
import { assertBundleFresh, cleanEnv } from './helpers/run.ts';
import { PRIVATE_TOKEN, startWorld, type World } from './helpers/world.ts';

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
});
