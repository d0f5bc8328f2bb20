// End to end: the built bundle runs as a child process against the GitLab simulator, as a CI job would.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostile } from './helpers/archives.ts';
import { runBundle } from './helpers/run.ts';
import { snapshotTree } from './helpers/tree.ts';
import { JOB_TOKEN, OAUTH_TOKEN, PRIVATE_TOKEN, startWorld, tokenHeadersSeen, type World } from './helpers/world.ts';

function unzipReference(world: World, archive: string): ReturnType<typeof snapshotTree> {
  const out = mkdtempSync(join(world.dir, 'ref-'));
  execFileSync('unzip', ['-q', archive, '-d', out]);
  return snapshotTree(out);
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const dotenv = (file: string) => Object.fromEntries(readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2)));

function assertNoSecret(output: string) {
  for (const secret of [JOB_TOKEN, PRIVATE_TOKEN, OAUTH_TOKEN]) {
    assert.ok(!output.includes(secret), 'a token value appeared in the output');
    assert.ok(!output.includes(Buffer.from(secret).toString('base64')), 'a base64 token appeared in the output');
  }
}

describe('fetch by job id', () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(() => world.close());

  for (const [tokenType, token, header, expected] of [
    ['job', JOB_TOKEN, 'job-token', JOB_TOKEN],
    ['private', PRIVATE_TOKEN, 'private-token', PRIVATE_TOKEN],
    ['oauth', OAUTH_TOKEN, 'authorization', `Bearer ${OAUTH_TOKEN}`],
  ] as const) {
    test(`with a ${tokenType} token: unpacks exactly what unzip produces, the token never reaches storage`, async () => {
      world.sim.requests.length = 0;
      const dest = `out-${tokenType}`;
      const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', dest, '--summary', 's.json', '--dotenv', 'r.env'], world.env({ INPUT_TOKEN: token, INPUT_TOKEN_TYPE: tokenType === 'job' ? 'auto' : tokenType }));
      assert.equal(r.status, 0, r.output);
      assert.deepEqual(snapshotTree(join(world.workspace, dest)), unzipReference(world, world.archive));
      const apiHits = world.sim.requests.filter((q) => q.origin === 'gitlab' && q.path.endsWith('/artifacts'));
      assert.ok(apiHits.length >= 1);
      for (const hit of apiHits) assert.equal(hit.headers[header], expected);
      const storage = world.sim.requests.filter((q) => q.origin === 'storage');
      assert.ok(storage.length >= 1, 'the download went through object storage (302)');
      assert.deepEqual(tokenHeadersSeen(world.sim, 'storage'), []);
      const summary = readJson(join(world.workspace, 's.json'));
      assert.equal(summary.found, true);
      assert.equal(summary.sources[0].job_id, world.build.id);
      assert.equal(summary.sources[0].sha256, world.archiveSha256);
      assert.equal(summary.sources[0].path, dest);
      const env = dotenv(join(world.workspace, 'r.env'));
      assert.equal(env.ARTIFACT_RELAY_FOUND, 'true');
      assert.equal(env.ARTIFACT_RELAY_JOB_ID, String(world.build.id));
      assert.equal(env.ARTIFACT_RELAY_PATH, dest);
      assert.equal(env.ARTIFACT_RELAY_FILES, '5');
      assertNoSecret(r.output);
      assert.match(r.output, /section_start:\d+:/, 'GitLab collapsible sections');
      assert.match(r.output, /Fetched 5 file\(s\)/);
    });
  }

  test('proxied download (200 from GitLab, no redirect) gives the same tree', async () => {
    world.sim.downloadMode = 'proxy';
    try {
      world.sim.requests.length = 0;
      const r = await runBundle(['fetch', '--project', String(world.upstream.id), '--job-id', String(world.build.id), '--path', 'proxied'], world.env());
      assert.equal(r.status, 0, r.output);
      assert.equal(world.sim.requests.filter((q) => q.origin === 'storage').length, 0);
      assert.deepEqual(snapshotTree(join(world.workspace, 'proxied')), unzipReference(world, world.archive));
    } finally {
      world.sim.downloadMode = 'redirect';
    }
  });

  test('single files by job id, nothing else written', async () => {
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--artifact-path', 'dist/config.json,reports/build.log', '--path', 'single', '--summary', 'single.json'], world.env());
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(snapshotTree(join(world.workspace, 'single')).map((e) => e.path), ['dist', 'dist/config.json', 'reports', 'reports/build.log']);
    assert.equal(readFileSync(join(world.workspace, 'single/dist/config.json'), 'utf8'), '{"version":"1.0.0"}\n');
    const summary = readJson(join(world.workspace, 'single.json'));
    assert.equal(summary.sources[0].files, 2);
    assert.ok(world.sim.requests.some((q) => q.path.endsWith('/artifacts/dist/config.json')));
  });

  test('a missing single file is "not found": exit 1 under fail, exit 0 with found=false under warn', async () => {
    const args = ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--artifact-path', 'no/such.txt', '--path', 'nf', '--dotenv', 'nf.env'];
    const failed = await runBundle(args, world.env());
    assert.equal(failed.status, 1, failed.output);
    assert.match(failed.output, /not found|no such/i);
    assert.equal(existsSync(join(world.workspace, 'nf')), false);
    const warned = await runBundle([...args, '--if-not-found', 'warn'], world.env());
    assert.equal(warned.status, 0, warned.output);
    assert.match(warned.output, /WARNING/);
    assert.equal(dotenv(join(world.workspace, 'nf.env')).ARTIFACT_RELAY_FOUND, 'false');
  });

  test('dry run resolves and lists but downloads and writes nothing', async () => {
    world.sim.requests.length = 0;
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--ref', 'main', '--job', 'build', '--path', 'dry', '--dry-run', '--summary', 'dry.json'], world.env({ INPUT_TOKEN: PRIVATE_TOKEN }));
    assert.equal(r.status, 0, r.output);
    assert.equal(existsSync(join(world.workspace, 'dry')), false);
    assert.equal(world.sim.requests.filter((q) => q.origin === 'storage').length, 0);
    assert.equal(world.sim.requests.filter((q) => q.method === 'GET' && /\/artifacts$|\/download$/.test(q.path)).length, 0);
    const summary = readJson(join(world.workspace, 'dry.json'));
    assert.equal(summary.dry_run, true);
    assert.equal(summary.sources[0].job_id, world.build.id);
    assert.match(r.output, /Would fetch/);
  });

  test('overwrite false refuses before writing anything when a file exists', async () => {
    const dest = join(world.workspace, 'keep');
    mkdirSync(join(dest, 'dist'), { recursive: true });
    writeFileSync(join(dest, 'dist/config.json'), 'mine');
    const before = snapshotTree(dest);
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'keep', '--overwrite', 'false'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /overwrite is false/);
    assert.deepEqual(snapshotTree(dest), before);
  });
});

describe('fetch by ref and job', () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(() => world.close());

  for (const [label, token] of [
    ['access token (lists pipelines, downloads by job id)', PRIVATE_TOKEN],
    ['job token', JOB_TOKEN],
  ] as const) {
    test(`takes the latest successful pipeline of the ref, with a ${label}`, async () => {
      const dest = `ref-${token.slice(0, 5)}`;
      const r = await runBundle(['fetch', '--project', world.upstream.path, '--ref', 'main', '--job', 'build', '--path', dest, '--summary', `${dest}.json`], world.env({ INPUT_TOKEN: token }));
      assert.equal(r.status, 0, r.output);
      assert.equal(readFileSync(join(world.workspace, dest, 'dist/app'), 'utf8'), '#!/bin/sh\necho app\n');
      const summary = readJson(join(world.workspace, `${dest}.json`));
      assert.equal(summary.sources[0].ref, 'main');
      assertNoSecret(r.output);
    });
  }

  test('single file by ref', async () => {
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--ref', 'main', '--job', 'build', '--artifact-path', 'dist/config.json', '--path', 'ref-single'], world.env());
    assert.equal(r.status, 0, r.output);
    assert.equal(readFileSync(join(world.workspace, 'ref-single/dist/config.json'), 'utf8'), '{"version":"1.0.0"}\n');
  });

  test('a ref without a successful pipeline is not found (exit 1), or found=false under ignore (exit 0)', async () => {
    const failed = await runBundle(['fetch', '--project', world.upstream.path, '--ref', 'nope', '--job', 'build', '--path', 'x'], world.env());
    assert.equal(failed.status, 1, failed.output);
    const ignored = await runBundle(['fetch', '--project', world.upstream.path, '--ref', 'nope', '--job', 'build', '--path', 'x', '--if-not-found', 'ignore'], world.env());
    assert.equal(ignored.status, 0, ignored.output);
    assert.equal(existsSync(join(world.workspace, 'x')), false);
  });
});

describe('network faults are ridden out byte-exact', () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(() => world.close());

  const cases: [string, Parameters<World['sim']['injectFault']>[0]][] = [
    ['429 with Retry-After on the API', { origin: 'gitlab', path: /\/artifacts$/, kind: 'status', status: 429, retryAfter: 1, times: 2 }],
    ['502 then 503 on the API', { origin: 'gitlab', path: /\/artifacts$/, kind: 'status', status: 503, times: 2 }],
    ['500 from object storage', { origin: 'storage', kind: 'status', status: 500, times: 2 }],
    ['a connection reset mid-body from object storage', { origin: 'storage', kind: 'reset', afterBytes: 5_000, times: 2 }],
  ];
  for (const [label, fault] of cases) {
    test(label, async () => {
      world.sim.clearFaults();
      world.sim.injectFault(fault);
      const dest = `fault-${label.replace(/\W+/g, '-')}`;
      const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', dest, '--summary', `${dest}.json`], world.env());
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /WARNING/, 'each retry is logged');
      assert.match(r.output, /after 3 attempts/, 'the fault fired twice');
      assert.equal(readJson(join(world.workspace, `${dest}.json`)).sources[0].sha256, world.archiveSha256);
      assert.deepEqual(snapshotTree(join(world.workspace, dest)), unzipReference(world, world.archive));
    });
  }

  test('a slow download logs byte progress with its rate at intervals', async () => {
    world.sim.clearFaults();
    world.sim.injectFault({ origin: 'storage', kind: 'slow', bytesPerSecond: 12_000 });
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'slow'], world.env({ ARTIFACT_RELAY_PROGRESS_MS: '300' }));
    assert.equal(r.status, 0, r.output);
    const lines = r.output.split('\n').filter((l) => /downloaded: [\d.]+ KiB of [\d.]+ KiB \(\d+%\) at [\d.]+ KiB\/s/.test(l));
    assert.ok(lines.length >= 2, r.output);
  });

  test('404 is never retried', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', '999999', '--path', 'x'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.equal(world.sim.requests.filter((q) => q.path.endsWith('/999999/artifacts')).length, 1);
  });
});

describe('GitLab refusals are explained, with exit 1', () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(() => world.close());

  test('401: the job token of a job that is no longer running', async () => {
    world.sim.addJobToken('glcbt-finished-job-token-abcdef0123', world.oldBuild.id);
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'x'], world.env({ INPUT_TOKEN: 'glcbt-finished-job-token-abcdef0123' }));
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /401/);
    assert.match(r.output, /no longer running|not running|expired/i);
    assert.ok(!r.output.includes('glcbt-finished-job-token-abcdef0123'));
  });

  test('403: the upstream project does not allow this project\'s job token', async () => {
    const locked = world.sim.addProject({ path: 'grp/locked' });
    const p = world.sim.addPipeline({ projectId: locked.id, ref: 'main', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const r = await runBundle(['fetch', '--project', locked.path, '--job-id', String(j.id), '--path', 'x'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /not allowed from grp\/deploy to grp\/locked/);
    assert.match(r.output, /allowlist/i);
  });

  test('404 Project Not Found under a job token: tier or access, use an access token', async () => {
    const gated = world.sim.addProject({ path: 'grp/gated', premiumGate: true, jobTokenAllowlist: [world.downstream.id] });
    const p = world.sim.addPipeline({ projectId: gated.id, ref: 'main', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: world.archive });
    const r = await runBundle(['fetch', '--project', gated.path, '--job-id', String(j.id), '--path', 'x'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /Project Not Found/);
    assert.match(r.output, /access token/);
  });

  test('404 on a job: no such job, or artifacts expired or erased', async () => {
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', '424242', '--path', 'x'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /expired|erased|no such job|not found/i);
  });

  test('an HTML page served as the archive is an archive error, and nothing is written', async () => {
    const html = hostile.html(join(world.dir, 'page.html'));
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'html', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: html });
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', 'html'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /HTML|not a zip/i);
    assert.equal(existsSync(join(world.workspace, 'html')), false);
  });
});

describe('hostile archives through the whole fetch leave the destination as it was', () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(() => world.close());

  for (const name of ['dotdot', 'absolute', 'escapingSymlink', 'throughSymlink', 'ratioBomb', 'crcDamage', 'truncated', 'encrypted'] as const) {
    test(name, async () => {
      const archive = hostile[name](join(world.dir, `${name}.zip`));
      const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: name, status: 'success' });
      const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
      const dest = join(world.workspace, `hostile-${name}`);
      mkdirSync(dest);
      writeFileSync(join(dest, 'existing.txt'), 'before');
      const parentBefore = snapshotTree(world.workspace).filter((e) => !e.path.startsWith('hostile-'));
      const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', `hostile-${name}`, '--max-ratio', '100'], world.env());
      assert.equal(r.status, 1, r.output);
      assert.deepEqual(snapshotTree(dest).map((e) => e.path), ['existing.txt']);
      assert.deepEqual(snapshotTree(world.workspace).filter((e) => !e.path.startsWith('hostile-')), parentBefore);
      assert.ok(!existsSync('/tmp/evil-absolute.txt'));
      assert.doesNotMatch(r.output, /\n\s+at .*\(/, 'no stack trace');
    });
  }
});

describe('bad input exits 2 naming the input, before any request', () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(() => world.close());

  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['a job id that is not a number', ['--job-id', 'abc'], {}, /job_id/],
    ['ref without job', ['--ref', 'main'], {}, /job/],
    ['job_id and ref together', ['--job-id', '5', '--ref', 'main', '--job', 'b'], {}, /job_id and ref/],
    ['an unknown flag, with a suggestion', ['--job-idd', '5'], {}, /Unknown option --job-idd\. Did you mean --job-id\?/],
    ['a bad enum value', ['--job-id', '5', '--if-not-found', 'maybe'], {}, /if_not_found.*fail, warn, ignore/],
    ['a bad size', ['--job-id', '5', '--max-bytes', 'lots'], {}, /max_bytes/],
    ['a missing ca_file', ['--job-id', '5', '--ca-file', '/nonexistent/ca.pem'], {}, /ca_file/],
    ['no source at all, outside a triggered pipeline', [], {}, /No source selected/],
    ['job names without a pipeline to take them from', ['--job', 'build'], {}, /pipeline/],
    ['a bad server_url', ['--job-id', '5', '--server-url', 'ftp://x'], {}, /server_url/],
    ['INPUT_ variables are validated too', [], { INPUT_JOB_ID: '12,x' }, /INPUT_JOB_ID|job_id/],
  ];
  for (const [label, args, env, expected] of cases) {
    test(label, async () => {
      world.sim.requests.length = 0;
      const r = await runBundle(['fetch', ...args], world.env(env));
      assert.equal(r.status, 2, r.output);
      assert.match(r.output, expected);
      assert.match(r.output, /ERROR/);
      assert.doesNotMatch(r.output, /\n\s+at .*\(/, 'no stack trace');
      assert.equal(world.sim.requests.length, 0);
    });
  }

  test('--help lists every fetch input and --version prints the version', async () => {
    const help = await runBundle(['--help'], world.env());
    assert.equal(help.status, 0);
    for (const input of ['--job-id', '--artifact-path', '--if-not-found', '--max-bytes', '--dotenv', '--wait', '--layout']) assert.match(help.stdout, new RegExp(input));
    const version = await runBundle(['--version'], world.env());
    assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+/);
  });
});
