// The GitLab API client. JSON, HEAD and DELETE calls use got's own retry (with our policy: Retry-After,
// RateLimit-Reset, jittered backoff) and follow redirects through a beforeRedirect hook that keeps credentials
// on GitLab's origin. Downloads and ranged reads run their own resumable loop (download.ts) over `get`, which
// follows redirects itself so that a resume can go straight back to the storage URL.
// got 14 alone is not enough: across origins it forwards JOB-TOKEN/PRIVATE-TOKEN, has no timeout by default, and its streams do not retry.
// The module, not its `rootCertificates`: that getter parses every bundled root certificate (0.6 MB of memory, a few
// ms), which only a ca_file needs; a named import reads it when the module loads (scripts/build.mjs).
import tls from 'node:tls';
import got, { type OptionsInit, type RequestError, type RetryObject } from 'got';
import { RelayError } from '../runtime/errors.ts';
import { logger, redact, registerSecret } from '../runtime/log.ts';
import { readCaFile } from '../util/ca-file.ts';
import { type BodyRules, deadlineError, readBody } from './body.ts';
import {
  type ByteSink,
  type DownloadOptions,
  type DownloadResult,
  download,
  header,
  type Headers,
  type Opened,
  readRange,
  type TailResult,
  type Transport,
  type Validators,
} from './download.ts';
import { HttpStatusError, toRelayError, type TokenType } from './errors.ts';
import {
  type AdaptiveOptions,
  adaptiveDownload,
  type ParallelOptions,
  parallelDownload,
  type ReadableSink,
  type Widened,
} from './parallel.ts';
import { createAgentResolver, type Agents } from './proxy.ts';
import {
  isRetryableNetworkError,
  isRetryableStatus,
  RATE_LIMIT_WINDOW_MS,
  retryDelay,
  serverWaitMs,
  sleep,
  unhintedRateLimitDelay,
} from './retry.ts';
import { joinApi, redactUrl, type Query } from './urls.ts';

export type { Query } from './urls.ts';
export type { DownloadOptions, DownloadResult } from './download.ts';
export type { ParallelOptions, ReadableSink, Widened } from './parallel.ts';

export interface ClientSettings {
  apiUrl: string;
  token: string;
  tokenType: TokenType;
  /** Extra attempts after the first one. */
  retries: number;
  timeoutMs: number;
  caFile?: string;
  /** Backoff base (ms); default 1000. */
  retryBaseMs?: number;
  /** Cap on any wait before a retry, Retry-After included (ms); default: no cap beyond retry.ts's own. */
  retryMaxWaitMs?: number;
  /** The window a 429 without Retry-After waits out (default GitLab's 60 s; ARTIFACT_RELAY_RATE_WINDOW_MS shrinks it in tests). */
  rateLimitWindowMs?: number;
  userAgent?: string;
  /** Project as given, for error advice. */
  project?: string;
  /** Told of every retry before its wait (cleanup's adaptive pace counts the 429s). */
  onRetry?: (retry: { status?: number; attempt: number; waitMs: number }) => void;
  /** Minimum speed of a body (bytes/s) averaged over speedTimeMs, else the attempt fails and is retried; 0: off. */
  speedLimit?: number;
  speedTimeMs?: number;
  /** Longest time one transfer (a download, a ranged read, an API call; retries included) may take; 0: none. */
  deadlineMs?: number;
  /** Follow a redirect from https to plain http (refused by default). */
  allowInsecureRedirect?: boolean;
  /** Cap on a JSON answer's size (default 32 MiB). */
  maxJsonBytes?: number;
}

export interface GitLabClient {
  getJson<T>(path: string, query?: Query): Promise<{ body: T; headers: Headers; status: number }>;
  /** Pages of a list endpoint: follows Link rel="next" (same origin only), else X-Next-Page. Keyset pagination works too. */
  paginate<T>(path: string, query?: Query): AsyncGenerator<T[]>;
  /** Downloads into `sink` (owned by the caller), byte-exact across resets; see download.ts. */
  download(path: string, query: Query | undefined, sink: ByteSink, opts?: DownloadOptions): Promise<DownloadResult>;
  /**
   * Downloads as disjoint ranges over `opts.connections` connections, each written at its offset and retried alone;
   * throws RangeUnusable (parallel.ts) when the object changed or Range is not honoured: download sequentially then.
   */
  downloadParallel(path: string, query: Query | undefined, sink: ReadableSink, opts: ParallelOptions): Promise<DownloadResult>;
  /**
   * Downloads over one connection until `opts.widenAt` stops it, then the rest as ranges (downloadParallel from
   * there); throws RangeUnusable after the switch as downloadParallel does.
   */
  downloadAdaptive(
    path: string,
    query: Query | undefined,
    sink: ReadableSink,
    opts: AdaptiveOptions,
  ): Promise<DownloadResult & { widened: Widened }>;
  /**
   * Bytes [start, end) of a download (end undefined: the last `-start` bytes, a suffix range), with the same redirect,
   * credential and retry rules as download. Undefined when the server ignores Range (answers 200).
   */
  readRange(path: string, query: Query | undefined, start: number, end?: number, validators?: Validators): Promise<TailResult | undefined>;
  /** HEAD (for dry runs), following redirects safely. Errors (>= 400) are thrown like the other methods. */
  /** HEAD; with followRedirects false a redirect is the answer (storage may refuse HEAD on a URL signed for GET). */
  head(
    path: string,
    query?: Query,
    opts?: { followRedirects?: boolean },
  ): Promise<{ status: number; headers: Headers; redirected: boolean }>;
  /**
   * One GET that does not follow a redirect and reads no success body: for the reason behind an error a HEAD
   * cannot carry (HEAD answers have no body). Errors (>= 400) are thrown with GitLab's message, like getJson.
   */
  probe(path: string, query?: Query): Promise<{ status: number; headers: Headers }>;
  delete(path: string, query?: Query): Promise<{ status: number; body: unknown; headers: Headers }>;
  post<T>(path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY = 64 * 1024;
const MAX_PAGES = 100_000;
const MAX_JSON_BYTES = 32 * 1024 * 1024;

/** Parses a Link header into rel → URL (multiple links, quoted or bare rel, several rel values). */
export function parseLinkHeader(value: string | string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!value) return out;
  const text = Array.isArray(value) ? value.join(',') : value;
  const re = /<([^>]*)>((?:\s*;\s*[^;,]+(?:=(?:"[^"]*"|[^;,]*))?)*)/g;
  for (const m of text.matchAll(re)) {
    const url = m[1]!.trim();
    const params = m[2] ?? '';
    const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^;,\s]+))/i.exec(params);
    const rels = (rel?.[1] ?? rel?.[2] ?? '').toLowerCase().split(/\s+/).filter(Boolean);
    for (const r of rels) if (!(r in out)) out[r] = url;
  }
  return out;
}

function errorWithUrl(err: Error, url: URL): Error {
  return Object.assign(err, { requestUrl: url.toString() });
}

class Client implements GitLabClient {
  private readonly apiOrigin: string;
  private readonly auth: Record<string, string>;
  private readonly ca?: string[];
  private readonly agentFor: (url: URL) => Agents | undefined;
  private readonly baseMs: number;
  private readonly transport: Transport;

  constructor(private readonly s: ClientSettings) {
    registerSecret(s.token);
    let api: URL;
    try {
      api = new URL(s.apiUrl);
    } catch {
      throw new RelayError(`The API URL ${redact(s.apiUrl)} is not a valid URL.`, 'Check server_url.');
    }
    this.apiOrigin = api.origin;
    this.auth = {};
    if (s.token && s.tokenType === 'job') this.auth['JOB-TOKEN'] = s.token;
    else if (s.token && s.tokenType === 'private') this.auth['PRIVATE-TOKEN'] = s.token;
    else if (s.token && s.tokenType === 'oauth') this.auth.Authorization = `Bearer ${s.token}`;
    if (s.caFile) this.ca = [...tls.rootCertificates, readCaFile(s.caFile)];
    this.agentFor = createAgentResolver(process.env, this.ca);
    this.baseMs = s.retryBaseMs ?? 1000;
    this.transport = {
      get: (url, headers) => this.openStream('GET', url, headers),
      fail: (opened) => this.failFrom(opened),
      withRetries: (action, url, fn) => this.withRetries(action, url, fn),
    };
  }

  private url(path: string, query?: Query): URL {
    return new URL(joinApi(this.s.apiUrl, path, query));
  }

  private headersFor(url: URL, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': this.s.userAgent ?? 'artifact-relay', ...extra };
    // Credentials only to GitLab's own origin: never to object storage, CDNs or anything a redirect points at.
    if (url.origin === this.apiOrigin) Object.assign(h, this.auth);
    return h;
  }

  /** The rules for the bodies of one transfer starting now. */
  private bodyRules(): BodyRules {
    const rules: BodyRules = { idleMs: this.s.timeoutMs };
    const limit = this.s.speedLimit ?? 0;
    const window = this.s.speedTimeMs ?? 0;
    if (limit > 0 && window > 0) rules.minSpeed = { bytesPerSecond: limit, windowMs: window };
    const deadline = this.s.deadlineMs ?? 0;
    if (deadline > 0) {
      rules.deadlineAt = Date.now() + deadline;
      rules.deadlineAdvice = `Each download or API call must finish within \`deadline\` (${deadline / 1000} s, retries included): raise it for very large archives on slow links.`;
    }
    return rules;
  }

  private baseOptions(url: URL): OptionsInit {
    const t = this.s.timeoutMs;
    return {
      throwHttpErrors: false,
      decompress: true,
      timeout: { lookup: t, connect: t, secureConnect: t, send: t, response: t, socket: t },
      https: this.ca ? { certificateAuthority: this.ca } : undefined,
      agent: this.agentFor(url) ?? {},
    };
  }

  /** Checks a redirect from `from` to `location`: the error to throw, or the next URL. */
  private redirectTarget(method: string, start: URL, from: URL, location: string, hop: number, status: number): URL {
    const next = new URL(location, from);
    const details = { status, url: redact(redactUrl(from)), body: '' };
    if (hop >= MAX_REDIRECTS) {
      throw new RelayError(
        `${method} ${redactUrl(start)}: more than ${MAX_REDIRECTS} redirects (last to ${redact(redactUrl(next))}).`,
        'Check server_url and any proxy in between.',
        details,
      );
    }
    if (next.protocol !== 'https:' && next.protocol !== 'http:') {
      throw new RelayError(
        `${method} ${redactUrl(start)} was redirected to an unsupported URL scheme (${next.protocol}).`,
        undefined,
        details,
      );
    }
    if (from.protocol === 'https:' && next.protocol === 'http:' && !this.s.allowInsecureRedirect) {
      throw new RelayError(
        `${method} ${redactUrl(start)} was redirected from https to plain http (${redact(redactUrl(next))}); refusing to follow it.`,
        'An https server should never send you to plain http: check server_url and the object storage settings. Set allow_insecure_redirect: true only if this downgrade is intended.',
        { ...details, code: 'ERR_INSECURE_REDIRECT' },
      );
    }
    return next;
  }

  /**
   * A streamed request (downloads, ranged reads), following up to 5 redirects here; credentials go to the API
   * origin only. With `follow` false a redirect is the answer.
   */
  private async openStream(method: string, start: URL, extra: Record<string, string> = {}, follow = true): Promise<Opened> {
    let url = start;
    let redirected = false;
    for (let hop = 0; ; hop++) {
      const opts: OptionsInit = { ...this.baseOptions(url), method: method as OptionsInit['method'], headers: this.headersFor(url, extra) };
      opts.followRedirect = false;
      opts.retry = { limit: 0 };
      opts.decompress = false;
      const stream = got.stream(url, opts as Parameters<typeof got.stream>[0] & object);
      stream.on('error', () => {}); // errors surface through the reads below
      const res = await new Promise<{ statusCode: number; headers: Headers }>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', (err: Error) => reject(errorWithUrl(err, url)));
      });
      const location = header(res.headers, 'location');
      if (REDIRECTS.has(res.statusCode) && location && follow) {
        stream.destroy();
        url = this.redirectTarget(method, start, url, location, hop, res.statusCode);
        redirected = true;
        continue;
      }
      return { status: res.statusCode, headers: res.headers, stream, url, redirected };
    }
  }

  private async failFrom(opened: Opened): Promise<never> {
    let body: Buffer = Buffer.alloc(0);
    try {
      body = await readBody(opened.stream, this.bodyRules(), MAX_ERROR_BODY);
    } catch {
      /* the status says enough */
    }
    throw new HttpStatusError(opened.status, body.toString('utf8'), opened.headers, opened.url.toString());
  }

  private isRetryable(err: unknown, extraRetryable: number[]): boolean {
    const status = err instanceof HttpStatusError ? err.status : undefined;
    if (status !== undefined) return isRetryableStatus(status) || extraRetryable.includes(status);
    return !(err instanceof RelayError) && isRetryableNetworkError(err);
  }

  /** The wait before retry number `attempt` after `err`, logged as a warning. */
  private retryWait(action: string, err: unknown, attempt: number, total: number): number {
    const status = err instanceof HttpStatusError ? err.status : undefined;
    const headers = err instanceof HttpStatusError ? err.headers : {};
    const hints = {
      retryAfter: header(headers, 'retry-after'),
      rateLimitReset: status === 429 ? header(headers, 'ratelimit-reset') : undefined,
      now: Date.now(),
    };
    // A 429 that names no wait is an application limit: wait out its one-minute window (retry.ts).
    const unhinted = status === 429 && serverWaitMs(hints) === undefined;
    const wait = Math.min(
      unhinted ? unhintedRateLimitDelay(this.s.rateLimitWindowMs ?? RATE_LIMIT_WINDOW_MS) : retryDelay(attempt, this.baseMs, hints),
      this.s.retryMaxWaitMs ?? Number.POSITIVE_INFINITY,
    );
    const why = unhinted
      ? 'HTTP 429 without Retry-After (a GitLab application rate limit, counted per minute); waiting for its window to pass'
      : status !== undefined
        ? `HTTP ${status}`
        : `${(err as { code?: string }).code ?? (err as Error).name}: ${(err as Error).message}`;
    logger.warn(`${action}: ${why}; retrying (attempt ${attempt + 1}/${total}) in ${(wait / 1000).toFixed(1)} s`);
    this.s.onRetry?.({ status, attempt, waitMs: wait });
    return wait;
  }

  private attemptsAllowed(): number {
    return Math.max(0, Math.floor(this.s.retries)) + 1;
  }

  /** The retry loop of downloads: runs `fn` up to retries+1 times; retryable statuses and network errors back off. */
  private async withRetries<T>(action: string, url: URL, fn: (attempt: number, rules: BodyRules) => Promise<T>): Promise<T> {
    const total = this.attemptsAllowed();
    const rules = this.bodyRules();
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt, rules);
      } catch (err) {
        const errUrl = err instanceof HttpStatusError ? err.url : ((err as { requestUrl?: string }).requestUrl ?? url.toString());
        if (!this.isRetryable(err, []) || attempt >= total)
          throw toRelayError(err, { action, tokenType: this.s.tokenType, project: this.s.project, url: errUrl, attempts: attempt });
        const wait = this.retryWait(action, err, attempt, total);
        if (rules.deadlineAt !== undefined && Date.now() + wait >= rules.deadlineAt) throw deadlineError(rules);
        await sleep(wait);
      }
    }
  }

  private action(method: string, url: URL): string {
    return `${method} ${redactUrl(url)}`;
  }

  /** got's error as ours: an HTTP answer becomes HttpStatusError, a RelayError thrown in a hook comes back out. */
  private unwrap(err: unknown): unknown {
    const e = err as RequestError & { response?: { statusCode: number; rawBody?: Buffer; headers: Headers; url: string } };
    if (e?.name === 'HTTPError' && e.response) {
      const raw = e.response.rawBody ?? Buffer.alloc(0);
      return new HttpStatusError(
        e.response.statusCode,
        raw.subarray(0, MAX_ERROR_BODY).toString('utf8'),
        e.response.headers,
        e.response.url,
      );
    }
    if (e?.cause instanceof RelayError) return e.cause;
    return err;
  }

  /**
   * One call through got's promise API: got retries (our policy decides, in calculateDelay) and follows redirects
   * (beforeRedirect moves the credentials, or refuses the hop).
   */
  private async call(
    method: string,
    url: URL,
    extra: Record<string, string>,
    o: { body?: string; follow?: boolean; extraRetryable?: number[] } = {},
  ): Promise<{ status: number; headers: Headers; body: Buffer; url: URL; redirected: boolean }> {
    const action = this.action(method, url);
    const total = this.attemptsAllowed();
    const extraRetryable = o.extraRetryable ?? [];
    const rules = this.bodyRules();
    const maxBytes = this.s.maxJsonBytes ?? MAX_JSON_BYTES;
    let hop = 0;
    const opts: OptionsInit = {
      ...this.baseOptions(url),
      method: method as OptionsInit['method'],
      headers: this.headersFor(url, extra),
      body: o.body,
      throwHttpErrors: true,
      responseType: 'buffer',
      followRedirect: o.follow ?? true,
      maxRedirects: MAX_REDIRECTS + 1,
      methodRewriting: false,
      retry: {
        limit: total - 1,
        calculateDelay: ({ attemptCount, error }: RetryObject) => {
          const err = this.unwrap(error);
          if (attemptCount >= total || !this.isRetryable(err, extraRetryable)) return 0;
          hop = 0;
          const wait = Math.max(1, this.retryWait(action, err, attemptCount, total));
          if (rules.deadlineAt !== undefined && Date.now() + wait >= rules.deadlineAt) throw deadlineError(rules);
          return wait;
        },
      },
      hooks: {
        beforeRedirect: [
          (next, response) => {
            const to = this.redirectTarget(method, url, new URL(response.url), String(next.url), hop++, response.statusCode);
            next.headers = this.headersFor(to, extra);
            next.agent = this.agentFor(to) ?? {};
          },
        ],
      },
    };
    if (method === 'GET' || method === 'HEAD') delete opts.body;
    else opts.body ??= '';
    if (rules.deadlineAt !== undefined) (opts.timeout as Record<string, number>).request = Math.max(1, rules.deadlineAt - Date.now());
    let tooLarge = false;
    try {
      const pending = got(url, { ...opts, responseType: 'buffer', resolveBodyOnly: false } as OptionsInit & {
        responseType: 'buffer';
        isStream?: false;
      }) as unknown as Promise<unknown> & {
        on(event: 'downloadProgress', fn: (p: { transferred: number }) => void): unknown;
        cancel(): void;
      };
      // got buffers the body: stop it once it passes the cap (an endless answer would take all memory).
      pending.on('downloadProgress', (p) => {
        if (p.transferred > maxBytes && !tooLarge) {
          tooLarge = true;
          pending.cancel();
        }
      });
      const res = (await pending) as unknown as { statusCode: number; headers: Headers; body: Buffer; url: string; redirectUrls: URL[] };
      return {
        status: res.statusCode,
        headers: res.headers,
        body: res.body,
        url: new URL(res.url),
        redirected: res.redirectUrls.length > 0,
      };
    } catch (err) {
      if (tooLarge) {
        throw new RelayError(
          `${action}: the answer is larger than ${Math.round(maxBytes / 1024 / 1024)} MiB; refusing the rest.`,
          'GitLab API answers are small JSON documents: a proxy or server in between is sending something else. Check server_url and the proxy settings.',
          { status: 0, code: 'ERR_BODY_TOO_LARGE', url: redact(redactUrl(url)) },
        );
      }
      if ((err as { name?: string }).name === 'TimeoutError' && (err as { event?: string }).event === 'request') throw deadlineError(rules);
      const e = this.unwrap(err);
      const attempts = ((err as { request?: { retryCount?: number } }).request?.retryCount ?? 0) + 1;
      const errUrl = e instanceof HttpStatusError ? e.url : String((err as RequestError).options?.url ?? url);
      throw toRelayError(e, { action, tokenType: this.s.tokenType, project: this.s.project, url: errUrl, attempts });
    }
  }

  private async requestJson<T>(
    method: string,
    url: URL,
    body?: unknown,
    extraRetryable: number[] = [],
  ): Promise<{ body: T; headers: Headers; status: number; url: URL }> {
    const action = this.action(method, url);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const extra: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) extra['content-type'] = 'application/json';
    const res = await this.call(method, url, extra, { body: payload, extraRetryable });
    const text = res.body.toString('utf8');
    let parsed: unknown;
    if (text.trim()) {
      try {
        parsed = JSON.parse(text);
      } catch {
        const html = /^\s*</.test(text);
        throw new RelayError(
          `${action} answered HTTP ${res.status} with ${html ? 'an HTML page (proxy or login page?)' : 'a body that is not JSON'} instead of JSON.`,
          'Check server_url: it should be the GitLab instance (API at <server_url>/api/v4), not a proxy or login page.',
          { status: res.status, body: redact(text.slice(0, 200)), url: redact(redactUrl(res.url)) },
        );
      }
    }
    return { body: parsed as T, headers: res.headers, status: res.status, url: res.url };
  }

  async getJson<T>(path: string, query?: Query): Promise<{ body: T; headers: Headers; status: number }> {
    const { body, headers, status } = await this.requestJson<T>('GET', this.url(path, query));
    return { body, headers, status };
  }

  async *paginate<T>(path: string, query?: Query): AsyncGenerator<T[]> {
    let url: URL | undefined = this.url(path, query);
    const seen = new Set<string>();
    for (let page = 0; url && page < MAX_PAGES; page++) {
      seen.add(url.toString());
      const res: { body: unknown; headers: Headers; url: URL } = await this.requestJson<unknown>('GET', url);
      if (!Array.isArray(res.body)) {
        throw new RelayError(`GET ${redactUrl(url)} did not answer with a list.`, 'Check server_url and the GitLab version.', {
          status: 200,
          url: redact(redactUrl(url)),
          body: '',
        });
      }
      yield res.body as T[];
      let next: URL | undefined;
      const link = parseLinkHeader(res.headers.link).next;
      if (link) {
        next = new URL(link, res.url);
        if (next.origin !== this.apiOrigin) {
          throw new RelayError(
            `GitLab's pagination Link points to another origin (${next.origin}); refusing to send the token there.`,
            'Check server_url: it must be the URL GitLab knows itself by (its external_url).',
            { status: 200, url: redact(redactUrl(next)), body: '' },
          );
        }
      } else {
        const np = header(res.headers, 'x-next-page')?.trim();
        if (np && /^\d+$/.test(np)) {
          next = new URL(url);
          next.searchParams.set('page', np);
        }
      }
      if (next && seen.has(next.toString())) break; // a server that loops: stop rather than spin
      url = next;
    }
  }

  async head(
    path: string,
    query?: Query,
    opts: { followRedirects?: boolean } = {},
  ): Promise<{ status: number; headers: Headers; redirected: boolean }> {
    const res = await this.call('HEAD', this.url(path, query), {}, { follow: opts.followRedirects ?? true });
    return { status: res.status, headers: res.headers, redirected: res.redirected };
  }

  async probe(path: string, query?: Query): Promise<{ status: number; headers: Headers }> {
    const url = this.url(path, query);
    return this.withRetries(this.action('GET', url), url, async () => {
      const opened = await this.openStream('GET', url, { accept: 'application/json' }, false);
      if (opened.status >= 400) return this.failFrom(opened);
      opened.stream.destroy();
      return { status: opened.status, headers: opened.headers };
    });
  }

  async delete(path: string, query?: Query): Promise<{ status: number; body: unknown; headers: Headers }> {
    // 409: the project is undergoing a stats refresh (lib/api/ci/job_artifacts.rb): worth waiting for.
    const { status, body, headers } = await this.requestJson<unknown>('DELETE', this.url(path, query), undefined, [409]);
    return { status, body, headers };
  }

  async post<T>(path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await this.requestJson<T>('POST', this.url(path), body);
    return { status: res.status, body: res.body };
  }

  download(path: string, query: Query | undefined, sink: ByteSink, opts: DownloadOptions = {}): Promise<DownloadResult> {
    return download(this.transport, this.url(path, query), sink, opts);
  }

  downloadParallel(path: string, query: Query | undefined, sink: ReadableSink, opts: ParallelOptions): Promise<DownloadResult> {
    return parallelDownload(this.transport, this.url(path, query), sink, opts);
  }

  downloadAdaptive(
    path: string,
    query: Query | undefined,
    sink: ReadableSink,
    opts: AdaptiveOptions,
  ): Promise<DownloadResult & { widened: Widened }> {
    return adaptiveDownload(this.transport, this.url(path, query), sink, opts);
  }

  readRange(path: string, query: Query | undefined, start: number, end?: number, validators?: Validators): Promise<TailResult | undefined> {
    return readRange(this.transport, this.url(path, query), start, end, validators);
  }
}

export function createGitLabClient(s: ClientSettings): GitLabClient {
  return new Client(s);
}
