// The container image: built from the Dockerfile (on a locally made base), run the way GitLab Runner runs a
// job (`sh -c` with the job script, as a non-root user, workspace mounted), against the GitLab simulator.
// Always runs (npm test / .ci/run); opt out only explicitly with ARTIFACT_RELAY_IMAGE_TEST=0, e.g. in CI
// jobs without podman, where the image is exercised by the project pipeline's component-fetch job instead.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ROOT, interpolate, type Inputs } from './helpers/ci-local.ts';
import { assertPodmanWorks, buildImage, podmanRun } from './helpers/image.ts';
import { PRIVATE_TOKEN, startWorld, type World } from './helpers/world.ts';

const optOut = process.env.ARTIFACT_RELAY_IMAGE_TEST === '0';

/** templates/fetch.yml's job with its defaults and `inputs` interpolated: its variables and its script, joined. */
function fetchTemplateJob(inputs: Inputs): { variables: Record<string, string>; script: string } {
  const [header, body] = parseAllDocuments(readFileSync(join(ROOT, 'templates/fetch.yml'), 'utf8')).map((d) => d.toJS());
  const all: Inputs = {};
  for (const [name, s] of Object.entries(header.spec.inputs as Record<string, { default: Inputs[string] }>)) all[name] = s.default;
  const job = Object.values(interpolate(body, { ...all, ...inputs }) as Record<string, any>)[0];
  return { variables: job.variables, script: (job.script as string[]).join('\n') };
}

describe('container image', {
  skip: optOut ? 'ARTIFACT_RELAY_IMAGE_TEST=0: image test turned off explicitly' : false,
  timeout: 900_000,
}, () => {
  let world: World;
  let image: string;
  let ws: string;
  before(async () => {
    const b = await buildImage();
    image = b.image;
    console.log(
      `# image ${image}: ${(b.sizeBytes / 1024 / 1024).toFixed(1)} MiB (${b.sizeBytes} bytes), build step ${b.seconds.toFixed(1)} s`,
    );
    await assertPodmanWorks(image);
    world = await startWorld({ downloadMode: 'redirect' });
    // GitLab Runner's docker executor clones with umask 0000, so the workspace is writable by any uid.
    ws = mkdtempSync(join(tmpdir(), 'ar-image-ws-'));
    chmodSync(ws, 0o777);
  });
  after(async () => {
    await world?.close();
    if (ws) rmSync(ws, { recursive: true, force: true });
  });

  test('has /bin/sh, no entrypoint, runs as a non-root user, OCI labels', async () => {
    const r = await podmanRun([image, '/bin/sh', '-c', 'id -u; id -g; command -v artifact-relay; artifact-relay --version']);
    assert.equal(r.status, 0, r.stderr);
    const [uid, gid, bin, version] = r.stdout.trim().split('\n');
    assert.notEqual(uid, '0', 'runs as root');
    assert.equal(gid, '0');
    assert.equal(bin, '/usr/local/bin/artifact-relay');
    assert.match(version, /\d+\.\d+\.\d+/);
    const inspect = await import('node:child_process').then(
      (cp) => JSON.parse(cp.execFileSync('podman', ['image', 'inspect', image], { encoding: 'utf8' }))[0],
    );
    const config = inspect.Config ?? inspect.config;
    assert.ok(!config.Entrypoint || config.Entrypoint.length === 0, `entrypoint ${JSON.stringify(config.Entrypoint)}`);
    assert.deepEqual(config.Cmd, ['artifact-relay', '--help']);
    for (const label of ['source', 'version', 'description', 'licenses']) {
      assert.ok(config.Labels[`org.opencontainers.image.${label}`], `label org.opencontainers.image.${label}`);
    }
  });

  test("the wrapper passes node only --max-semi-space-size; on the image's Node a command's run-time V8 settings hold", async () => {
    // src/runtime/v8-flags.ts run by the image's node itself (Node 24 strips the types): gc without --expose-gc on the
    // command line, and an optimising compile that goes no further than Maglev.
    const probe = [
      "import * as flags from '/probe/v8-flags.ts';",
      'flags.tuneV8();',
      'function hot(a) { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * 2; return s; }',
      'const a = new Float64Array(10);',
      '%PrepareFunctionForOptimization(hot); hot(a); hot(a); %OptimizeFunctionOnNextCall(hot); hot(a);',
      "console.log(typeof gc, (%GetOptimizationStatus(hot) & (1 << 6)) ? 'turbofan' : 'no-turbofan');",
    ].join('\n');
    const r = await podmanRun([
      '-v',
      `${join(ROOT, 'src/runtime')}:/probe:ro`,
      image,
      'sh',
      '-c',
      `grep -o 'exec node [^/]*' /usr/local/bin/artifact-relay; node --allow-natives-syntax --input-type=module -e "$0"`,
      probe,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['exec node --max-semi-space-size=1 ', 'function no-turbofan']);
  });

  test('artifact-relay fetch through sh -c, like a runner: files extracted, outputs written, exit 0', async () => {
    const env: Record<string, string> = {
      CI: 'true',
      CI_PROJECT_DIR: '/builds/ws',
      CI_SERVER_URL: world.sim.url,
      CI_API_V4_URL: world.sim.apiUrl,
      INPUT_TOKEN: PRIVATE_TOKEN,
      INPUT_PROJECT: world.upstream.path,
      INPUT_JOB_ID: ` ["${world.build.id}"]`, // the form the template produces from an array input
      INPUT_PATH: 'fetched',
      INPUT_DOTENV: 'relay.env',
      INPUT_SUMMARY: 'relay.json',
      INPUT_OVERWRITE: ' true',
    };
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    const r = await podmanRun([
      '--network=host',
      ...envArgs,
      '-v',
      `${ws}:/builds/ws`,
      '-w',
      '/builds/ws',
      image,
      'sh',
      '-c',
      'artifact-relay fetch',
    ]);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(PRIVATE_TOKEN), 'token printed');
    assert.equal(readFileSync(join(ws, 'fetched/dist/config.json'), 'utf8'), '{"version":"1.0.0"}\n');
    const dotenv = readFileSync(join(ws, 'relay.env'), 'utf8');
    assert.match(dotenv, /^ARTIFACT_RELAY_FOUND=true$/m);
    assert.match(dotenv, new RegExp(`^ARTIFACT_RELAY_JOB_ID=${world.build.id}$`, 'm'));
    assert.equal(JSON.parse(readFileSync(join(ws, 'relay.json'), 'utf8')).found, true);
  });

  test('the fetch template as a runner that checked the repository out runs it (path ., non-root): only the fetched tree, summary and dotenv remain', async () => {
    const job = fetchTemplateJob({ token: PRIVATE_TOKEN, project: world.upstream.path, job_id: [String(world.build.id)] });
    assert.equal(job.variables.GIT_STRATEGY, 'empty');
    const root = mkdtempSync(join(tmpdir(), 'ar-image-tpl-'));
    try {
      // A checkout as a runner before 17.3 leaves it for the unknown GIT_STRATEGY empty (its helper clones with
      // umask 0000), including a file at a path the upstream archive also has.
      for (const d of ['.git/objects', 'src', 'dist']) mkdirSync(join(root, d), { recursive: true, mode: 0o777 });
      for (const f of ['.git/HEAD', 'src/main.c', 'README.md', 'dist/config.json'])
        writeFileSync(join(root, f), 'checkout\n', { mode: 0o666 });
      for (const d of ['', '.git', '.git/objects', 'src', 'dist']) chmodSync(join(root, d), 0o777);
      const env = { ...job.variables, CI: 'true', CI_PROJECT_DIR: '/builds/ws', CI_API_V4_URL: world.sim.apiUrl };
      const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
      const r = await podmanRun([
        '--network=host',
        ...envArgs,
        '-v',
        `${root}:/builds/ws`,
        '-w',
        '/builds/ws',
        image,
        'sh',
        '-c',
        job.script,
      ]);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /emptying the project directory/);
      assert.deepEqual(readdirSync(root).sort(), ['artifact-relay-fetch.env', 'artifact-relay-fetch.json', 'current', 'dist', 'reports']);
      assert.deepEqual(readdirSync(join(root, 'dist')).sort(), ['app', 'config.json', 'private.key']);
      assert.equal(readFileSync(join(root, 'dist/config.json'), 'utf8'), '{"version":"1.0.0"}\n');

      // What GIT_STRATEGY none can leave: an earlier job's folder its root user made (0755), which the image's user
      // cannot empty. The job fails, saying why, instead of uploading those files.
      mkdirSync(join(root, 'left-by-root'), { mode: 0o755 });
      writeFileSync(join(root, 'left-by-root/old.bin'), 'old\n');
      chmodSync(join(root, 'left-by-root'), 0o755);
      const denied = await podmanRun([
        '--network=host',
        ...envArgs,
        '-v',
        `${root}:/builds/ws`,
        '-w',
        '/builds/ws',
        image,
        'sh',
        '-c',
        job.script,
      ]);
      assert.equal(denied.status, 1, `${denied.stdout}\n${denied.stderr}`);
      assert.match(denied.stderr, /cannot empty '\.'.*git_strategy: empty/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('path: . as the non-root user, whose workspace parent (/builds) is not writable: staged inside, nothing left behind', async () => {
    const env: Record<string, string> = {
      CI: 'true',
      CI_PROJECT_DIR: '/builds/ws',
      CI_API_V4_URL: world.sim.apiUrl,
      INPUT_TOKEN: PRIVATE_TOKEN,
      INPUT_PROJECT: world.upstream.path,
      INPUT_JOB_ID: String(world.build.id),
    };
    const root = mkdtempSync(join(tmpdir(), 'ar-image-dot-'));
    chmodSync(root, 0o777);
    try {
      const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
      const r = await podmanRun([
        '--network=host',
        ...envArgs,
        '-v',
        `${root}:/builds/ws`,
        '-w',
        '/builds/ws',
        image,
        'sh',
        '-c',
        'test ! -w /builds && artifact-relay fetch',
      ]);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.deepEqual(readdirSync(root).sort(), ['current', 'dist', 'reports']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
