// End to end: the built bundle runs as a child process against the GitLab simulator, as a CI job would.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import { hostile, unzipSnapshot } from './helpers/archives.ts';
import { selfSignedCert, startConnectProxy } from './helpers/proxies.ts';
import { runBundle } from './helpers/run.ts';
import { snapshotTree } from './helpers/tree.ts';
import { PROFILES, PROFILE_NAMES } from './simulator/index.ts';
import { JOB_TOKEN, OAUTH_TOKEN, PRIVATE_TOKEN, tokenHeadersSeen, useWorld, type World } from './helpers/world.ts';

function unzipReference(world: World, archive: string): ReturnType<typeof snapshotTree> {
  return unzipSnapshot(archive, world.dir);
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const dotenv = (file: string) =>
  Object.fromEntries(
    readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2)),
  );

/** Which path fetch took, from its log, and the env that forces it. */
const PATHS = [
  { overlap: '1', log: /Unpacking while downloading/ },
  { overlap: '0', log: /Download, then unpack \(ARTIFACT_RELAY_OVERLAP=0\)/ },
] as const;

function assertNoSecret(output: string) {
  for (const secret of [JOB_TOKEN, PRIVATE_TOKEN, OAUTH_TOKEN]) {
    assert.ok(!output.includes(secret), 'a token value appeared in the output');
    assert.ok(!output.includes(Buffer.from(secret).toString('base64')), 'a base64 token appeared in the output');
  }
}

describe('fetch by job id', () => {
  const world = useWorld();

  for (const [tokenType, token, header, expected] of [
    ['job', JOB_TOKEN, 'job-token', JOB_TOKEN],
    ['private', PRIVATE_TOKEN, 'private-token', PRIVATE_TOKEN],
    ['oauth', OAUTH_TOKEN, 'authorization', `Bearer ${OAUTH_TOKEN}`],
  ] as const) {
    for (const path of PATHS) {
      test(`with a ${tokenType} token, ARTIFACT_RELAY_OVERLAP=${path.overlap}: unpacks exactly what unzip produces, the token never reaches storage`, async () => {
        world.sim.requests.length = 0;
        const dest = `out-${tokenType}-${path.overlap}`;
        const r = await runBundle(
          [
            'fetch',
            '--project',
            world.upstream.path,
            '--job-id',
            String(world.build.id),
            '--path',
            dest,
            '--summary',
            's.json',
            '--dotenv',
            'r.env',
          ],
          world.env({
            INPUT_TOKEN: token,
            INPUT_TOKEN_TYPE: tokenType === 'job' ? 'auto' : tokenType,
            ARTIFACT_RELAY_OVERLAP: path.overlap,
          }),
        );
        assert.equal(r.status, 0, r.output);
        assert.match(r.output, path.log);
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
  }

  test('proxied download (200 from GitLab, no redirect) gives the same tree', async () => {
    world.sim.downloadMode = 'proxy';
    try {
      world.sim.requests.length = 0;
      const r = await runBundle(
        ['fetch', '--project', String(world.upstream.id), '--job-id', String(world.build.id), '--path', 'proxied'],
        world.env(),
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(world.sim.requests.filter((q) => q.origin === 'storage').length, 0);
      assert.deepEqual(snapshotTree(join(world.workspace, 'proxied')), unzipReference(world, world.archive));
    } finally {
      world.sim.downloadMode = 'redirect';
    }
  });

  test('a fetch builds no Intl.ListFormat and loads no node:http2 (the bundle defers or leaves out what got would)', async () => {
    const preload = join(world.dir, 'no-list-format.mjs');
    writeFileSync(
      preload,
      [
        "import Module from 'node:module';",
        "Intl.ListFormat = function () { throw new Error('Intl.ListFormat built'); };",
        'const load = Module._load;',
        "Module._load = function (request, ...rest) { if (request.replace(/^node:/, '') === 'http2') throw new Error('node:http2 loaded'); return load.call(this, request, ...rest); };",
        '',
      ].join('\n'),
    );
    const r = await runBundle(
      ['fetch', '--project', String(world.upstream.id), '--job-id', String(world.build.id), '--path', 'no-list-format'],
      world.env({ NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` }),
    );
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(snapshotTree(join(world.workspace, 'no-list-format')), unzipReference(world, world.archive));
  });

  test('single files by job id, nothing else written', async () => {
    const r = await runBundle(
      [
        'fetch',
        '--project',
        world.upstream.path,
        '--job-id',
        String(world.build.id),
        '--artifact-path',
        'dist/config.json,reports/build.log',
        '--path',
        'single',
        '--summary',
        'single.json',
      ],
      world.env(),
    );
    assert.equal(r.status, 0, r.output);
    assert.deepEqual(
      snapshotTree(join(world.workspace, 'single')).map((e) => e.path),
      ['dist', 'dist/config.json', 'reports', 'reports/build.log'],
    );
    assert.equal(readFileSync(join(world.workspace, 'single/dist/config.json'), 'utf8'), '{"version":"1.0.0"}\n');
    const summary = readJson(join(world.workspace, 'single.json'));
    assert.equal(summary.sources[0].files, 2);
    assert.ok(world.sim.requests.some((q) => q.path.endsWith('/artifacts/dist/config.json')));
  });

  test('a missing single file is "not found": exit 1 under fail, exit 0 with found=false under warn', async () => {
    const args = [
      'fetch',
      '--project',
      world.upstream.path,
      '--job-id',
      String(world.build.id),
      '--artifact-path',
      'no/such.txt',
      '--path',
      'nf',
      '--dotenv',
      'nf.env',
    ];
    const failed = await runBundle(args, world.env());
    assert.equal(failed.status, 1, failed.output);
    assert.match(failed.output, /artifacts\/no\/such\.txt failed with HTTP 404: 404 page not found/);
    assert.match(failed.output, /No such job, ref or file, or its artifacts expired or were erased/);
    assert.equal(existsSync(join(world.workspace, 'nf')), false);
    const warned = await runBundle([...args, '--if-not-found', 'warn'], world.env());
    assert.equal(warned.status, 0, warned.output);
    assert.match(warned.output, /WARNING/);
    assert.equal(dotenv(join(world.workspace, 'nf.env')).ARTIFACT_RELAY_FOUND, 'false');
  });

  test('dry run resolves and lists but downloads and writes nothing', async () => {
    world.sim.requests.length = 0;
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--ref', 'main', '--job', 'build', '--path', 'dry', '--dry-run', '--summary', 'dry.json'],
      world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
    );
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
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'keep', '--overwrite', 'false'],
      world.env(),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /overwrite is false/);
    assert.deepEqual(snapshotTree(dest), before);
  });
});

describe('fetch by ref and job', () => {
  const world = useWorld();

  for (const [label, token] of [
    ['access token (lists pipelines, downloads by job id)', PRIVATE_TOKEN],
    ['job token', JOB_TOKEN],
  ] as const) {
    test(`takes the latest successful pipeline of the ref, with a ${label}`, async () => {
      const dest = `ref-${token.slice(0, 5)}`;
      const r = await runBundle(
        ['fetch', '--project', world.upstream.path, '--ref', 'main', '--job', 'build', '--path', dest, '--summary', `${dest}.json`],
        world.env({ INPUT_TOKEN: token }),
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(readFileSync(join(world.workspace, dest, 'dist/app'), 'utf8'), '#!/bin/sh\necho app\n');
      const summary = readJson(join(world.workspace, `${dest}.json`));
      assert.equal(summary.sources[0].ref, 'main');
      assertNoSecret(r.output);
    });
  }

  test('single file by ref', async () => {
    const r = await runBundle(
      [
        'fetch',
        '--project',
        world.upstream.path,
        '--ref',
        'main',
        '--job',
        'build',
        '--artifact-path',
        'dist/config.json',
        '--path',
        'ref-single',
      ],
      world.env(),
    );
    assert.equal(r.status, 0, r.output);
    assert.equal(readFileSync(join(world.workspace, 'ref-single/dist/config.json'), 'utf8'), '{"version":"1.0.0"}\n');
  });

  test('a ref without a successful pipeline is not found (exit 1), or found=false under ignore (exit 0)', async () => {
    const failed = await runBundle(
      ['fetch', '--project', world.upstream.path, '--ref', 'nope', '--job', 'build', '--path', 'x'],
      world.env(),
    );
    assert.equal(failed.status, 1, failed.output);
    const ignored = await runBundle(
      ['fetch', '--project', world.upstream.path, '--ref', 'nope', '--job', 'build', '--path', 'x', '--if-not-found', 'ignore'],
      world.env(),
    );
    assert.equal(ignored.status, 0, ignored.output);
    assert.equal(existsSync(join(world.workspace, 'x')), false);
  });
});

describe('network faults are ridden out byte-exact', () => {
  const world = useWorld();

  // Each fault fires on exactly two requests of the download (times: 2), so it takes exactly 3 attempts.
  const cases: [string, Parameters<World['sim']['injectFault']>[0], RegExp][] = [
    [
      '429 with Retry-After on the API',
      { origin: 'gitlab', path: /\/artifacts$/, kind: 'status', status: 429, retryAfter: 1, times: 2 },
      // Retry-After: 1 s, capped at 0.2 s by ARTIFACT_RELAY_RETRY_MAX_WAIT_MS (the backoff alone would be under 0.1 s).
      /HTTP 429; retrying \(attempt 2\/6\) in 0\.2 s/,
    ],
    ['503 twice on the API', { origin: 'gitlab', path: /\/artifacts$/, kind: 'status', status: 503, times: 2 }, /HTTP 503; retrying/],
    ['500 from object storage', { origin: 'storage', kind: 'status', status: 500, times: 2 }, /HTTP 500; retrying/],
    [
      'a connection reset mid-body from object storage',
      { origin: 'storage', kind: 'reset', afterBytes: 5_000, times: 2 },
      /(ECONNRESET|ERR_STREAM_PREMATURE_CLOSE|ERR_INCOMPLETE_BODY)[^\n]*; retrying/,
    ],
  ];
  for (const [label, fault, warning] of cases) {
    test(label, async () => {
      world.sim.clearFaults();
      world.sim.injectFault(fault);
      const dest = `fault-${label.replace(/\W+/g, '-')}`;
      // Sequential path: these faults are aimed at the download itself (a tail request would take them first).
      const r = await runBundle(
        ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', dest, '--summary', `${dest}.json`],
        world.env({ ARTIFACT_RELAY_OVERLAP: '0', ARTIFACT_RELAY_RETRY_MAX_WAIT_MS: '200' }),
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(r.output.match(/WARNING: .*retrying/g)?.length, 2, `each retry is logged:\n${r.output}`);
      assert.match(r.output, warning);
      assert.match(r.output, /after 3 attempts/, 'the fault fired twice');
      assert.equal(readJson(join(world.workspace, `${dest}.json`)).sources[0].sha256, world.archiveSha256);
      assert.deepEqual(snapshotTree(join(world.workspace, dest)), unzipReference(world, world.archive));
    });
  }

  test('a slow download logs byte progress with its rate at intervals', async () => {
    world.sim.clearFaults();
    // 2,000-byte slices 50 ms apart (about 8 for this archive); with a 1 ms interval each slice after the first logs a line.
    world.sim.injectFault({ origin: 'storage', kind: 'slow', bytesPerSecond: 40_000 });
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'slow'],
      world.env({ ARTIFACT_RELAY_PROGRESS_MS: '1', ARTIFACT_RELAY_OVERLAP: '0' }),
    );
    assert.equal(r.status, 0, r.output);
    const lines = r.output.split('\n').filter((l) => /downloaded: [\d.]+ KiB of [\d.]+ KiB \(\d+%\) at [\d.]+ KiB\/s/.test(l));
    assert.ok(lines.length >= 3, r.output);
  });

  test('the tail request goes out beside the download, not before it: a tail held until the download reaches storage', async () => {
    world.sim.clearFaults();
    let release = () => {};
    const until = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The tail request's body is held until storage has answered two requests: the tail request and the download's
    // own. A fetch that waited for the tail before downloading would wait for its timeout (and fail, with no retries).
    world.sim.injectFault({ origin: 'storage', kind: 'hold', range: true, until, times: 10 });
    world.sim.afterRequests({ origin: 'storage' }, 2, release);
    const r = await runBundle(
      [
        'fetch',
        ...['--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'held-tail', '--summary', 'held-tail.json'],
        ...['--timeout', '20', '--retries', '0'],
      ],
      world.env({ ARTIFACT_RELAY_OVERLAP: '1' }),
    );
    release();
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /Unpacking while downloading/);
    assert.equal(readJson(join(world.workspace, 'held-tail.json')).sources[0].sha256, world.archiveSha256);
    assert.deepEqual(snapshotTree(join(world.workspace, 'held-tail')), unzipReference(world, world.archive));
  });

  test('a connection reset mid-body while unpacking during the download: resumed, byte-exact', async () => {
    world.sim.clearFaults();
    // Bigger than the 64 KiB tail request, so the body is not all in the tail.
    const archive = world.zip('big.zip', [
      { name: 'a/random.bin', data: randomBytes(300_000) },
      { name: 'a/log.txt', data: 'compressible line\n'.repeat(20_000) },
      { name: 'b/more.bin', data: randomBytes(200_000) },
    ]);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'big', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    // The first use goes to the tail request (64 KiB: never reaches 150,000 bytes, so it is answered whole), the
    // second resets the download once: exactly 2 attempts.
    world.sim.injectFault({ origin: 'storage', kind: 'reset', afterBytes: 150_000, times: 2 });
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', 'reset-overlap', '--summary', 'reset-overlap.json'],
      world.env({ ARTIFACT_RELAY_OVERLAP: '1' }),
    );
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /Unpacking while downloading/);
    assert.match(r.output, /after 2 attempts/);
    assert.doesNotMatch(r.output, /Unpacking again/);
    assert.equal(
      readJson(join(world.workspace, 'reset-overlap.json')).sources[0].sha256,
      createHash('sha256').update(readFileSync(archive)).digest('hex'),
    );
    assert.deepEqual(snapshotTree(join(world.workspace, 'reset-overlap')), unzipReference(world, archive));
  });

  test('404 is never retried', async () => {
    world.sim.clearFaults();
    world.sim.requests.length = 0;
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', '999999', '--path', 'x'], world.env());
    assert.equal(r.status, 1, r.output);
    // The tail request and the download go out together; neither is repeated.
    const asked = world.sim.requests.filter((q) => q.path.endsWith('/999999/artifacts'));
    assert.equal(asked.filter((q) => !q.headers.range).length, 1);
    assert.ok(asked.filter((q) => q.headers.range).length <= 1);
  });
});

describe('GitLab refusals are explained, with exit 1', () => {
  const world = useWorld();

  test('401: the job token of a job that is no longer running', async () => {
    world.sim.addJobToken('glcbt-finished-job-token-abcdef0123', world.oldBuild.id);
    const r = await runBundle(
      ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'x'],
      world.env({ INPUT_TOKEN: 'glcbt-finished-job-token-abcdef0123' }),
    );
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /failed with HTTP 401: 401 Unauthorized/);
    assert.match(r.output, /job tokens are valid only while their job runs, so its job is no longer running/);
    assert.ok(!r.output.includes('glcbt-finished-job-token-abcdef0123'));
  });

  test("403: the upstream project does not allow this project's job token", async () => {
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

  // A HEAD answer has no body: 404 "Project Not Found" (EE gate, ee/lib/ee/api/ci/job_artifacts.rb
  // check_cross_project_pipelines_feature!) and 403 (lib/api/helpers.rb handle_job_token_failure!) must not be
  // taken for "not uploaded yet" while waiting by job id.
  test('waiting by job id: 404 Project Not Found (tier gate) fails fast with the tier advice, no polling', async () => {
    const gated = world.sim.addProject({ path: 'grp/gated-wait', premiumGate: true, jobTokenAllowlist: [world.downstream.id] });
    const p = world.sim.addPipeline({ projectId: gated.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'running' });
    world.sim.requests.length = 0;
    const r = await runBundle(['fetch', '--project', gated.path, '--job-id', String(j.id), '--path', 'x', '--wait', '300'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /Project Not Found/);
    assert.match(r.output, /access token/);
    assert.doesNotMatch(r.output, /No archive yet|still missing after waiting/);
    const polls = world.sim.requests.filter((q) => q.path.endsWith(`/jobs/${j.id}/artifacts`));
    assert.ok(polls.length <= 2, `${polls.length} requests: one look and one GET for the reason`);
  });

  test('waiting by job id: a 403 allowlist refusal fails fast naming the allowlist', async () => {
    const locked = world.sim.addProject({ path: 'grp/locked-wait' });
    const p = world.sim.addPipeline({ projectId: locked.id, ref: 'main', status: 'running' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'running' });
    const r = await runBundle(['fetch', '--project', locked.path, '--job-id', String(j.id), '--path', 'x', '--wait', '300'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /not allowed from grp\/deploy to grp\/locked-wait/);
    assert.match(r.output, /allowlist/i);
  });

  test('404 on a job: no such job, or artifacts expired or erased', async () => {
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', '424242', '--path', 'x'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /Download \S+\/jobs\/424242\/artifacts failed with HTTP 404: 404 Not found/);
    assert.match(r.output, /No such job, ref or file, or its artifacts expired or were erased/);
  });

  test('an HTML page served as the archive is an archive error, and nothing is written', async () => {
    const html = hostile.html(join(world.dir, 'page.html'));
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'html', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive: html });
    const r = await runBundle(['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', 'html'], world.env());
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /ERROR: not a zip archive \(starts with '<!DOCTYPE html>/);
    assert.equal(existsSync(join(world.workspace, 'html')), false);
  });
});

describe('hostile archives through the whole fetch leave the destination as it was', () => {
  const world = useWorld();

  for (const name of [
    'dotdot',
    'absolute',
    'escapingSymlink',
    'throughSymlink',
    'ratioBomb',
    'crcDamage',
    'truncated',
    'encrypted',
  ] as const) {
    for (const path of PATHS) {
      test(`${name}, ARTIFACT_RELAY_OVERLAP=${path.overlap}`, async () => {
        const archive = hostile[name](join(world.dir, `${name}-${path.overlap}.zip`));
        const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: name, status: 'success' });
        const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
        const dest = join(world.workspace, `hostile-${name}-${path.overlap}`);
        mkdirSync(dest);
        writeFileSync(join(dest, 'existing.txt'), 'before');
        const parentBefore = snapshotTree(world.workspace).filter((e) => !e.path.startsWith('hostile-'));
        const r = await runBundle(
          [
            'fetch',
            '--project',
            world.upstream.path,
            '--job-id',
            String(j.id),
            '--path',
            `hostile-${name}-${path.overlap}`,
            '--max-ratio',
            '100',
          ],
          world.env({ ARTIFACT_RELAY_OVERLAP: path.overlap }),
        );
        assert.equal(r.status, 1, r.output);
        // A truncated archive has no end record in its tail: the sequential path reports it.
        if (name !== 'truncated') assert.match(r.output, path.log);
        assert.deepEqual(
          snapshotTree(dest).map((e) => e.path),
          ['existing.txt'],
        );
        assert.deepEqual(
          snapshotTree(world.workspace).filter((e) => !e.path.startsWith('hostile-')),
          parentBefore,
        );
        assert.ok(!existsSync('/tmp/evil-absolute.txt'));
        assert.doesNotMatch(r.output, /\n\s+at .*\(/, 'no stack trace');
      });
    }
  }
});

/**
 * A proxy in front of the simulator's GitLab origin (which serves archives itself in proxy mode). `noRange` drops
 * Range (every answer a whole 200); `resetOnce` makes full (non-Range) archive bodies unresumable (no Accept-Ranges,
 * no ETag) and cuts the first one after that many bytes.
 */
async function startProxy(
  world: World,
  opts: { noRange?: boolean; resetOnce?: number; tls?: { key: Buffer; cert: Buffer } },
): Promise<{ url: string; close(): Promise<void> }> {
  let resets = opts.resetOnce === undefined ? 0 : 1;
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    const target = new URL(req.url ?? '/', world.sim.url);
    const headers: Record<string, string | string[] | undefined> = { ...req.headers, host: target.host };
    if (opts.noRange) {
      delete headers.range;
      delete headers['if-range'];
    }
    const whole = !headers.range && /\/artifacts$/.test(target.pathname);
    const up = request(target, { method: req.method, headers }, (upRes) => {
      const h = { ...upRes.headers };
      if (opts.noRange || (whole && opts.resetOnce !== undefined)) {
        delete h['accept-ranges'];
        delete h.etag;
      }
      res.writeHead(upRes.statusCode ?? 502, h);
      if (whole && upRes.statusCode === 200 && resets > 0) {
        resets -= 1;
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= opts.resetOnce!) return;
          const part = chunk.subarray(0, opts.resetOnce! - sent);
          sent += part.length;
          res.write(part, () => sent >= opts.resetOnce! && setTimeout(() => res.socket?.destroy(), 20));
        });
        return;
      }
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  };
  const server: Server = opts.tls ? createHttpsServer(opts.tls, serve) : createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('storage without Range support, or a download that must restart', () => {
  const world = useWorld({ downloadMode: 'proxy' });

  test('no Range: falls back to download, then unpack, and unpacks exactly what unzip produces', async () => {
    const proxy = await startProxy(world, { noRange: true });
    try {
      const r = await runBundle(
        ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'no-range', '--summary', 'nr.json'],
        world.env({ CI_SERVER_URL: proxy.url, CI_API_V4_URL: `${proxy.url}/api/v4`, ARTIFACT_RELAY_OVERLAP: '1' }),
      );
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /Download, then unpack \(no Range support\)/);
      assert.equal(readJson(join(world.workspace, 'nr.json')).sources[0].sha256, world.archiveSha256);
      assert.deepEqual(snapshotTree(join(world.workspace, 'no-range')), unzipReference(world, world.archive));
    } finally {
      await proxy.close();
    }
  });

  test('over HTTPS with ca_file, through HTTPS_PROXY (the modules the bundle loads on first use: tls, https, hpagent)', async () => {
    const { key, cert } = selfSignedCert(world.workspace);
    const front = await startProxy(world, { tls: { key: readFileSync(key), cert: readFileSync(cert) } });
    const forward = await startConnectProxy();
    try {
      const env = world.env({
        CI_SERVER_URL: front.url,
        CI_API_V4_URL: `${front.url}/api/v4`,
        HTTPS_PROXY: forward.url,
      });
      const args = [
        'fetch',
        '--project',
        world.upstream.path,
        '--job-id',
        String(world.build.id),
        '--path',
        'tls',
        '--summary',
        'tls.json',
      ];
      const untrusted = await runBundle(args, env);
      assert.equal(untrusted.status, 1, untrusted.output);
      assert.match(untrusted.output, /ca_file/);
      const r = await runBundle(args, { ...env, CI_SERVER_TLS_CA_FILE: cert });
      assert.equal(r.status, 0, r.output);
      assert.equal(readJson(join(world.workspace, 'tls.json')).sources[0].sha256, world.archiveSha256);
      assert.deepEqual(snapshotTree(join(world.workspace, 'tls')), unzipReference(world, world.archive));
      const { tunnels } = forward;
      assert.ok(tunnels.length >= 2 && tunnels.every((t) => t === new URL(front.url).host), `every request tunnelled: ${tunnels}`);
    } finally {
      await forward.close();
      await front.close();
    }
  });

  test('the overlapped download restarts from zero: the partial unpacking is discarded and redone, byte-exact', async () => {
    const archive = world.zip('restart.zip', [
      { name: 'a/random.bin', data: randomBytes(300_000) },
      { name: 'a/log.txt', data: 'compressible line\n'.repeat(20_000) },
      { name: 'b/more.bin', data: randomBytes(200_000) },
    ]);
    const p = world.sim.addPipeline({ projectId: world.upstream.id, ref: 'restart', status: 'success' });
    const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'success', archive });
    const proxy = await startProxy(world, { resetOnce: 400_000 });
    try {
      const r = await runBundle(
        ['fetch', '--project', world.upstream.path, '--job-id', String(j.id), '--path', 'restarted', '--summary', 'rs.json'],
        world.env({ CI_SERVER_URL: proxy.url, CI_API_V4_URL: `${proxy.url}/api/v4`, ARTIFACT_RELAY_OVERLAP: '1' }),
      );
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /Unpacking while downloading/);
      assert.match(r.output, /Unpacking again from the downloaded file: the download restarted from zero/);
      assert.equal(
        readJson(join(world.workspace, 'rs.json')).sources[0].sha256,
        createHash('sha256').update(readFileSync(archive)).digest('hex'),
      );
      assert.deepEqual(snapshotTree(join(world.workspace, 'restarted')), unzipReference(world, archive));
    } finally {
      await proxy.close();
    }
  });
});

// Key fetch flows on every GitLab version profile (test/simulator/profiles.ts).
for (const profile of PROFILE_NAMES) {
  const routes = PROFILES[profile];
  describe(`fetch key flows on GitLab ${profile}`, () => {
    const world = useWorld({ profile });

    test('by job id with a job token (the artifact routes take job tokens on every version)', async () => {
      const r = await runBundle(
        ['fetch', '--project', world.upstream.path, '--job-id', String(world.build.id), '--path', 'by-id'],
        world.env(),
      );
      assert.equal(r.status, 0, r.output);
      assert.deepEqual(snapshotTree(join(world.workspace, 'by-id')), unzipReference(world, world.archive));
      assertNoSecret(r.output);
    });

    test(`by ref with a job token: ${routes.jobToken.pipelines ? 'the pipelines listing takes it' : "anonymous pipelines listing, then GitLab's by-ref endpoint"}`, async () => {
      world.sim.requests.length = 0;
      const r = await runBundle(
        ['fetch', '--project', world.upstream.path, '--ref', 'main', '--job', 'build', '--path', 'by-ref', '--summary', 'by-ref.json'],
        world.env(),
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(readFileSync(join(world.workspace, 'by-ref/dist/app'), 'utf8'), '#!/bin/sh\necho app\n');
      const pipelines = world.sim.requests.find((q) => q.path.endsWith('/pipelines'));
      assert.equal(pipelines?.status, routes.jobToken.pipelines ? 200 : 404);
      const summary = readJson(join(world.workspace, 'by-ref.json'));
      assert.equal(summary.sources[0].job_id, routes.jobToken.pipelines ? world.build.id : null);
    });

    test('by ref with an access token: the latest successful pipeline, downloaded by job id', async () => {
      const r = await runBundle(
        [
          'fetch',
          '--project',
          world.upstream.path,
          '--ref',
          'main',
          '--job',
          'build',
          '--path',
          'by-ref-pat',
          '--summary',
          'by-ref-pat.json',
        ],
        world.env({ INPUT_TOKEN: PRIVATE_TOKEN }),
      );
      assert.equal(r.status, 0, r.output);
      assert.equal(readJson(join(world.workspace, 'by-ref-pat.json')).sources[0].job_id, world.build.id);
    });

    test('waiting by job id on a Free-tier gate (404 Project Not Found) fails fast with the tier advice', async () => {
      const gated = world.sim.addProject({ path: 'grp/gated', premiumGate: true, jobTokenAllowlist: [world.downstream.id] });
      const p = world.sim.addPipeline({ projectId: gated.id, ref: 'main', status: 'running' });
      const j = world.sim.addJob({ pipelineId: p.id, name: 'build', status: 'running' });
      const r = await runBundle(
        ['fetch', '--project', gated.path, '--job-id', String(j.id), '--path', 'gated', '--wait', '300'],
        world.env(),
      );
      assert.equal(r.status, 1, r.output);
      assert.match(r.output, /Project Not Found/);
      assert.match(r.output, /access token/);
    });
  });
}
