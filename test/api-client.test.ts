// Tests of src/api: the GitLab client against small node:http servers (no simulator), plus unit tests
// of URL encoding, retry timing, NO_PROXY matching and error mapping.
import { after, before, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGitLabClient, parseLinkHeader, type ClientSettings } from '../src/api/client.ts';
import { downloadToFile } from '../src/workspace/file-sink.ts';
import { selfSignedCert, startConnectProxy } from './helpers/proxies.ts';
import { HttpStatusError, parseErrorBody, toRelayError } from '../src/api/errors.ts';
import { proxyForUrl, shouldBypassProxy } from '../src/api/proxy.ts';
import { isRetryableNetworkError, isRetryableStatus, rateLimitWindowMs, retryDelay, unhintedRateLimitDelay } from '../src/api/retry.ts';
import { encodeArtifactPath, encodeProject, encodeRef, joinApi, redactUrl } from '../src/api/urls.ts';
import { NotFoundError, RelayError } from '../src/runtime/errors.ts';
import { logger } from '../src/runtime/log.ts';

for (const k of Object.keys(process.env)) if (/_proxy$/i.test(k)) delete process.env[k];

const TOKEN = 'glpat-SECRET-token-1234567890';

type Handler = (req: IncomingMessage, res: ServerResponse, srv: TestServer) => void;
interface TestServer {
  url: string;
  origin: string;
  requests: { method: string; url: string; headers: IncomingMessage['headers'] }[];
  handler: Handler;
  server: Server;
  close(): Promise<void>;
}

async function startServer(handler: Handler = (_q, r) => r.end()): Promise<TestServer> {
  const srv = { requests: [], handler } as unknown as TestServer;
  const server = createServer((req, res) => {
    srv.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    srv.handler(req, res, srv);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  srv.server = server;
  srv.origin = `http://127.0.0.1:${port}`;
  srv.url = `${srv.origin}/api/v4`;
  srv.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return srv;
}

function settings(s: TestServer, extra: Partial<ClientSettings> = {}): ClientSettings {
  return { apiUrl: s.url, token: TOKEN, tokenType: 'private', retries: 3, timeoutMs: 2000, retryBaseMs: 5, project: 'grp/proj', ...extra };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Kills the response's connection once the client has written `cut` bytes (counted through its onWritten), not after a
 * timer: a client that had not read them all yet would lose the rest of its buffer, and resume from a random offset.
 */
async function resetOnceClientHas(res: ServerResponse, clientHas: () => number, cut: number): Promise<void> {
  while (clientHas() < cut && !res.socket?.destroyed) await new Promise((resolve) => setImmediate(resolve));
  res.socket?.destroy();
}

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'api-client-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A self-signed certificate for 127.0.0.1 (openssl): the key and certificate PEM, and the certificate's file. */
function makeCert(): { key: Buffer; cert: Buffer & { path: string } } {
  const key = join(tmp, `key-${randomBytes(4).toString('hex')}.pem`);
  const cert = join(tmp, `cert-${randomBytes(4).toString('hex')}.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(key), cert: Object.assign(readFileSync(cert), { path: cert }) };
}

function assertNoToken(err: unknown) {
  const e = err as RelayError;
  const text = JSON.stringify({ message: e.message, advice: e.advice, details: e.details, stack: e.stack });
  assert.ok(!text.includes(TOKEN), `token leaked: ${text}`);
}

async function catchErr(p: Promise<unknown>): Promise<RelayError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RelayError, `expected RelayError, got ${String(err)}`);
    assertNoToken(err);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('urls', () => {
  it('encodes projects, refs and artifact paths', () => {
    assert.equal(encodeProject('42'), '42');
    assert.equal(encodeProject('grp/sub/proj'), 'grp%2Fsub%2Fproj');
    assert.equal(encodeRef('feature/a b#1'), 'feature/a%20b%231');
    assert.equal(encodeArtifactPath('dist/my file?.json'), 'dist/my%20file%3F.json');
    assert.equal(encodeArtifactPath('/a/b'), 'a/b');
  });
  it('joins API paths with queries, arrays as key[]', () => {
    const u = joinApi('https://gl.example/api/v4/', '/projects/1/jobs', {
      scope: ['success', 'failed'],
      per_page: 100,
      x: undefined,
      flag: true,
    });
    assert.equal(u, 'https://gl.example/api/v4/projects/1/jobs?scope%5B%5D=success&scope%5B%5D=failed&per_page=100&flag=true');
    assert.equal(redactUrl('https://u:p@s3.example/b/o?X-Amz-Signature=abc#f'), 'https://s3.example/b/o');
  });
});

describe('retry policy', () => {
  it('backs off exponentially with full jitter, capped at 60 s', () => {
    assert.equal(
      retryDelay(1, 1000, {}, () => 0.999999),
      999,
    );
    assert.equal(
      retryDelay(3, 1000, {}, () => 0.5),
      2000,
    );
    assert.equal(
      retryDelay(20, 1000, {}, () => 0.999999),
      59999,
    );
    assert.equal(
      retryDelay(3, 1000, {}, () => 0),
      0,
    );
  });
  it('honours Retry-After seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(retryDelay(1, 1000, { retryAfter: '7', now }), 7000);
    assert.equal(retryDelay(1, 1000, { retryAfter: 'Thu, 01 Jan 2026 00:00:30 GMT', now }), 30000);
    assert.equal(retryDelay(1, 1000, { retryAfter: '100000', now }), 300000, 'capped at 5 min');
  });
  it('honours RateLimit-Reset as absolute unix seconds', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(retryDelay(1, 1000, { rateLimitReset: String(now / 1000 + 12), now }), 12000);
    assert.equal(retryDelay(1, 1000, { rateLimitReset: String(now / 1000 - 5), now }), 0);
    assert.equal(retryDelay(1, 1000, { retryAfter: '3', rateLimitReset: String(now / 1000 + 12), now }), 3000, 'Retry-After wins');
  });
  it('classifies statuses and network errors', () => {
    for (const s of [429, 500, 502, 503, 504]) assert.ok(isRetryableStatus(s), String(s));
    for (const s of [400, 401, 403, 404, 409, 200]) assert.ok(!isRetryableStatus(s), String(s));
    for (const code of ['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE']) {
      assert.ok(isRetryableNetworkError(Object.assign(new Error('x'), { code })), code);
    }
    assert.ok(isRetryableNetworkError(Object.assign(new Error('t'), { name: 'TimeoutError' })));
    assert.ok(isRetryableNetworkError(Object.assign(new Error('r'), { name: 'ReadError' })));
    assert.ok(isRetryableNetworkError(new Error('Premature close')));
    assert.ok(!isRetryableNetworkError(Object.assign(new Error('x'), { code: 'ENOTFOUND' })));
    assert.ok(!isRetryableNetworkError(Object.assign(new Error('x'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })));
  });
});

describe('proxy', () => {
  it('matches NO_PROXY entries', () => {
    const u = (s: string) => new URL(s);
    assert.ok(shouldBypassProxy(u('https://gitlab.example.com/x'), 'gitlab.example.com'));
    assert.ok(shouldBypassProxy(u('https://a.gitlab.example.com/x'), 'gitlab.example.com'), 'bare domain matches subdomains');
    assert.ok(!shouldBypassProxy(u('https://notgitlab.example.com/x'), 'gitlab.example.com'));
    assert.ok(shouldBypassProxy(u('https://s3.internal/x'), 'foo, .internal'));
    assert.ok(shouldBypassProxy(u('https://internal/x'), '.internal'));
    assert.ok(shouldBypassProxy(u('https://x.corp.example/x'), '*.corp.example'));
    assert.ok(shouldBypassProxy(u('https://anything/x'), '*'));
    assert.ok(shouldBypassProxy(u('https://gl.example:8443/x'), 'gl.example:8443'));
    assert.ok(!shouldBypassProxy(u('https://gl.example/x'), 'gl.example:8443'), 'port must match (443 default)');
    assert.ok(shouldBypassProxy(u('http://gl.example/x'), 'gl.example:80'));
    assert.ok(shouldBypassProxy(u('http://127.0.0.1:9000/x'), 'localhost,127.0.0.1'));
    assert.ok(shouldBypassProxy(u('http://10.1.2.3/x'), '10.0.0.0/8'));
    assert.ok(!shouldBypassProxy(u('http://11.1.2.3/x'), '10.0.0.0/8'));
    assert.ok(shouldBypassProxy(u('http://[::1]:8080/x'), '::1'));
    assert.ok(shouldBypassProxy(u('https://GitLab.Example.COM/x'), 'gitlab.example.com'));
    assert.ok(!shouldBypassProxy(u('https://gitlab.example.com/x'), ''));
  });
  it('picks the proxy per URL scheme and honours NO_PROXY', () => {
    const env = { HTTPS_PROXY: 'http://proxy:3128', http_proxy: 'proxy2:8080', NO_PROXY: 'storage.local' };
    assert.equal(proxyForUrl('https://gitlab.com/api', env), 'http://proxy:3128');
    assert.equal(proxyForUrl('http://gitlab.local/api', env), 'http://proxy2:8080');
    assert.equal(proxyForUrl('https://storage.local/o', env), undefined);
    assert.equal(proxyForUrl('https://gitlab.com/api', {}), undefined);
  });
});

describe('error mapping', () => {
  const url = 'https://gl.example/api/v4/projects/grp%2Fproj/jobs/7/artifacts?private_token=abc';
  const map = (
    status: number,
    body: string,
    tokenType: ClientSettings['tokenType'] = 'private',
    ct = 'application/json',
    u = url,
    attempts?: number,
  ) =>
    toRelayError(new HttpStatusError(status, body, { 'content-type': ct }, u), {
      action: 'GET /projects/grp%2Fproj/jobs/7/artifacts',
      tokenType,
      project: 'grp/proj',
      attempts,
    });

  it('parses each GitLab body shape', () => {
    assert.deepEqual(parseErrorBody('{"message":"404 Not found"}'), { text: '404 Not found', shape: 'message' });
    assert.equal(parseErrorBody('{"message":{"error":"Too many"}}').shape, 'message.error');
    assert.equal(parseErrorBody('{"message":{"name":["is too long","is invalid"]}}').text, 'name is too long, is invalid');
    assert.deepEqual(parseErrorBody('{"error":"job is missing"}'), { text: 'job is missing', shape: 'error' });
    assert.deepEqual(parseErrorBody('404 page not found\n', 'text/plain'), { text: '404 page not found', shape: 'text' });
    assert.equal(parseErrorBody('<!DOCTYPE html><html>Sign in</html>', 'text/html').text, 'an HTML page (proxy or login page?)');
  });
  it('401 with a job token: its job is no longer running', () => {
    const e = map(401, '{"message":"401 Unauthorized"}', 'job');
    assert.equal(e.details.status, 401);
    assert.equal(e.details.body, '401 Unauthorized');
    assert.equal(e.details.url, 'https://gl.example/api/v4/projects/grp%2Fproj/jobs/7/artifacts');
    assert.match(e.advice ?? '', /no longer running/);
    assert.ok(!(e instanceof NotFoundError));
  });
  it('403 allowlist text names both projects', () => {
    const e = map(403, '{"message":"403 Forbidden - Authentication by CI/CD job token not allowed from grp/down to grp/up."}', 'job');
    assert.equal(e.details.status, 403);
    assert.match(
      e.advice ?? '',
      /add project grp\/down to the job token allowlist of grp\/up \(Settings > CI\/CD > Job token permissions\)/i,
    );
    const other = map(403, '{"message":"403 Forbidden"}');
    assert.match(other.advice ?? '', /lacks permission/);
  });
  it('404 Project Not Found with a job token: allowlist or Free tier', () => {
    const e = map(404, '{"message":"404 Project Not Found"}', 'job');
    assert.equal(e.details.status, 404);
    assert.ok(!(e instanceof NotFoundError));
    assert.match(e.advice ?? '', /allowlist/);
    assert.match(e.advice ?? '', /GitLab\.com Free/);
    assert.match(e.advice ?? '', /read_api/);
    const p = map(404, '{"message":"404 Project Not Found"}', 'private');
    assert.match(p.advice ?? '', /does not exist, or the token has no access to it/);
  });
  it('404 Not found / Job Not Found / Workhorse text on artifact routes: NotFoundError', () => {
    for (const [body, ct] of [
      ['{"message":"404 Not found"}', 'application/json'],
      ['{"message":"404 Not Found"}', 'application/json'],
      ['{"message":"404 Job Not Found"}', 'application/json'],
      ['404 page not found\n', 'text/plain; charset=utf-8'],
    ] as const) {
      const e = map(404, body, 'private', ct);
      assert.ok(e instanceof NotFoundError, body);
      assert.equal(e.details.status, 404);
      assert.match(e.advice ?? '', /its artifacts expired or were erased/);
    }
  });
  it('400 names the field; 429 {"message":{"error"}} says retried', () => {
    const e = map(400, '{"error":"job is missing"}');
    assert.equal(e.details.status, 400);
    assert.equal(e.details.body, 'job is missing');
    assert.match(e.advice ?? '', /`job`/);
    const r = map(
      429,
      '{"message":{"error":"This endpoint has been requested too many times. Try again later."}}',
      'private',
      'application/json',
      url,
      4,
    );
    assert.equal(r.details.status, 429);
    assert.match(r.message, /requested too many times/);
    assert.match(r.advice ?? '', /retried 3 times/);
    const t = map(429, 'Retry later\n', 'private', 'text/plain');
    assert.equal(t.details.body, 'Retry later');
  });
  it('network and TLS errors name host, code and settings', () => {
    const n = toRelayError(Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' }), {
      action: 'GET /x',
      tokenType: 'job',
      url: 'https://gl.example/api/v4/x',
    });
    assert.match(n.message, /gl\.example/);
    assert.match(n.message, /ECONNREFUSED/);
    assert.match(n.advice ?? '', /server_url/);
    assert.match(n.advice ?? '', /proxy/);
    const t = toRelayError(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), {
      action: 'GET /x',
      tokenType: 'job',
      url: 'https://gl.example/api/v4/x',
    });
    assert.match(t.advice ?? '', /ca_file/);
  });
});

describe('client against a local server', () => {
  it('sends the auth header per token type, and none for "none"', async () => {
    const srv = await startServer((_q, res) => json(res, 200, { ok: true }));
    try {
      for (const [tokenType, name, value] of [
        ['job', 'job-token', TOKEN],
        ['private', 'private-token', TOKEN],
        ['oauth', 'authorization', `Bearer ${TOKEN}`],
      ] as const) {
        const c = createGitLabClient(settings(srv, { tokenType }));
        const r = await c.getJson<{ ok: boolean }>('/projects/1');
        assert.deepEqual(r.body, { ok: true });
        assert.equal(srv.requests.at(-1)!.headers[name], value);
      }
      const none = createGitLabClient(settings(srv, { tokenType: 'none', token: '' }));
      await none.getJson('/projects/1');
      const h = srv.requests.at(-1)!.headers;
      assert.equal(h['job-token'] ?? h['private-token'] ?? h.authorization, undefined);
      assert.equal(srv.requests.at(-1)!.url, '/api/v4/projects/1');
    } finally {
      await srv.close();
    }
  });

  it('302 to another origin: no credentials there; same-origin redirect keeps them', async () => {
    const data = randomBytes(5000);
    const storage = await startServer((_q, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(data.length) });
      res.end(data);
    });
    const gitlab = await startServer((req, res) => {
      if (req.url?.startsWith('/api/v4/projects/old%2Fpath')) {
        res.writeHead(301, { location: '/api/v4/projects/5/jobs/1/artifacts' });
        res.end();
      } else {
        res.writeHead(302, { location: `${storage.origin}/bucket/artifacts.zip?X-Amz-Signature=sig&X-Amz-Credential=cred` });
        res.end();
      }
    });
    try {
      for (const tokenType of ['job', 'private', 'oauth'] as const) {
        const c = createGitLabClient(settings(gitlab, { tokenType }));
        const r = await downloadToFile(c, '/projects/old%2Fpath/jobs/1/artifacts', undefined, join(tmp, 'redir.zip'));
        assert.equal(r.sha256, sha(data));
        assert.equal(r.redirected, true);
        assert.equal(r.finalUrl, `${storage.origin}/bucket/artifacts.zip`);
        const hops = gitlab.requests.slice(-2);
        assert.equal(hops[0]!.url, '/api/v4/projects/old%2Fpath/jobs/1/artifacts');
        assert.equal(hops[1]!.url, '/api/v4/projects/5/jobs/1/artifacts');
        for (const h of hops)
          assert.ok(h.headers['job-token'] || h.headers['private-token'] || h.headers.authorization, 'same origin keeps auth');
        const st = storage.requests.at(-1)!.headers;
        assert.equal(st['job-token'], undefined);
        assert.equal(st['private-token'], undefined);
        assert.equal(st.authorization, undefined);
        assert.equal(st.cookie, undefined);
      }
      const head = await createGitLabClient(settings(gitlab)).head('/projects/5/jobs/1/artifacts');
      assert.equal(head.status, 200);
      assert.equal(head.redirected, true);
      assert.equal(storage.requests.at(-1)!.method, 'HEAD');
      assert.equal(storage.requests.at(-1)!.headers['private-token'], undefined);
    } finally {
      await gitlab.close();
      await storage.close();
    }
  });

  it('429 with Retry-After, then 200', async () => {
    let n = 0;
    const srv = await startServer((_q, res) => {
      if (n++ === 0) {
        res.writeHead(429, {
          'content-type': 'text/plain',
          'retry-after': '0',
          'ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600),
        });
        res.end('Retry later\n');
      } else json(res, 200, [1]);
    });
    // The wait the client chose, from its retry log line (not the wall clock): 0.0 s is Retry-After: 0; the
    // RateLimit-Reset would say 300.0 s (capped) and the backoff up to 10 s.
    const warn = mock.method(logger, 'warn', () => {});
    try {
      const r = await createGitLabClient(settings(srv, { retryBaseMs: 10_000 })).getJson<number[]>('/projects/1/jobs');
      assert.deepEqual(r.body, [1]);
      assert.equal(srv.requests.length, 2);
      assert.deepEqual(
        warn.mock.calls.map((c) => String(c.arguments[0]).replace(/^.*: /, '')),
        ['HTTP 429; retrying (attempt 2/4) in 0.0 s'],
      );
    } finally {
      warn.mock.restore();
      await srv.close();
    }
  });

  it('503 twice then 200; 404 is not retried; 503 beyond retries says so', async () => {
    let n = 0;
    const srv = await startServer((req, res) => {
      if (req.url?.includes('/missing')) return json(res, 404, { message: '404 Not found' });
      if (req.url?.includes('/down')) return json(res, 503, { message: '503 Service Unavailable' });
      if (n++ < 2) return json(res, 503, { message: 'busy' });
      json(res, 200, { id: 1 });
    });
    try {
      const c = createGitLabClient(settings(srv));
      assert.deepEqual((await c.getJson('/projects/1/jobs/1')).body, { id: 1 });
      assert.equal(srv.requests.length, 3);
      const before = srv.requests.length;
      const e = await catchErr(downloadToFile(c, '/projects/1/jobs/9/artifacts/missing', undefined, join(tmp, 'missing')));
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.details.status, 404);
      assert.equal(srv.requests.length - before, 1, '404 not retried');
      const b2 = srv.requests.length;
      const d = await catchErr(createGitLabClient(settings(srv, { retries: 2 })).getJson('/down'));
      assert.equal(d.details.status, 503);
      assert.equal(srv.requests.length - b2, 3);
      assert.match(d.advice ?? '', /retried 2 times/);
    } finally {
      await srv.close();
    }
  });

  for (const ranges of [true, false]) {
    it(`reset mid-body twice: byte-exact result (${ranges ? 'with' : 'without'} Range support)`, async () => {
      const data = randomBytes(300_000);
      const etag = `"${sha(data)}"`;
      let full = 0;
      let have = 0;
      const srv = await startServer((req, res) => {
        const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        if (ranges && range && req.headers['if-range'] === etag) {
          const start = Number(range[1]);
          res.writeHead(206, {
            'content-length': String(data.length - start),
            'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
            etag,
            'accept-ranges': 'bytes',
          });
          const part = data.subarray(start);
          if (full++ < 2) {
            res.write(part.subarray(0, 50_000));
            void resetOnceClientHas(res, () => have, start + 50_000);
          } else res.end(part);
          return;
        }
        const headers: Record<string, string> = { 'content-type': 'application/zip', 'content-length': String(data.length) };
        if (ranges) Object.assign(headers, { etag, 'accept-ranges': 'bytes' });
        res.writeHead(200, headers);
        if (full++ < 2) {
          res.write(data.subarray(0, 100_000));
          void resetOnceClientHas(res, () => have, 100_000);
        } else res.end(data);
      });
      try {
        const file = join(tmp, `reset-${ranges}.zip`);
        const progress: number[] = [];
        const written: number[] = [];
        let restarts = 0;
        const r = await downloadToFile(createGitLabClient(settings(srv)), '/projects/1/jobs/1/artifacts', undefined, file, {
          onProgress: (p) => progress.push(p.bytes),
          onWritten: (n) => {
            have = n;
            written.push(n);
          },
          onRestart: () => {
            restarts += 1;
            have = 0;
            written.push(0);
          },
        });
        const got = await readFile(file);
        assert.equal(got.length, data.length);
        assert.equal(r.bytes, data.length);
        assert.equal(sha(got), sha(data));
        assert.equal(r.sha256, sha(data));
        assert.equal(r.attempts, 3);
        assert.equal(r.acceptRanges, ranges);
        assert.equal(progress.at(-1), data.length);
        // The written mark only moves forward, except that a restart (no Range) sets it back to zero first.
        assert.equal(written.at(-1), data.length);
        for (let i = 1; i < written.length; i++) assert.ok(written[i]! > written[i - 1]! || written[i] === 0);
        assert.equal(restarts, ranges ? 0 : 2);
        assert.equal(r.etag, ranges ? etag : undefined);
        if (ranges) {
          assert.equal(srv.requests[1]!.headers.range, 'bytes=100000-');
          assert.equal(srv.requests[2]!.headers.range, 'bytes=150000-');
        } else {
          assert.equal(srv.requests[1]!.headers.range, undefined);
        }
      } finally {
        await srv.close();
      }
    });
  }

  it('readRange: a suffix range and an explicit range through a redirect, no credentials at storage; undefined on 200', async () => {
    const data = randomBytes(100_000);
    const etag = '"abc"';
    let honour = true;
    const storage = await startServer((req, res) => {
      const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
      if (!honour || !m) {
        res.writeHead(200, { 'content-length': String(data.length) });
        return res.end(data);
      }
      const start = m[1] === '' ? data.length - Number(m[2]) : Number(m[1]);
      const end = m[1] === '' || m[2] === '' ? data.length - 1 : Number(m[2]);
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, etag, 'content-length': String(end - start + 1) });
      res.end(data.subarray(start, end + 1));
    });
    const gitlab = await startServer((_q, res) => {
      res.writeHead(302, { location: `${storage.origin}/o?sig=1` });
      res.end();
    });
    try {
      const c = createGitLabClient(settings(gitlab, { tokenType: 'job' }));
      const tail = await c.readRange('/projects/1/jobs/1/artifacts', undefined, -65536);
      assert.equal(tail?.total, data.length);
      assert.equal(tail?.etag, etag);
      assert.deepEqual(tail?.buffer, data.subarray(data.length - 65536));
      assert.equal(storage.requests[0]!.headers.range, 'bytes=-65536');
      const mid = await c.readRange('/projects/1/jobs/1/artifacts', undefined, 1000, 2000);
      assert.deepEqual(mid?.buffer, data.subarray(1000, 2000));
      assert.equal(storage.requests[1]!.headers.range, 'bytes=1000-1999');
      for (const q of storage.requests) assert.equal(q.headers['job-token'], undefined);
      honour = false;
      assert.equal(await c.readRange('/projects/1/jobs/1/artifacts', undefined, -65536), undefined);
    } finally {
      await gitlab.close();
      await storage.close();
    }
  });

  it('resumes against the storage URL after a redirect, with no credentials there', async () => {
    const data = randomBytes(120_000);
    let first = true;
    let have = 0;
    const storage = await startServer((req, res) => {
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        res.writeHead(206, {
          'content-length': String(data.length - start),
          'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
          'accept-ranges': 'bytes',
          etag: '"v1"',
        });
        return res.end(data.subarray(start));
      }
      res.writeHead(200, { 'content-length': String(data.length), 'accept-ranges': 'bytes', etag: '"v1"' });
      if (first) {
        first = false;
        res.write(data.subarray(0, 40_000));
        void resetOnceClientHas(res, () => have, 40_000);
      } else res.end(data);
    });
    const gitlab = await startServer((_q, res) => {
      res.writeHead(302, { location: `${storage.origin}/o?sig=1` });
      res.end();
    });
    try {
      const file = join(tmp, 'resume-storage.zip');
      const r = await downloadToFile(
        createGitLabClient(settings(gitlab, { tokenType: 'job' })),
        '/projects/1/jobs/1/artifacts',
        undefined,
        file,
        {
          onWritten: (n) => {
            have = n;
          },
        },
      );
      assert.equal(sha(await readFile(file)), sha(data));
      assert.equal(r.sha256, sha(data));
      assert.equal(gitlab.requests.length, 1, 'resumed at the storage URL');
      assert.equal(storage.requests[1]!.headers.range, 'bytes=40000-');
      assert.equal(storage.requests[1]!.headers['if-range'], '"v1"');
      assert.equal(storage.requests[1]!.headers['if-match'], '"v1"');
      for (const q of storage.requests) assert.equal(q.headers['job-token'], undefined);
    } finally {
      await gitlab.close();
      await storage.close();
    }
  });

  it('a stalled body times out and the retry succeeds', async () => {
    const data = randomBytes(10_000);
    let n = 0;
    const srv = await startServer((_q, res) => {
      res.writeHead(200, { 'content-length': String(data.length) });
      if (n++ === 0)
        res.write(data.subarray(0, 1000)); // then nothing, forever
      else res.end(data);
    });
    // Counted, not timed: the stalled attempt is given up by the idle timeout and a second request made.
    const warn = mock.method(logger, 'warn', () => {});
    try {
      const r = await downloadToFile(
        createGitLabClient(settings(srv, { timeoutMs: 500 })),
        '/projects/1/jobs/1/artifacts',
        undefined,
        join(tmp, 'stall.zip'),
      );
      assert.equal(r.sha256, sha(data));
      assert.equal(r.attempts, 2);
      assert.equal(srv.requests.length, 2);
      // got's socket timeout and our body idle timer are both 500 ms; either may notice the stall first.
      assert.match(
        String(warn.mock.calls[0]?.arguments[0]),
        /ETIMEDOUT: (no data received for 500 ms|Timeout awaiting 'socket' for 500ms); retrying \(attempt 2\/4\)/,
      );
      const srv2 = await startServer(() => {}); // never answers
      try {
        const e = await catchErr(createGitLabClient(settings(srv2, { timeoutMs: 300, retries: 1 })).getJson('/projects/1'));
        assert.match(e.message, /timed out/);
        assert.equal(srv2.requests.length, 2, 'the unanswered request was retried once, then given up');
      } finally {
        await srv2.close();
      }
    } finally {
      warn.mock.restore();
      await srv.close();
    }
  });

  it('a reset mid-body from a server without validators restarts from zero: two objects are never spliced', async () => {
    const a = randomBytes(120_000);
    const b = randomBytes(120_000);
    let n = 0;
    // Accept-Ranges and Content-Length but no ETag or Last-Modified; the object changes after the first answer, and
    // the server answers any Range from the new object.
    const srv = await startServer((req, res) => {
      const data = n++ === 0 ? a : b;
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        res.writeHead(206, {
          'content-length': String(data.length - start),
          'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
          'accept-ranges': 'bytes',
        });
        return res.end(data.subarray(start));
      }
      res.writeHead(200, { 'content-length': String(data.length), 'accept-ranges': 'bytes' });
      if (data === a) res.write(a.subarray(0, 40_000), () => setTimeout(() => res.socket?.destroy(), 20));
      else res.end(data);
    });
    try {
      const file = join(tmp, 'no-validator.zip');
      const r = await downloadToFile(createGitLabClient(settings(srv)), '/projects/1/jobs/1/artifacts', undefined, file);
      assert.equal(srv.requests[1]!.headers.range, undefined, 'no unconditional resume');
      assert.equal(r.sha256, sha(b));
      assert.equal(sha(await readFile(file)), sha(b));
    } finally {
      await srv.close();
    }
  });

  it('a download asks for a minor GC every 1 MiB of body where node has gc (as a command takes it, v8-flags.ts)', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const srv = await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(data.length) });
      res.end(data);
    });
    const g = globalThis as { gc?: unknown };
    const had = g.gc;
    const calls: unknown[] = [];
    g.gc = (o: unknown) => calls.push(o);
    try {
      const file = join(tmp, 'paced.zip');
      const r = await downloadToFile(createGitLabClient(settings(srv)), '/projects/1/jobs/1/artifacts', undefined, file);
      assert.equal(r.sha256, sha(data));
      // About one per 1 MiB of this body (the process's pacer may hold bytes counted before it, and a body's last
      // bytes may not reach the next MiB).
      assert.ok(calls.length >= 4 && calls.length <= 6, JSON.stringify(calls));
      assert.deepEqual(calls[0], { type: 'minor' });
    } finally {
      g.gc = had;
      await srv.close();
    }
  });

  it('parallel ranges: a connection goes on to its next part while the parts before are read back for the hash', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const etag = '"v1"';
    let secondAsked!: () => void;
    const second = new Promise<void>((resolve) => {
      secondAsked = resolve;
    });
    const srv = await startServer((req, res) => {
      const m = /bytes=(\d+)-(\d+)/.exec(String(req.headers.range));
      const [a, b] = [Number(m?.[1]), Number(m?.[2])];
      if (a === 1024 * 1024) secondAsked();
      res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${data.length}`, 'content-length': String(b - a + 1), etag });
      res.end(data.subarray(a, b + 1));
    });
    const held = Buffer.alloc(data.length);
    let released = false;
    let safetyNet = false;
    // The read-back of part 0 waits for the request of part 1; a safety net only for a build that never asks for it
    // (it would wait for the hash first): the download then ends and the test fails, instead of hanging.
    const safety = new Promise<void>((resolve) => {
      setTimeout(() => {
        safetyNet = true;
        resolve();
      }, 10_000).unref();
    });
    const gate = Promise.race([second, safety]).then(() => {
      released = true;
    });
    const sink = {
      write: async (chunk: Buffer, at: number) => {
        chunk.copy(held, at);
      },
      truncate: async () => undefined,
      read: async (at: number, length: number) => {
        await gate;
        return Buffer.from(held.subarray(at, at + length));
      },
    };
    try {
      const client = createGitLabClient(settings(srv));
      const r = await client.downloadParallel('/projects/1/jobs/1/artifacts', undefined, sink, {
        total: data.length,
        validators: { etag },
        connections: 1,
        partBytes: 1024 * 1024,
      });
      assert.equal(released, true);
      assert.equal(safetyNet, false, 'part 1 was asked for only after part 0 was hashed');
      assert.equal(r.sha256, sha(data));
      assert.ok(held.equals(data));
      assert.deepEqual(
        srv.requests.map((q) => q.headers.range),
        ['bytes=0-1048575', 'bytes=1048576-2097151', 'bytes=2097152-3145727'],
      );
    } finally {
      await srv.close();
    }
  });

  it('a download whose file cannot be written (ENOSPC) fails naming the file, with the disk advice', async () => {
    const data = randomBytes(300_000);
    const srv = await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(data.length) });
      res.end(data);
    });
    try {
      await assert.rejects(
        downloadToFile(createGitLabClient(settings(srv)), '/projects/1/jobs/1/artifacts', undefined, '/dev/full'),
        (err: unknown) => {
          assert.ok(err instanceof RelayError, String(err));
          assert.match(err.message, /^Cannot write \/dev\/full: ENOSPC/);
          assert.match(err.advice ?? '', /disk space/);
          return true;
        },
      );
    } finally {
      await srv.close();
    }
  });

  it('a resume answered from a changed object (another ETag) starts over', async () => {
    const a = randomBytes(120_000);
    const b = randomBytes(120_000);
    let n = 0;
    // A storage that ignores If-Range and If-Match: the 206 carries the new ETag, which the client must notice.
    const srv = await startServer((req, res) => {
      const [data, etag] = n++ === 0 ? [a, '"a"'] : [b, '"b"'];
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const common = { 'accept-ranges': 'bytes', etag };
      if (range) {
        const start = Number(range[1]);
        res.writeHead(206, {
          ...common,
          'content-length': String(data.length - start),
          'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
        });
        return res.end(data.subarray(start));
      }
      res.writeHead(200, { ...common, 'content-length': String(data.length) });
      if (data === a) res.write(a.subarray(0, 40_000), () => setTimeout(() => res.socket?.destroy(), 20));
      else res.end(data);
    });
    try {
      const file = join(tmp, 'changed.zip');
      const r = await downloadToFile(createGitLabClient(settings(srv)), '/projects/1/jobs/1/artifacts', undefined, file);
      assert.equal(srv.requests[1]!.headers['if-range'], '"a"');
      assert.equal(srv.requests[2]!.headers.range, undefined, 'started over');
      assert.equal(r.sha256, sha(b));
      assert.equal(r.etag, '"b"');
      assert.equal(sha(await readFile(file)), sha(b));
    } finally {
      await srv.close();
    }
  });

  it('a body dripping below speed_limit over speed_time is dropped and retried, then fails naming the inputs', {
    timeout: 60_000,
  }, async () => {
    const srv = await startServer((_q, res) => {
      res.writeHead(200, { 'content-length': '100000' });
      const timer = setInterval(() => res.write('x'), 100); // 10 B/s: far below the limit, never idle for `timeout`
      res.on('close', () => clearInterval(timer));
    });
    try {
      const c = createGitLabClient(settings(srv, { retries: 1, speedLimit: 100, speedTimeMs: 300 }));
      const e = await catchErr(downloadToFile(c, '/projects/1/jobs/1/artifacts', undefined, join(tmp, 'drip.zip')));
      assert.equal(e.details.code, 'ERR_TOO_SLOW');
      assert.match(e.message, /slower than 100 B\/s for 0\.3 s/);
      assert.match(e.advice ?? '', /speed_limit/);
      assert.equal(srv.requests.length, 2, 'retried once, like other transient errors');
    } finally {
      await srv.close();
    }
  });

  it('the deadline ends a transfer that is fast enough but too long, and is not retried', { timeout: 60_000 }, async () => {
    const srv = await startServer((_q, res) => {
      res.writeHead(200, { 'content-length': String(100 * 1024 * 1024) });
      const timer = setInterval(() => res.write(Buffer.alloc(1000)), 20);
      res.on('close', () => clearInterval(timer));
    });
    try {
      const c = createGitLabClient(settings(srv, { retries: 3, speedLimit: 1, speedTimeMs: 1000, deadlineMs: 400 }));
      const e = await catchErr(downloadToFile(c, '/projects/1/jobs/1/artifacts', undefined, join(tmp, 'deadline.zip')));
      assert.equal(e.details.code, 'ERR_DEADLINE');
      assert.match(e.advice ?? '', /`deadline`/);
      assert.equal(srv.requests.length, 1);
    } finally {
      await srv.close();
    }
  });

  it('a JSON answer larger than the cap fails with a clear error, having read no more than the cap', async () => {
    let sent = 0;
    const srv = await startServer((_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('[');
      const chunk = Buffer.from('1,'.repeat(32 * 1024));
      const more = () => {
        while (!res.destroyed && sent < 512 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return res.once('drain', more);
        }
      };
      more();
    });
    try {
      const c = createGitLabClient(settings(srv, { maxJsonBytes: 1024 * 1024 }));
      const e = await catchErr(c.getJson('/projects/1/jobs'));
      assert.match(e.message, /larger than 1 MiB/);
      assert.equal(e.details.code, 'ERR_BODY_TOO_LARGE');
      assert.ok(sent < 1024 * 1024 + 16 * 1024 * 1024, `server sent ${sent} bytes`);
    } finally {
      await srv.close();
    }
  });

  it('download: a body beyond its Content-Range or beyond maxBytes is refused; readRange refuses a larger range than asked', async () => {
    const data = randomBytes(50_000);
    const srv = await startServer((req, res) => {
      if (req.url?.includes('/oversize')) {
        // Asked for the last 1000 bytes, answers with all of them.
        res.writeHead(206, { 'content-range': `bytes 0-${data.length - 1}/${data.length}`, 'content-length': String(data.length) });
        return res.end(data);
      }
      if (req.url?.includes('/endless206')) {
        res.writeHead(206, { 'content-range': `bytes ${data.length - 1000}-${data.length - 1}/${data.length}` }); // chunked
      } else res.writeHead(200, { 'accept-ranges': 'bytes' }); // chunked, no announced size
      const timer = setInterval(() => res.write(data), 1);
      res.on('close', () => clearInterval(timer));
    });
    try {
      const c = createGitLabClient(settings(srv));
      assert.equal(await c.readRange('/oversize', undefined, -1000), undefined);
      const e206 = await catchErr(c.readRange('/endless206', undefined, -1000));
      assert.match(e206.message, /more bytes than its Content-Range/);
      const cap = await catchErr(downloadToFile(c, '/endless', undefined, join(tmp, 'endless.zip'), { maxBytes: 200_000 }));
      assert.match(cap.message, /larger than max_archive_bytes \(200000 bytes\)/);
      const tail = await catchErr(downloadToFile(c, '/endless', undefined, join(tmp, 'endless2.zip'), { expectedSize: 120_000 }));
      assert.match(tail.message, /more than the 120000 bytes it announced/);
      assert.ok((await readFile(join(tmp, 'endless2.zip'))).length <= 120_000);
    } finally {
      await srv.close();
    }
  });

  it('an https server redirecting to plain http is refused, naming allow_insecure_redirect; with it the redirect is followed', async () => {
    const { key, cert } = makeCert();
    const storage = await startServer((_q, res) => json(res, 200, { ok: 1 }));
    const server = createHttpsServer({ key, cert }, (_q, res) => {
      res.writeHead(302, { location: `${storage.origin}/o?sig=1` });
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const apiUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/api/v4`;
    try {
      const base = { apiUrl, token: TOKEN, tokenType: 'private' as const, retries: 2, timeoutMs: 2000, retryBaseMs: 5, caFile: cert.path };
      const c = createGitLabClient(base);
      for (const call of [
        () => downloadToFile(c, '/projects/1/jobs/1/artifacts', undefined, join(tmp, 'downgrade.zip')),
        () => c.getJson('/projects/1'),
      ]) {
        const e = await catchErr(call());
        assert.match(e.message, /redirected from https to plain http/);
        assert.match(e.advice ?? '', /allow_insecure_redirect/);
      }
      assert.equal(storage.requests.length, 0, 'never followed');
      const ok = createGitLabClient({ ...base, allowInsecureRedirect: true });
      assert.deepEqual((await ok.getJson('/projects/1')).body, { ok: 1 });
      assert.equal(storage.requests.at(-1)!.headers['private-token'], undefined);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await storage.close();
    }
  });

  it('an HTML page instead of the archive is an error, not retried', async () => {
    const srv = await startServer((_q, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!DOCTYPE html><html><body>Sign in</body></html>');
    });
    try {
      const e = await catchErr(
        downloadToFile(createGitLabClient(settings(srv)), '/projects/1/jobs/1/artifacts', undefined, join(tmp, 'html.zip')),
      );
      assert.match(e.message, /HTML page was served instead of the archive/);
      assert.equal(srv.requests.length, 1);
    } finally {
      await srv.close();
    }
  });

  it('maps real server answers and never leaks the token', async () => {
    const answers: Record<string, [number, string, string]> = {
      '/api/v4/a': [401, '{"message":"401 Unauthorized"}', 'application/json'],
      '/api/v4/b': [
        403,
        '{"message":"403 Forbidden - Authentication by CI/CD job token not allowed from g/a to g/b."}',
        'application/json',
      ],
      '/api/v4/c': [404, '{"message":"404 Project Not Found"}', 'application/json'],
      '/api/v4/projects/1/jobs/2/artifacts/x.txt': [404, '404 page not found\n', 'text/plain; charset=utf-8'],
      '/api/v4/projects/1/jobs/artifacts/main/download?job=': [400, '{"error":"job is missing"}', 'application/json'],
    };
    const srv = await startServer((req, res) => {
      const [s, body, ct] = answers[req.url ?? ''] ?? [500, `echo ${req.headers['job-token']}`, 'text/plain'];
      res.writeHead(s, { 'content-type': ct });
      res.end(body);
    });
    try {
      const c = createGitLabClient(settings(srv, { tokenType: 'job', retries: 1 }));
      assert.equal((await catchErr(c.getJson('/a'))).details.status, 401);
      assert.match((await catchErr(c.getJson('/b'))).advice ?? '', /allowlist of g\/b/);
      assert.match((await catchErr(c.getJson('/c'))).advice ?? '', /GitLab\.com Free/);
      const wh = await catchErr(downloadToFile(c, '/projects/1/jobs/2/artifacts/x.txt', undefined, join(tmp, 'x.txt')));
      assert.ok(wh instanceof NotFoundError);
      assert.equal(wh.details.body, '404 page not found');
      const bad = await catchErr(downloadToFile(c, '/projects/1/jobs/artifacts/main/download', { job: '' }, join(tmp, 'y.zip')));
      assert.equal(bad.details.status, 400);
      const echo = await catchErr(c.getJson('/echo', { private_token: TOKEN }));
      assert.equal(echo.details.status, 500);
      assert.ok(!String(echo.details.url).includes('private_token'));
    } finally {
      await srv.close();
    }
  });

  it('paginates across 3 pages via Link and via X-Next-Page', async () => {
    const srv = await startServer((req, res, s) => {
      const u = new URL(req.url ?? '/', s.origin);
      const page = Number(u.searchParams.get('page') ?? '1');
      const headers: Record<string, string> = {};
      if (u.pathname.endsWith('/link')) {
        if (page < 3) {
          const next = new URL(u);
          next.searchParams.set('page', String(page + 1));
          headers.link = `<${s.origin}${u.pathname}?page=1>; rel="first", <${s.origin}${next.pathname}${next.search}>; rel="next", <${s.origin}/x?page=3>; rel="last"`;
        }
      } else if (u.pathname.endsWith('/xnext')) {
        headers['x-next-page'] = page < 3 ? String(page + 1) : '';
      } else if (u.pathname.endsWith('/evil')) {
        headers.link = '<http://evil.example/api/v4/jobs?page=2>; rel="next"';
      }
      json(res, 200, [page * 10, page * 10 + 1], headers);
    });
    try {
      const c = createGitLabClient(settings(srv));
      for (const route of ['link', 'xnext']) {
        const pages: number[][] = [];
        for await (const p of c.paginate<number>(`/projects/1/${route}`, { per_page: 2, scope: ['success'] })) pages.push(p);
        assert.deepEqual(
          pages,
          [
            [10, 11],
            [20, 21],
            [30, 31],
          ],
          route,
        );
      }
      const last = srv.requests.at(-1)!.url;
      assert.match(last, /per_page=2/);
      assert.match(last, /scope%5B%5D=success/);
      const e = await catchErr(
        (async () => {
          for await (const _ of c.paginate('/projects/1/evil')) void _;
        })(),
      );
      assert.match(e.message, /another origin/);
      assert.equal(srv.requests.at(-1)!.url.includes('evil'), true);
    } finally {
      await srv.close();
    }
  });

  it('parses Link headers robustly', () => {
    const l = parseLinkHeader(
      '<https://g/api/v4/x?page=2&per_page=1>; rel="next", <https://g/api/v4/x?page=1>; rel=first,<https://g/z>;rel="prev last"',
    );
    assert.equal(l.next, 'https://g/api/v4/x?page=2&per_page=1');
    assert.equal(l.first, 'https://g/api/v4/x?page=1');
    assert.equal(l.last, 'https://g/z');
    assert.deepEqual(parseLinkHeader(undefined), {});
  });

  it('delete and post', async () => {
    let n = 0;
    const srv = await startServer((req, res) => {
      if (req.method === 'DELETE' && req.url?.endsWith('/jobs/1/artifacts')) {
        if (n++ === 0) return json(res, 409, { message: 'Action temporarily disabled.' });
        res.writeHead(204);
        return res.end();
      }
      if (req.method === 'DELETE') return json(res, 202, { message: '202 Accepted' });
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => json(res, 200, { id: 1, got: body ? JSON.parse(body) : null }));
    });
    try {
      const c = createGitLabClient(settings(srv));
      const d = await c.delete('/projects/1/jobs/1/artifacts');
      assert.equal(d.status, 204);
      assert.equal(d.body, undefined);
      assert.equal((await c.delete('/projects/1/artifacts')).status, 202);
      const p = await c.post<{ id: number; got: unknown }>('/projects/1/jobs/1/artifacts/keep');
      assert.equal(p.status, 200);
      assert.equal(p.body.id, 1);
      const p2 = await c.post<{ got: unknown }>('/x', { a: 1 });
      assert.deepEqual(p2.body.got, { a: 1 });
    } finally {
      await srv.close();
    }
  });

  it('HTTPS: an untrusted certificate advises ca_file; with ca_file it works', async () => {
    const { key, cert } = selfSignedCert(tmp);
    let hits = 0;
    const server = createHttpsServer({ key: await readFile(key), cert: await readFile(cert) }, (_q, res) => {
      hits++;
      json(res, 200, { ok: 1 });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const apiUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/api/v4`;
    try {
      const base = { apiUrl, token: TOKEN, tokenType: 'private' as const, retries: 2, timeoutMs: 2000, retryBaseMs: 5 };
      const e = await catchErr(createGitLabClient(base).getJson('/projects/1'));
      assert.match(e.advice ?? '', /ca_file/);
      assert.match(e.message, /127\.0\.0\.1/);
      assert.equal(hits, 0);
      const ok = await createGitLabClient({ ...base, caFile: cert }).getJson<{ ok: number }>('/projects/1');
      assert.deepEqual(ok.body, { ok: 1 });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('goes through HTTP(S)_PROXY, except for NO_PROXY hosts (decided per request URL)', async () => {
    const data = randomBytes(2000);
    const storage = await startServer((_q, res) => res.end(data));
    const storagePort = new URL(storage.origin).port;
    const gitlab = await startServer((_q, res) => {
      res.writeHead(302, { location: `${storage.origin}/o` });
      res.end();
    });
    const proxy = await startConnectProxy();
    const { tunnels } = proxy;
    process.env.HTTP_PROXY = proxy.url;
    process.env.NO_PROXY = `localhost,127.0.0.1:${storagePort}`;
    try {
      const r = await downloadToFile(
        createGitLabClient(settings(gitlab)),
        '/projects/1/jobs/1/artifacts',
        undefined,
        join(tmp, 'proxied.zip'),
      );
      assert.equal(r.sha256, sha(data));
      assert.deepEqual(tunnels, [`127.0.0.1:${new URL(gitlab.origin).port}`], 'GitLab via the proxy, storage direct');
      assert.equal(storage.requests.length, 1);
    } finally {
      delete process.env.HTTP_PROXY;
      delete process.env.NO_PROXY;
      await proxy.close();
      await gitlab.close();
      await storage.close();
    }
  });

  it('a missing ca_file is a RelayError naming ca_file', () => {
    assert.throws(
      () =>
        createGitLabClient({
          apiUrl: 'https://gl.example/api/v4',
          token: TOKEN,
          tokenType: 'private',
          retries: 0,
          timeoutMs: 1000,
          caFile: join(tmp, 'nope.pem'),
        }),
      (e: unknown) => {
        assert.ok(e instanceof RelayError);
        assert.match(e.message, /ca_file/);
        return true;
      },
    );
  });
});

describe('429 without Retry-After (an application limit, lib/api/helpers/rate_limiter.rb)', () => {
  it('every request kind waits a whole rate-limit window (scaled by the rateLimitWindowMs setting, ARTIFACT_RELAY_RATE_WINDOW_MS), then passes', async () => {
    const WINDOW = 200;
    // A window opens at a kind's first request and refuses everything until it has passed: backoff alone
    // (5, 10, 20 ms here) never gets out of it.
    const opened = new Map<string, number>();
    const srv = await startServer((req, res) => {
      const kind = req.method ?? '';
      const first = opened.get(kind) ?? Date.now();
      opened.set(kind, first);
      if (Date.now() - first < WINDOW) {
        res.writeHead(429, { 'content-type': 'application/json' });
        res.end(
          kind === 'HEAD'
            ? undefined
            : JSON.stringify({ message: { error: 'This endpoint has been requested too many times. Try again later.' } }),
        );
        return;
      }
      if (kind === 'HEAD') return res.end();
      if (kind === 'DELETE') return json(res, 204, null);
      json(res, 200, [1]);
    });
    try {
      const c = createGitLabClient(settings(srv, { retries: 3, retryBaseMs: 5, rateLimitWindowMs: WINDOW }));
      assert.deepEqual((await c.getJson('/projects/1/jobs')).body, [1]);
      assert.equal((await c.head('/projects/1/jobs/2/artifacts')).status, 200);
      await c.delete('/projects/1/jobs/2/artifacts');
      const file = join(tmp, 'limited.bin');
      opened.set('GET', Date.now());
      const d = await downloadToFile(c, '/projects/1/jobs/2/artifacts', undefined, file);
      assert.equal(d.attempts, 2, 'one wait was enough');
      const rejected = srv.requests.length;
      assert.equal(rejected, 8, 'each kind: one 429, one retry after the window');
    } finally {
      await srv.close();
    }
  });

  it('the wait is bounded: one window (at most 60 s) plus 5 % jitter per retry', () => {
    assert.equal(rateLimitWindowMs({}), 60_000);
    assert.equal(rateLimitWindowMs({ ARTIFACT_RELAY_RATE_WINDOW_MS: '100' }), 100);
    assert.equal(rateLimitWindowMs({ ARTIFACT_RELAY_RATE_WINDOW_MS: '999999' }), 60_000);
    assert.equal(
      unhintedRateLimitDelay(60_000, () => 0),
      60_000,
    );
    assert.ok(unhintedRateLimitDelay(60_000, () => 0.999) < 63_000);
  });
});
