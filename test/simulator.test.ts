// Tests of the embedded GitLab simulator (test/simulator) against the behaviour in GitLab's code (each route cites its file).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimulator } from './simulator/index.ts';
import type { Simulator } from './simulator/index.ts';

const work = mkdtempSync(join(tmpdir(), 'sim-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Makes a zip with Python's zipfile: files is name -> content. */
function makeZip(name: string, files: Record<string, string>): string {
  const path = join(work, name);
  const script =
    'import sys, json, zipfile\nz = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED)\nfor k, v in json.loads(sys.argv[2]).items(): z.writestr(k, v)\nz.close()';
  execFileSync('python3', ['-c', script, path, JSON.stringify(files)]);
  return path;
}

const ZIP = makeZip('a.zip', {
  'dist/app.txt': 'hello app\n',
  'dist/Config.json': '{"a":1}',
  'report.xml': '<r/>',
  'big.bin': 'x'.repeat(50_000),
});
const ZIP_BYTES = readFileSync(ZIP);
assert.ok(ZIP_BYTES.length > 200);

async function withSim(mode: 'redirect' | 'proxy' | 'local', fn: (sim: Simulator) => Promise<void>): Promise<void> {
  const sim = await startSimulator({ downloadMode: mode });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

const get = (url: string, headers: Record<string, string> = {}, method = 'GET') => fetch(url, { method, headers, redirect: 'manual' });

function basic(sim: Simulator) {
  const project = sim.addProject({ path: 'grp/app' });
  const pipeline = sim.addPipeline({ projectId: project.id, ref: 'main' });
  const job = sim.addJob({ pipelineId: pipeline.id, name: 'build', archive: ZIP });
  sim.addAccessToken('pat', { role: 'maintainer' });
  return { project, pipeline, job };
}

test('ids start at 1 / 100 / 1000 and every response has RateLimit headers', async () => {
  await withSim('redirect', async (sim) => {
    const { project, pipeline, job } = basic(sim);
    assert.deepEqual([project.id, pipeline.id, job.id], [1, 100, 1000]);
    const r = await get(`${sim.apiUrl}/projects/${project.id}/jobs/${job.id}`, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(r.status, 200);
    const reset = Number(r.headers.get('ratelimit-reset'));
    assert.ok(reset > Date.now() / 1000 - 1 && reset < Date.now() / 1000 + 120);
    assert.ok(r.headers.get('ratelimit-limit'));
    const body = (await r.json()) as Record<string, unknown>;
    assert.deepEqual(body.artifacts_file, { filename: 'artifacts.zip', size: ZIP_BYTES.length });
    assert.equal((body.pipeline as { id: number }).id, pipeline.id);
    const unknownRoute = await get(`${sim.apiUrl}/nope`, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(unknownRoute.status, 404);
    assert.deepEqual(await unknownRoute.json(), { error: '404 Not Found' });
  });
});

test('redirect mode: 302 to signed storage URL, byte-exact download, bad signature rejected, Range 206', async () => {
  await withSim('redirect', async (sim) => {
    const { project, job } = basic(sim);
    const r = await get(`${sim.apiUrl}/projects/grp%2Fapp/jobs/${job.id}/artifacts`, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(r.status, 302);
    const loc = r.headers.get('location') ?? '';
    assert.ok(loc.startsWith(`${sim.storageUrl}/bucket/`), loc);
    assert.match(loc, /X-Amz-Signature=/);
    assert.match(loc, /X-Amz-Expires=/);

    const s = await get(loc);
    assert.equal(s.status, 200);
    assert.equal(s.headers.get('content-length'), String(ZIP_BYTES.length));
    assert.equal(s.headers.get('accept-ranges'), 'bytes');
    assert.ok(s.headers.get('etag'));
    assert.ok(Buffer.from(await s.arrayBuffer()).equals(ZIP_BYTES));
    const storageReq = sim.requests.find((q) => q.origin === 'storage');
    assert.ok(storageReq);
    assert.equal(storageReq.headers['private-token'], undefined);

    const bad = await get(loc.replace(/X-Amz-Signature=[0-9a-f]+/, 'X-Amz-Signature=deadbeef'));
    assert.equal(bad.status, 403);
    assert.match(await bad.text(), /SignatureDoesNotMatch/);

    const part = await get(loc, { Range: 'bytes=10-19' });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10-19/${ZIP_BYTES.length}`);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(ZIP_BYTES.subarray(10, 20)));
    const tail = await get(loc, { Range: `bytes=${ZIP_BYTES.length - 5}-` });
    assert.equal(tail.status, 206);
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(ZIP_BYTES.subarray(ZIP_BYTES.length - 5)));
    const beyond = await get(loc, { Range: `bytes=${ZIP_BYTES.length}-` });
    assert.equal(beyond.status, 416);
    await beyond.arrayBuffer();
    const head = await get(loc, {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(ZIP_BYTES.length));

    // Signed already expired (no sleep until a 0 s lifetime runs out).
    sim.redirectExpiresSeconds = -1;
    const r2 = await get(`${sim.apiUrl}/projects/${project.id}/jobs/${job.id}/artifacts`, { 'PRIVATE-TOKEN': 'pat' });
    const loc2 = r2.headers.get('location') ?? '';
    const expired = await get(loc2);
    assert.equal(expired.status, 403);
    assert.match(await expired.text(), /expired/);
  });
});

test('proxy and local modes stream from the GitLab origin with Range', async () => {
  await withSim('proxy', async (sim) => {
    const { project, job } = basic(sim);
    const url = `${sim.apiUrl}/projects/${project.id}/jobs/${job.id}/artifacts`;
    const r = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(r.status, 200);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(ZIP_BYTES));
    const part = await get(url, { 'PRIVATE-TOKEN': 'pat', Range: 'bytes=0-3' });
    assert.equal(part.status, 206);
    assert.equal(Buffer.from(await part.arrayBuffer()).toString('latin1'), 'PK\x03\x04');
    assert.equal(sim.requests.filter((q) => q.origin === 'storage').length, 0);

    sim.downloadMode = 'local';
    const l = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(l.status, 200);
    assert.equal(l.headers.get('content-type'), 'application/octet-stream');
    assert.equal(l.headers.get('content-disposition'), `attachment; filename="artifacts.zip"; filename*=UTF-8''artifacts.zip`);
    assert.ok(Buffer.from(await l.arrayBuffer()).equals(ZIP_BYTES));
  });
});

test('artifact download errors: unknown job, no archive, access none', async () => {
  await withSim('proxy', async (sim) => {
    const { project, pipeline } = basic(sim);
    const bare = sim.addJob({ pipelineId: pipeline.id, name: 'lint' });
    const hidden = sim.addJob({ pipelineId: pipeline.id, name: 'secret', archive: ZIP, artifactsAccess: 'none' });
    const base = `${sim.apiUrl}/projects/${project.id}/jobs`;
    const r1 = await get(`${base}/999999/artifacts`, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(r1.status, 404);
    assert.deepEqual(await r1.json(), { message: '404 Not found' });
    const r2 = await get(`${base}/${bare.id}/artifacts`, { 'PRIVATE-TOKEN': 'pat' });
    assert.deepEqual([r2.status, await r2.json()], [404, { message: '404 Not Found' }]);
    const r3 = await get(`${base}/${hidden.id}/artifacts`, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(r3.status, 403);
    await r3.arrayBuffer();
    const r4 = await get(`${sim.apiUrl}/projects/nope%2Fnope/jobs/1/artifacts`, { 'PRIVATE-TOKEN': 'pat' });
    assert.deepEqual([r4.status, await r4.json()], [404, { message: '404 Project Not Found' }]);
    const anon = await get(`${base}/${bare.id}`);
    assert.deepEqual([anon.status, await anon.json()], [404, { message: '404 Project Not Found' }]);
    const badTok = await get(`${base}/${bare.id}`, { 'PRIVATE-TOKEN': 'wrong' });
    assert.deepEqual([badTok.status, await badTok.json()], [401, { message: '401 Unauthorized' }]);
  });
});

test('by-ref download: highest success pipeline wins, 404 when it lacks the job, slashes in ref, job param', async () => {
  await withSim('proxy', async (sim) => {
    const project = sim.addProject({ path: 'grp/app' });
    sim.addAccessToken('pat', {});
    const zipOld = makeZip('old.zip', { 'v.txt': 'old' });
    const zipNew = makeZip('new.zip', { 'v.txt': 'new' });
    const p1 = sim.addPipeline({ projectId: project.id, ref: 'feature/x' });
    sim.addJob({ pipelineId: p1.id, name: 'build', archive: zipOld });
    const p2 = sim.addPipeline({ projectId: project.id, ref: 'feature/x' });
    sim.addJob({ pipelineId: p2.id, name: 'build', archive: zipOld, retried: true });
    sim.addJob({ pipelineId: p2.id, name: 'build', archive: zipNew });
    const p3 = sim.addPipeline({ projectId: project.id, ref: 'feature/x', status: 'failed' });
    sim.addJob({ pipelineId: p3.id, name: 'build', archive: zipOld });
    const base = `${sim.apiUrl}/projects/${project.id}/jobs/artifacts`;
    const auth = { 'PRIVATE-TOKEN': 'pat' };

    for (const ref of ['feature/x', 'feature%2Fx']) {
      const r = await get(`${base}/${ref}/download?job=build`, auth);
      assert.equal(r.status, 200, ref);
      const raw = await get(`${base}/${ref}/raw/v.txt?job=build`, auth);
      assert.equal(raw.status, 200);
      assert.equal(raw.headers.get('content-type'), 'text/plain; charset=utf-8');
      assert.equal(await raw.text(), 'new');
      await r.arrayBuffer();
    }
    const missing = await get(`${base}/feature/x/download`, auth);
    assert.deepEqual([missing.status, await missing.json()], [400, { error: 'job is missing' }]);

    // A newer successful pipeline without the job: 404, even though p2 has it.
    const p4 = sim.addPipeline({ projectId: project.id, ref: 'feature/x' });
    sim.addJob({ pipelineId: p4.id, name: 'test' });
    const r404 = await get(`${base}/feature/x/download?job=build`, auth);
    assert.deepEqual([r404.status, await r404.json()], [404, { message: '404 Not found' }]);
    const searched = await get(`${base}/feature/x/raw/v.txt?job=build&search_recent_successful_pipelines=true`, auth);
    assert.equal(await searched.text(), 'new');

    const mr = sim.addPipeline({ projectId: project.id, ref: 'refs/merge-requests/5/head' });
    sim.addJob({ pipelineId: mr.id, name: 'build', archive: zipOld });
    const mrr = await get(`${base}/refs/merge-requests/5/head/raw/v.txt?job=build`, auth);
    assert.equal(await mrr.text(), 'old');
  });
});

test('single file by job id: exact match, plain-text 404, bad path 400, expiry', async () => {
  await withSim('redirect', async (sim) => {
    const { project, pipeline, job } = basic(sim);
    const base = `${sim.apiUrl}/projects/${project.id}/jobs`;
    const auth = { 'PRIVATE-TOKEN': 'pat' };
    const r = await get(`${base}/${job.id}/artifacts/dist/app.txt`, auth);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), '10');
    assert.equal(r.headers.get('content-disposition'), 'attachment; filename="app.txt"');
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(await r.text(), 'hello app\n');
    const json = await get(`${base}/${job.id}/artifacts/dist/Config.json`, auth);
    assert.equal(json.headers.get('content-type'), 'application/json');
    assert.equal(await json.text(), '{"a":1}');

    const wrongCase = await get(`${base}/${job.id}/artifacts/dist/config.json`, auth);
    assert.equal(wrongCase.status, 404);
    assert.match(wrongCase.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(await wrongCase.text(), '404 page not found\n');
    const nul = await get(`${base}/${job.id}/artifacts/dist/a%00b`, auth);
    assert.deepEqual([nul.status, await nul.json()], [400, { message: '400 Bad request' }]);
    const badUtf = await get(`${base}/${job.id}/artifacts/dist/%FF`, auth);
    assert.equal(badUtf.status, 400);
    await badUtf.arrayBuffer();

    const expired = sim.addJob({ pipelineId: pipeline.id, name: 'old', archive: ZIP, expireAt: '2020-01-01T00:00:00Z' });
    const e = await get(`${base}/${expired.id}/artifacts/dist/app.txt`, auth);
    assert.deepEqual([e.status, await e.json()], [404, { message: '404 Not Found' }]);
    const locked = sim.addJob({ pipelineId: pipeline.id, name: 'kept', archive: ZIP, expireAt: '2020-01-01T00:00:00Z', locked: true });
    const l = await get(`${base}/${locked.id}/artifacts/dist/app.txt`, auth);
    assert.equal(l.status, 200);
    await l.arrayBuffer();

    const tree = await get(`${base}/${job.id}/artifacts/tree?path=dist`, auth);
    assert.equal(tree.status, 200);
    const items = (await tree.json()) as { name: string; type: string }[];
    assert.deepEqual(items.map((i) => i.name).sort(), ['Config.json', 'app.txt']);
  });
});

test('job tokens: running only, allowlist 403, premium gate 404, ignored on other routes', async () => {
  await withSim('redirect', async (sim) => {
    const src = sim.addProject({ path: 'grp/down' });
    const allowed = sim.addProject({ path: 'grp/allowed' });
    const target = sim.addProject({ path: 'grp/up', jobTokenAllowlist: [allowed.id] });
    const gated = sim.addProject({ path: 'grp/gated', premiumGate: true, jobTokenAllowlist: [src.id] });
    const tp = sim.addPipeline({ projectId: target.id });
    const tj = sim.addJob({ pipelineId: tp.id, name: 'build', archive: ZIP });
    const gj = sim.addJob({ pipelineId: sim.addPipeline({ projectId: gated.id }).id, name: 'build', archive: ZIP });
    const sj = sim.addJob({ pipelineId: sim.addPipeline({ projectId: src.id, status: 'running' }).id, name: 'deploy', status: 'running' });
    const aj = sim.addJob({
      pipelineId: sim.addPipeline({ projectId: allowed.id, status: 'running' }).id,
      name: 'deploy',
      status: 'running',
    });
    sim.addJobToken('tok-src', sj.id);
    sim.addJobToken('tok-allowed', aj.id);

    const denied = await get(`${sim.apiUrl}/projects/${target.id}/jobs/${tj.id}/artifacts`, { 'JOB-TOKEN': 'tok-src' });
    assert.equal(denied.status, 403);
    assert.deepEqual(await denied.json(), {
      message: '403 Forbidden - Authentication by CI/CD job token not allowed from grp/down to grp/up.',
    });

    const ok = await get(`${sim.apiUrl}/projects/${target.id}/jobs/${tj.id}/artifacts?job_token=tok-allowed`);
    assert.equal(ok.status, 302);
    const bearer = await get(`${sim.apiUrl}/projects/${target.id}/jobs/${tj.id}/artifacts`, { Authorization: 'Bearer tok-allowed' });
    assert.equal(bearer.status, 302);

    const gate = await get(`${sim.apiUrl}/projects/${gated.id}/jobs/${gj.id}/artifacts`, { 'JOB-TOKEN': 'tok-src' });
    assert.deepEqual([gate.status, await gate.json()], [404, { message: '404 Project Not Found' }]);

    const me = await get(`${sim.apiUrl}/job`, { 'JOB-TOKEN': 'tok-src' });
    assert.equal(((await me.json()) as { id: number }).id, sj.id);

    // GET /projects/:id/jobs/:job_id does not take job tokens: anonymous on a private project.
    const single = await get(`${sim.apiUrl}/projects/${allowed.id}/jobs/${aj.id}`, { 'JOB-TOKEN': 'tok-allowed' });
    assert.deepEqual([single.status, await single.json()], [404, { message: '404 Project Not Found' }]);

    sim.setJobStatus(sj.id, 'success');
    const stale = await get(`${sim.apiUrl}/job`, { 'JOB-TOKEN': 'tok-src' });
    assert.deepEqual([stale.status, await stale.json()], [401, { message: '401 Unauthorized' }]);
    const stale2 = await get(`${sim.apiUrl}/projects/${src.id}/jobs`, { 'JOB-TOKEN': 'tok-src' });
    assert.equal(stale2.status, 401);
    await stale2.arrayBuffer();

    const noList = sim.addProject({ path: 'grp/old', jobTokenCanListJobs: false });
    const nj = sim.addJob({ pipelineId: sim.addPipeline({ projectId: noList.id, status: 'running' }).id, name: 'x', status: 'running' });
    sim.addJobToken('tok-old', nj.id);
    const list = await get(`${sim.apiUrl}/projects/${noList.id}/jobs`, { 'JOB-TOKEN': 'tok-old' });
    assert.deepEqual([list.status, await list.json()], [404, { message: '404 Not Found' }]);
  });
});

test('pipeline jobs: 250 jobs paginated with full headers and Link', async () => {
  await withSim('redirect', async (sim) => {
    const { project } = basic(sim);
    const p = sim.addPipeline({ projectId: project.id });
    for (let i = 0; i < 250; i++) sim.addJob({ pipelineId: p.id, name: `job ${i}`, status: i % 2 ? 'success' : 'failed' });
    sim.addJob({ pipelineId: p.id, name: 'job 0', retried: true });
    const url = `${sim.apiUrl}/projects/${project.id}/pipelines/${p.id}/jobs`;
    const auth = { 'PRIVATE-TOKEN': 'pat' };
    const r = await get(`${url}?per_page=100&page=2`, auth);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-total'), '250');
    assert.equal(r.headers.get('x-total-pages'), '3');
    assert.equal(r.headers.get('x-page'), '2');
    assert.equal(r.headers.get('x-next-page'), '3');
    assert.equal(r.headers.get('x-prev-page'), '1');
    const link = r.headers.get('link') ?? '';
    for (const rel of ['prev', 'next', 'first', 'last']) assert.match(link, new RegExp(`rel="${rel}"`));
    const jobs = (await r.json()) as { id: number }[];
    assert.equal(jobs.length, 100);
    assert.ok(jobs.every((j, i) => i === 0 || jobs[i - 1]!.id > j.id));

    const last = await get(`${url}?per_page=100&page=3`, auth);
    assert.equal(last.headers.get('x-next-page'), '');
    assert.doesNotMatch(last.headers.get('link') ?? '', /rel="next"/);
    assert.equal(((await last.json()) as unknown[]).length, 50);
    const all = await get(`${url}?per_page=500&include_retried=true`, auth);
    assert.equal(all.headers.get('x-per-page'), '100');
    assert.equal(all.headers.get('x-total'), '251');
    await all.arrayBuffer();
    const scoped = await get(`${url}?scope[]=failed&per_page=100`, auth);
    assert.equal(scoped.headers.get('x-total'), '125');
    await scoped.arrayBuffer();
    const bad = await get(`${url}?scope[]=bogus`, auth);
    assert.deepEqual([bad.status, await bad.json()], [400, { message: 'Scope contains invalid value(s)' }]);
    const none = await get(`${sim.apiUrl}/projects/${project.id}/pipelines/99999/jobs`, auth);
    assert.deepEqual([none.status, await none.json()], [404, { message: '404 Not found' }]);
  });
});

test('project jobs: no totals, keyset pagination, rate limit', async () => {
  await withSim('redirect', async (sim) => {
    const { project, pipeline } = basic(sim);
    for (let i = 0; i < 44; i++) sim.addJob({ pipelineId: pipeline.id, name: `j${i}` });
    const url = `${sim.apiUrl}/projects/${project.id}/jobs`;
    const auth = { 'PRIVATE-TOKEN': 'pat' };
    const off = await get(`${url}?per_page=20`, auth);
    assert.equal(off.headers.get('x-total'), null);
    assert.equal(off.headers.get('x-total-pages'), null);
    assert.doesNotMatch(off.headers.get('link') ?? '', /rel="last"/);
    assert.match(off.headers.get('link') ?? '', /rel="next"/);
    await off.arrayBuffer();

    const seen: number[] = [];
    let next: string | undefined = `${url}?pagination=keyset&order_by=id&sort=desc&per_page=20`;
    let pages = 0;
    while (next) {
      const r = await get(next, auth);
      assert.equal(r.status, 200);
      seen.push(...((await r.json()) as { id: number }[]).map((j) => j.id));
      next = /<([^>]+)>;\s*rel="next"/.exec(r.headers.get('link') ?? '')?.[1];
      pages += 1;
    }
    assert.equal(pages, 3);
    assert.equal(seen.length, 45);
    assert.deepEqual(
      seen,
      [...seen].sort((a, b) => b - a),
    );
    const badSort = await get(`${url}?pagination=keyset&order_by=id&sort=asc`, auth);
    // lib/api/helpers/pagination_strategies.rb: 405 with a message body
    assert.equal(badSort.status, 405);
    assert.deepEqual(await badSort.json(), { message: 'Keyset pagination is not yet available for this type of request' });

    sim.jobsIndexLimit = 1;
    await (await get(url, auth)).arrayBuffer();
    const limited = await get(url, auth);
    assert.equal(limited.status, 429);
    // lib/api/helpers/rate_limiter.rb: the application limit sends no Retry-After nor RateLimit-Reset
    assert.equal(limited.headers.get('retry-after'), null);
    assert.equal(limited.headers.get('ratelimit-reset'), null);
    assert.deepEqual(await limited.json(), { message: { error: 'This endpoint has been requested too many times. Try again later.' } });
  });
});

test('pipelines list: filters, order and full offset headers', async () => {
  await withSim('redirect', async (sim) => {
    const { project } = basic(sim);
    sim.addPipeline({ projectId: project.id, ref: 'dev', status: 'failed' });
    sim.addPipeline({ projectId: project.id, ref: 'dev', status: 'success' });
    const r = await get(`${sim.apiUrl}/projects/${project.id}/pipelines?ref=dev&per_page=1`, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(r.headers.get('x-total'), '2');
    assert.match(r.headers.get('link') ?? '', /rel="last"/);
    const [first] = (await r.json()) as { id: number; status: string }[];
    assert.equal(first?.status, 'success');
    const asc = await get(`${sim.apiUrl}/projects/${project.id}/pipelines?sort=asc&status=success`, { 'PRIVATE-TOKEN': 'pat' });
    assert.deepEqual(
      ((await asc.json()) as { id: number }[]).map((p) => p.id),
      [100, 102],
    );
  });
});

test('delete artifacts: permissions, 204 idempotent, project-wide 202', async () => {
  await withSim('redirect', async (sim) => {
    const { project, job } = basic(sim);
    sim.addAccessToken('dev', { role: 'developer' });
    sim.addAccessToken('ro', { role: 'maintainer', scopes: ['read_api'] });
    const url = `${sim.apiUrl}/projects/${project.id}/jobs/${job.id}/artifacts`;
    assert.equal((await get(url, { 'PRIVATE-TOKEN': 'dev' }, 'DELETE')).status, 403);
    assert.equal((await get(url, { 'PRIVATE-TOKEN': 'ro' }, 'DELETE')).status, 403);
    const anon = await get(url, {}, 'DELETE');
    assert.deepEqual([anon.status, await anon.json()], [401, { message: '401 Unauthorized' }]);
    const d1 = await get(url, { 'PRIVATE-TOKEN': 'pat' }, 'DELETE');
    assert.equal(d1.status, 204);
    assert.equal(await d1.text(), '');
    const d2 = await get(url, { 'PRIVATE-TOKEN': 'pat' }, 'DELETE');
    assert.equal(d2.status, 204);
    assert.deepEqual(sim.deletedArtifacts, [job.id]);
    const gone = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(gone.status, 404);
    await gone.arrayBuffer();

    const j2 = sim.addJob({ pipelineId: job.pipelineId, name: 'b2', archive: ZIP, expireAt: '2099-01-01T00:00:00Z' });
    const all = await get(`${sim.apiUrl}/projects/${project.id}/artifacts`, { 'PRIVATE-TOKEN': 'pat' }, 'DELETE');
    assert.deepEqual([all.status, await all.json()], [202, { message: '202 Accepted' }]);
    const after = sim.jobs().find((j) => j.id === j2.id);
    assert.ok(after?.expireAt && Date.parse(after.expireAt) <= Date.now());
    const keep = await get(`${sim.apiUrl}/projects/${project.id}/jobs/${j2.id}/artifacts/keep`, { 'PRIVATE-TOKEN': 'pat' }, 'POST');
    assert.equal(keep.status, 404);
    await keep.arrayBuffer();
  });
});

test('faults: 429 plain text with Retry-After, reset mid-body, times count down', async () => {
  await withSim('proxy', async (sim) => {
    const { project, job } = basic(sim);
    const url = `${sim.apiUrl}/projects/${project.id}/jobs/${job.id}/artifacts`;
    sim.injectFault({ path: `/api/v4/projects/${project.id}/jobs`, kind: 'status', status: 429, retryAfter: 7 });
    const t = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(t.status, 429);
    assert.equal(t.headers.get('retry-after'), '7');
    assert.ok(t.headers.get('ratelimit-reset'));
    assert.equal((await t.text()).trim(), 'Retry later');
    const okAgain = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(okAgain.status, 200);
    await okAgain.arrayBuffer();

    sim.injectFault({ path: /\/artifacts$/, kind: 'reset', afterBytes: 50 });
    const r = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(r.status, 200);
    await assert.rejects(r.arrayBuffer());

    sim.injectFault({ kind: 'status', status: 500, times: 2 });
    assert.equal((await get(url, { 'PRIVATE-TOKEN': 'pat' })).status, 500);
    const second = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.deepEqual([second.status, await second.json()], [500, { message: '500 Internal Server Error' }]);
    const third = await get(url, { 'PRIVATE-TOKEN': 'pat' });
    assert.equal(third.status, 200);
    await third.arrayBuffer();

    sim.downloadMode = 'redirect';
    sim.injectFault({ origin: 'storage', kind: 'stall', afterBytes: 100 });
    const loc = (await get(url, { 'PRIVATE-TOKEN': 'pat' })).headers.get('location') ?? '';
    const ac = new AbortController();
    const stalled = await fetch(loc, { signal: ac.signal });
    const reader = stalled.body!.getReader();
    let got = 0;
    let timer: NodeJS.Timeout | undefined;
    await assert.rejects(async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        got += value.length;
        // Once the 100 bytes are in, give a wrongly continuing body a moment to show (a slow machine can only hide
        // a bug here, never fail a correct stall), then abort the read that never ends.
        if (got >= 100) timer ??= setTimeout(() => ac.abort(), 100);
      }
    });
    clearTimeout(timer);
    assert.equal(got, 100);
    assert.equal(sim.requests.filter((q) => q.origin === 'storage').at(-1)?.status, 200);
  });
});

test('groups: projects with include_subgroups', async () => {
  await withSim('redirect', async (sim) => {
    const g = sim.addGroup({ path: 'top' });
    const sub = sim.addGroup({ path: 'sub', parentId: g.id });
    assert.equal(sub.path, 'top/sub');
    const a = sim.addProject({ path: 'a', groupId: g.id });
    const b = sim.addProject({ path: 'b', groupId: sub.id });
    assert.equal(b.path, 'top/sub/b');
    sim.addAccessToken('pat', {});
    const r = await get(`${sim.apiUrl}/groups/top/projects?include_subgroups=true`, { 'PRIVATE-TOKEN': 'pat' });
    const ids = ((await r.json()) as { id: number }[]).map((p) => p.id).sort();
    assert.deepEqual(ids, [a.id, b.id]);
    const only = await get(`${sim.apiUrl}/groups/${g.id}/projects`, { 'PRIVATE-TOKEN': 'pat' });
    assert.deepEqual(
      ((await only.json()) as { id: number }[]).map((p) => p.id),
      [a.id],
    );
  });
});

test('GET /user answers access tokens (python-gitlab asks it first) and refuses others', async () => {
  await withSim('redirect', async (sim) => {
    sim.addAccessToken('glpat-user-check-0123456789', { kind: 'personal' });
    const ok = await fetch(`${sim.apiUrl}/user`, { headers: { 'PRIVATE-TOKEN': 'glpat-user-check-0123456789' } });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { state: string }).state, 'active');
    assert.equal((await fetch(`${sim.apiUrl}/user`, { headers: { 'PRIVATE-TOKEN': 'wrong' } })).status, 401);
    assert.equal((await fetch(`${sim.apiUrl}/user`)).status, 401);
  });
});

test('hooks: a job flips right after its Nth poll; afterRequests counts answered requests', async () => {
  await withSim('proxy', async (sim) => {
    const { project, pipeline } = basic(sim);
    const running = sim.addJob({ pipelineId: pipeline.id, name: 'slow', status: 'running' });
    sim.setJobStatusAfterPolls(running.id, 2, 'success', { archive: ZIP });
    const status = async (url: string) => ((await (await get(url, { 'PRIVATE-TOKEN': 'pat' })).json()) as { status: string }).status;
    const one = `${sim.apiUrl}/projects/${project.id}/jobs/${running.id}`;
    const list = `${sim.apiUrl}/projects/grp%2Fapp/pipelines/${pipeline.id}/jobs`;
    const listed = async () =>
      ((await (await get(list, { 'PRIVATE-TOKEN': 'pat' })).json()) as { id: number; status: string }[]).find((j) => j.id === running.id)
        ?.status;
    assert.equal(await status(one), 'running');
    assert.equal(await listed(), 'running');
    assert.equal(await status(one), 'success', 'poll 3 sees the new status');
    assert.equal(sim.pollsOf(running.id), 3);
    let fired = 0;
    sim.afterRequests({ method: 'GET', path: `/api/v4/projects/${project.id}` }, 2, () => fired++);
    for (let i = 0; i < 3; i++) await (await get(`${sim.apiUrl}/projects/${project.id}`, { 'PRIVATE-TOKEN': 'pat' })).arrayBuffer();
    assert.equal(fired, 1, 'once, after the second');
  });
});

test('a reset or stall fault longer than the body answers it whole (the kept-alive socket is not killed)', {
  timeout: 20_000,
}, async () => {
  await withSim('proxy', async (sim) => {
    const { project, job } = basic(sim);
    const url = `${sim.apiUrl}/projects/${project.id}/jobs/${job.id}/artifacts`;
    for (const kind of ['reset', 'stall'] as const) {
      sim.injectFault({ path: /\/artifacts$/, kind, afterBytes: ZIP_BYTES.length });
      const r = await get(url, { 'PRIVATE-TOKEN': 'pat' });
      assert.ok(Buffer.from(await r.arrayBuffer()).equals(ZIP_BYTES), kind);
      // At once, so it reuses the kept-alive connection: a socket killed or held after a whole body would fail it.
      const next = await get(url, { 'PRIVATE-TOKEN': 'pat' });
      assert.ok(Buffer.from(await next.arrayBuffer()).equals(ZIP_BYTES), `${kind}: the request after it`);
    }
  });
});

test('groups/:id/projects: shared projects unless with_shared=false, archived unless archived=false (lib/api/groups.rb)', async () => {
  await withSim('redirect', async (sim) => {
    const grp = sim.addGroup({ path: 'grp' });
    const other = sim.addGroup({ path: 'other' });
    const own = sim.addProject({ path: 'own', groupId: grp.id });
    const old = sim.addProject({ path: 'old', groupId: grp.id, archived: true });
    const shared = sim.addProject({ path: 'lib', groupId: other.id, sharedWithGroups: [grp.id] });
    sim.addAccessToken('pat', { role: 'maintainer' });
    const ids = async (q: string) =>
      ((await (await get(`${sim.apiUrl}/groups/grp/projects?${q}`, { 'PRIVATE-TOKEN': 'pat' })).json()) as { id: number }[])
        .map((p) => p.id)
        .sort();
    assert.deepEqual(await ids(''), [own.id, old.id, shared.id].sort());
    assert.deepEqual(await ids('with_shared=false'), [own.id, old.id].sort());
    assert.deepEqual(await ids('with_shared=false&archived=false'), [own.id]);
    const entity = (await (await get(`${sim.apiUrl}/projects/${old.id}`, { 'PRIVATE-TOKEN': 'pat' })).json()) as { archived: boolean };
    assert.equal(entity.archived, true);
  });
});

for (const [profile, routes] of [
  ['17.0', { jobs: 404, pipelines: 404, bridges: 404, triggerJobs: 404 }],
  ['18.9', { jobs: 200, pipelines: 404, bridges: 404, triggerJobs: 404 }],
  ['newest', { jobs: 200, pipelines: 200, bridges: 200, triggerJobs: 200 }],
] as const) {
  test(`profile ${profile}: which pipeline routes take a job token (anonymous elsewhere: 404 Project Not Found)`, async () => {
    const sim = await startSimulator({ profile });
    try {
      assert.equal(sim.profile.name, profile);
      const up = sim.addProject({ path: 'grp/app' });
      const down = sim.addProject({ path: 'grp/deploy' });
      up.jobTokenAllowlist.push(down.id);
      const pl = sim.addPipeline({ projectId: up.id });
      sim.addJob({ pipelineId: pl.id, name: 'build' });
      const child = sim.addPipeline({ projectId: down.id, status: 'running', upstream: { projectId: up.id, pipelineId: pl.id } });
      const job = sim.addJob({ pipelineId: child.id, name: 'deploy', status: 'running' });
      sim.addJobToken('jt', job.id);
      const h = { 'JOB-TOKEN': 'jt' };
      const base = `${sim.apiUrl}/projects/${up.id}/pipelines`;
      const jobs = await get(`${base}/${pl.id}/jobs`, h);
      assert.equal(jobs.status, routes.jobs);
      if (jobs.status === 404) assert.deepEqual(await jobs.json(), { message: '404 Project Not Found' });
      assert.equal((await get(base, h)).status, routes.pipelines);
      assert.equal((await get(`${base}/${pl.id}`, h)).status, routes.pipelines);
      assert.equal((await get(`${base}/${pl.id}/bridges`, h)).status, routes.bridges);
      const tj = await get(`${base}/${pl.id}/trigger_jobs`, h);
      assert.equal(tj.status, routes.triggerJobs);
      // no such route before 19.2: the route-level 404 shape
      if (!sim.profile.triggerJobsRoute) assert.deepEqual(await tj.json(), { error: '404 Not Found' });
      // statuses: waiting_for_callback is known from the 18.x profiles on (has_status.rb)
      sim.addAccessToken('pat', { role: 'maintainer' });
      const scoped = await get(`${base}/${pl.id}/jobs?scope[]=waiting_for_callback`, { 'PRIVATE-TOKEN': 'pat' });
      assert.equal(scoped.status, profile === '17.0' ? 400 : 200);
      const vars = sim.upstreamVariables(child.id);
      assert.deepEqual(
        Object.keys(vars).sort(),
        profile === '17.0' ? [] : ['CI_UPSTREAM_JOB_ID', 'CI_UPSTREAM_PIPELINE_ID', 'CI_UPSTREAM_PROJECT_ID'],
      );
      if (profile !== '17.0') assert.equal(vars.CI_UPSTREAM_PROJECT_ID, String(up.id));
    } finally {
      await sim.close();
    }
  });
}
