// The GitLab API client: got with our own redirect handling (no credentials to other origins),
// timeouts including a body idle timeout, retries with backoff, and byte-exact resumable downloads.
// See gitlab-api.md §0, §1.1 and §5, and machine-notes.md "got 14" for why got's own redirects/retries are off.
import { createHash, type Hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import got, { type OptionsInit } from 'got';
import { RelayError } from '../errors.ts';
import { logger, redact, registerSecret } from '../log.ts';
import { HttpStatusError, toRelayError, type TokenType } from './errors.ts';
import { createAgentResolver, type Agents } from './proxy.ts';
import {
  isRetryableNetworkError,
  isRetryableStatus,
  rateLimitWindowMs,
  retryDelay,
  serverWaitMs,
  sleep,
  unhintedRateLimitDelay,
} from './retry.ts';
import { joinApi, redactUrl, type Query } from './urls.ts';

export type { Query } from './urls.ts';

export type Headers = Record<string, string | string[] | undefined>;

export interface ClientSettings {
  apiUrl: string;
  token: string;
  tokenType: TokenType;
  /** Extra attempts after the first one. */
  retries: number;
  timeoutMs: number;
  caFile?: string;
  /** Backoff base; default: env ARTIFACT_RELAY_RETRY_BASE_MS or 1000. */
  retryBaseMs?: number;
  userAgent?: string;
  /** Project as given, for error advice. */
  project?: string;
}

export interface DownloadResult {
  bytes: number;
  sha256: string;
  redirected: boolean;
  /** The URL the bytes finally came from, without query (signed URLs) or credentials. */
  finalUrl: string;
  attempts: number;
  contentType?: string;
  acceptRanges: boolean;
  /** The strong ETag of the bytes finally written, if the server sent one. */
  etag?: string;
}

export interface DownloadOptions {
  onProgress?: (p: { bytes: number; total?: number }) => void;
  /** Called once bytes [0, n) are written to the file (each write resolved), so readers may use them. */
  onWritten?: (n: number) => void;
  /** Called before the file is truncated to start over (the bytes given to onWritten are gone). */
  onRestart?: () => void;
}

/** The last bytes of a resource, from a suffix Range request. */
export interface TailResult {
  /** The resource's full size (from Content-Range). */
  total: number;
  buffer: Buffer;
  etag?: string;
}

export interface GitLabClient {
  getJson<T>(path: string, query?: Query): Promise<{ body: T; headers: Headers; status: number }>;
  /** Pages of a list endpoint: follows Link rel="next" (same origin only), else X-Next-Page. Keyset pagination works too. */
  paginate<T>(path: string, query?: Query): AsyncGenerator<T[]>;
  download(path: string, query: Query | undefined, file: string, opts?: DownloadOptions): Promise<DownloadResult>;
  /**
   * Bytes [start, end) of a download (end undefined: the last `-start` bytes, a suffix range), with the same redirect,
   * credential and retry rules as download. Undefined when the server ignores Range (answers 200).
   */
  readRange(path: string, query: Query | undefined, start: number, end?: number): Promise<TailResult | undefined>;
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

function header(headers: Headers, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** An error that means "the body stopped arriving": retried like a reset. */
function networkError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

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

/** Reads at most `limit` bytes of a stream (the rest is discarded), with an idle timeout. */
async function pump(stream: Readable, idleMs: number, onChunk: (chunk: Buffer) => Promise<void> | void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => stream.destroy(networkError(`no data received for ${idleMs} ms`, 'ETIMEDOUT')), idleMs);
  };
  arm();
  try {
    for await (const chunk of stream) {
      clearTimeout(timer);
      await onChunk(chunk as Buffer);
      arm();
    }
  } finally {
    clearTimeout(timer);
  }
}

async function readBody(stream: Readable, idleMs: number, limit = Number.POSITIVE_INFINITY): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  await pump(stream, idleMs, (chunk) => {
    if (size < limit) chunks.push(chunk);
    size += chunk.length;
  });
  return Buffer.concat(chunks);
}

interface Opened {
  status: number;
  headers: Headers;
  stream: Readable & { destroy(err?: Error): void };
  url: URL;
  redirected: boolean;
}

/** When a signed storage URL says it has expired (AWS `X-Amz-Date`+`X-Amz-Expires`, GCS/CloudFront `Expires`). */
function signedUrlExpired(url: URL, now = Date.now()): boolean {
  const q = url.searchParams;
  const amzDate = q.get('X-Amz-Date');
  const amzExpires = q.get('X-Amz-Expires');
  if (amzDate && amzExpires) {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
    if (m) {
      const start = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
      return start + Number(amzExpires) * 1000 < now + 5000;
    }
  }
  const expires = q.get('Expires') ?? q.get('X-Goog-Expires');
  if (expires && /^\d{9,}$/.test(expires)) return Number(expires) * 1000 < now + 5000;
  return false;
}

class Client implements GitLabClient {
  private readonly apiOrigin: string;
  private readonly auth: Record<string, string>;
  private readonly ca?: string[];
  private readonly agentFor: (url: URL) => Agents | undefined;
  private readonly baseMs: number;

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
    if (s.caFile) {
      let pem: string;
      try {
        pem = readFileSync(s.caFile, 'utf8');
      } catch (err) {
        throw new RelayError(
          `Cannot read ca_file ${s.caFile}: ${(err as Error).message}`,
          'Point ca_file at a readable PEM file of CA certificates, or leave it empty.',
          {
            code: (err as { code?: string }).code,
          },
        );
      }
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
        throw new RelayError(
          `ca_file ${s.caFile} holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line).`,
          'Point ca_file at a PEM file of CA certificates.',
        );
      }
      this.ca = [...rootCertificates, pem];
    }
    this.agentFor = createAgentResolver(process.env, this.ca);
    const envBase = Number(process.env.ARTIFACT_RELAY_RETRY_BASE_MS);
    this.baseMs = s.retryBaseMs ?? (Number.isFinite(envBase) && envBase >= 0 && process.env.ARTIFACT_RELAY_RETRY_BASE_MS ? envBase : 1000);
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

  private options(url: URL, method: string, headers: Record<string, string>, body?: string): OptionsInit {
    const t = this.s.timeoutMs;
    const opts: OptionsInit = {
      method: method as OptionsInit['method'],
      headers,
      followRedirect: false,
      throwHttpErrors: false,
      retry: { limit: 0 },
      decompress: true,
      timeout: { lookup: t, connect: t, secureConnect: t, send: t, response: t, socket: t },
      https: this.ca ? { certificateAuthority: this.ca } : undefined,
      agent: this.agentFor(url) ?? {},
    };
    if (body !== undefined) opts.body = body;
    return opts;
  }

  /** One request, following up to 5 redirects ourselves; credentials go to the API origin only. */
  private async open(
    method: string,
    start: URL,
    extra: Record<string, string> = {},
    body?: string,
    decompress = true,
    follow = true,
  ): Promise<Opened> {
    let url = start;
    let redirected = false;
    let m = method;
    let b = body;
    for (let hop = 0; ; hop++) {
      const opts = this.options(url, m, this.headersFor(url, extra), b ?? (m === 'GET' || m === 'HEAD' ? undefined : ''));
      opts.decompress = decompress;
      const stream = got.stream(url, opts as Parameters<typeof got.stream>[0] & object);
      stream.on('error', () => {}); // errors surface through the reads below
      const res = await new Promise<{ statusCode: number; headers: Headers }>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', (err: Error) => reject(Object.assign(err, { requestUrl: url.toString() })));
      });
      const location = header(res.headers, 'location');
      if (REDIRECTS.has(res.statusCode) && location && follow) {
        stream.destroy();
        if (hop >= MAX_REDIRECTS) {
          throw new RelayError(
            `${m} ${redactUrl(start)}: more than ${MAX_REDIRECTS} redirects (last to ${redact(redactUrl(new URL(location, url)))}).`,
            'Check server_url and any proxy in between.',
            {
              status: res.statusCode,
              url: redact(redactUrl(url)),
              body: '',
            },
          );
        }
        const next = new URL(location, url);
        if (next.protocol !== 'https:' && next.protocol !== 'http:') {
          throw new RelayError(`${m} ${redactUrl(start)} was redirected to an unsupported URL scheme (${next.protocol}).`, undefined, {
            status: res.statusCode,
            url: redact(redactUrl(url)),
            body: '',
          });
        }
        if (res.statusCode === 303 && m !== 'HEAD') {
          m = 'GET';
          b = undefined;
        }
        url = next;
        redirected = true;
        continue;
      }
      return { status: res.statusCode, headers: res.headers, stream, url, redirected };
    }
  }

  private async failFrom(opened: Opened): Promise<never> {
    let body: Buffer = Buffer.alloc(0);
    try {
      body = await readBody(opened.stream, this.s.timeoutMs, MAX_ERROR_BODY);
    } catch {
      /* the status says enough */
    }
    throw new HttpStatusError(opened.status, body.toString('utf8'), opened.headers, opened.url.toString());
  }

  /** Runs `fn` up to retries+1 times; retryable statuses and network errors are retried with backoff. */
  private async withRetries<T>(action: string, url: URL, fn: (attempt: number) => Promise<T>, extraRetryable: number[] = []): Promise<T> {
    const total = Math.max(0, Math.floor(this.s.retries)) + 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        const status = err instanceof HttpStatusError ? err.status : undefined;
        const retryable =
          status !== undefined
            ? isRetryableStatus(status) || extraRetryable.includes(status)
            : !(err instanceof RelayError) && isRetryableNetworkError(err);
        const errUrl = err instanceof HttpStatusError ? err.url : ((err as { requestUrl?: string }).requestUrl ?? url.toString());
        if (!retryable || attempt >= total)
          throw toRelayError(err, { action, tokenType: this.s.tokenType, project: this.s.project, url: errUrl, attempts: attempt });
        const headers = err instanceof HttpStatusError ? err.headers : {};
        const hints = {
          retryAfter: header(headers, 'retry-after'),
          rateLimitReset: status === 429 ? header(headers, 'ratelimit-reset') : undefined,
          now: Date.now(),
        };
        // A 429 that names no wait is an application limit: wait out its one-minute window (retry.ts).
        const unhinted = status === 429 && serverWaitMs(hints) === undefined;
        const wait = unhinted ? unhintedRateLimitDelay(rateLimitWindowMs()) : retryDelay(attempt, this.baseMs, hints);
        const why =
          status === 429 && unhinted
            ? 'HTTP 429 without Retry-After (a GitLab application rate limit, counted per minute); waiting for its window to pass'
            : status !== undefined
              ? `HTTP ${status}`
              : `${(err as { code?: string }).code ?? (err as Error).name}: ${(err as Error).message}`;
        logger.warn(`${action}: ${why}; retrying (attempt ${attempt + 1}/${total}) in ${(wait / 1000).toFixed(1)} s`);
        await sleep(wait);
      }
    }
  }

  private action(method: string, url: URL): string {
    return `${method} ${redactUrl(url)}`;
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
    return this.withRetries(
      action,
      url,
      async () => {
        const opened = await this.open(method, url, extra, payload);
        if (opened.status < 200 || opened.status >= 300) return this.failFrom(opened);
        const buf = await readBody(opened.stream, this.s.timeoutMs);
        const text = buf.toString('utf8');
        let parsed: unknown;
        if (text.trim()) {
          try {
            parsed = JSON.parse(text);
          } catch {
            const html = /^\s*</.test(text);
            throw new RelayError(
              `${action} answered HTTP ${opened.status} with ${html ? 'an HTML page (proxy or login page?)' : 'a body that is not JSON'} instead of JSON.`,
              'Check server_url: it should be the GitLab instance (API at <server_url>/api/v4), not a proxy or login page.',
              { status: opened.status, body: redact(text.slice(0, 200)), url: redact(redactUrl(opened.url)) },
            );
          }
        }
        return { body: parsed as T, headers: opened.headers, status: opened.status, url: opened.url };
      },
      extraRetryable,
    );
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
    const url = this.url(path, query);
    return this.withRetries(this.action('HEAD', url), url, async () => {
      const opened = await this.open('HEAD', url, {}, undefined, true, opts.followRedirects ?? true);
      opened.stream.destroy();
      if (opened.status >= 400) throw new HttpStatusError(opened.status, '', opened.headers, opened.url.toString());
      return { status: opened.status, headers: opened.headers, redirected: opened.redirected };
    });
  }

  async probe(path: string, query?: Query): Promise<{ status: number; headers: Headers }> {
    const url = this.url(path, query);
    return this.withRetries(this.action('GET', url), url, async () => {
      const opened = await this.open('GET', url, { accept: 'application/json' }, undefined, true, false);
      if (opened.status >= 400) return this.failFrom(opened);
      opened.stream.destroy();
      return { status: opened.status, headers: opened.headers };
    });
  }

  async delete(path: string, query?: Query): Promise<{ status: number; body: unknown; headers: Headers }> {
    // 409: the project is undergoing a stats refresh (gitlab-api.md §0): worth waiting for.
    const { status, body, headers } = await this.requestJson<unknown>('DELETE', this.url(path, query), undefined, [409]);
    return { status, body, headers };
  }

  async post<T>(path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await this.requestJson<T>('POST', this.url(path), body);
    return { status: res.status, body: res.body };
  }

  async download(path: string, query: Query | undefined, file: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
    const apiUrl = this.url(path, query);
    const action = `Download ${redactUrl(apiUrl)}`;
    let fh: FileHandle;
    try {
      fh = await open(file, 'w');
    } catch (err) {
      throw new RelayError(`Cannot write ${file}: ${(err as Error).message}`, 'Check the destination path and its permissions.', {
        code: (err as { code?: string }).code,
      });
    }
    let written = 0;
    let hash: Hash = createHash('sha256');
    let total: number | undefined;
    /** How to resume after a mid-body failure (undefined: restart from zero). */
    let resume: { url: URL; validator?: string } | undefined;
    let last: { url: URL; redirected: boolean; contentType?: string; acceptRanges: boolean; etag?: string } | undefined;
    let attempts = 0;

    const restart = async () => {
      if (written > 0) {
        opts.onRestart?.();
        await fh.truncate(0);
      }
      written = 0;
      hash = createHash('sha256');
      total = undefined;
    };

    try {
      await this.withRetries(action, apiUrl, async (attempt) => {
        attempts = attempt;
        if (written > 0 && !resume) await restart();
        const from = written;
        const rangeHeaders: Record<string, string> = {};
        if (from > 0 && resume) {
          rangeHeaders.range = `bytes=${from}-`;
          if (resume.validator) rangeHeaders['if-range'] = resume.validator;
        }
        let opened: Opened | undefined;
        if (from > 0 && resume && resume.url.toString() !== apiUrl.toString() && !signedUrlExpired(resume.url)) {
          // Resume against the storage URL we were redirected to, while it is still valid.
          try {
            opened = await this.open('GET', resume.url, rangeHeaders, undefined, false);
            if (opened.status !== 200 && opened.status !== 206) {
              logger.debug(`Resuming from ${redactUrl(resume.url)} answered HTTP ${opened.status}; asking GitLab again.`);
              opened.stream.destroy();
              opened = undefined;
            }
          } catch (err) {
            if (!isRetryableNetworkError(err)) throw err;
            opened = undefined;
          }
        }
        opened ??= await this.open('GET', apiUrl, rangeHeaders, undefined, false);
        const { status, headers } = opened;
        if (status === 416 && from > 0) {
          opened.stream.destroy();
          resume = undefined; // start over on the next attempt
          throw networkError('the server refused to resume (HTTP 416)', 'ERR_INCOMPLETE_BODY');
        }
        if (status !== 200 && status !== 206) return this.failFrom(opened);

        const contentType = header(headers, 'content-type');
        const acceptRanges = /\bbytes\b/i.test(header(headers, 'accept-ranges') ?? '');
        const lengthText = header(headers, 'content-length');
        const length = lengthText && /^\d+$/.test(lengthText) ? Number(lengthText) : undefined;
        let append = false;
        if (status === 206) {
          const cr = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(header(headers, 'content-range')?.trim() ?? '');
          if (!cr || Number(cr[1]) !== from || from === 0) {
            opened.stream.destroy();
            resume = undefined;
            throw networkError(
              `unexpected partial content (Content-Range: ${header(headers, 'content-range') ?? 'none'})`,
              'ERR_INCOMPLETE_BODY',
            );
          }
          append = true;
          if (cr[3] !== '*') total = Number(cr[3]);
        } else {
          if (from > 0) await restart();
          total = length;
        }
        const etag = header(headers, 'etag');
        if (!append) {
          const strongEtag = etag && !/^W\//.test(etag) ? etag : undefined;
          const lastModified = header(headers, 'last-modified');
          const canResume = acceptRanges && (strongEtag !== undefined || length !== undefined);
          resume = canResume
            ? { url: opened.url, validator: strongEtag ?? (lastModified && length !== undefined ? lastModified : undefined) }
            : undefined;
        }
        last = {
          url: opened.url,
          redirected: opened.redirected,
          contentType,
          acceptRanges: append ? (last?.acceptRanges ?? true) : acceptRanges,
          etag: append ? last?.etag : etag && !/^W\//.test(etag) ? etag : undefined,
        };

        let first = !append;
        await pump(opened.stream, this.s.timeoutMs, async (chunk) => {
          if (first) {
            first = false;
            if (/text\/html/i.test(contentType ?? '') && /^\s*</.test(chunk.subarray(0, 64).toString('utf8'))) {
              throw new RelayError(
                `${action}: an HTML page was served instead of the archive (HTTP ${status} from ${opened.url.host}).`,
                'A proxy, SSO or login page answered instead of GitLab or its object storage: check server_url, the proxy settings and the token.',
                { status, url: redact(redactUrl(opened.url)), body: 'an HTML page (proxy or login page?)' },
              );
            }
          }
          let off = 0;
          try {
            while (off < chunk.length) {
              const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, written + off);
              off += bytesWritten;
            }
          } catch (err) {
            throw new RelayError(
              `Cannot write ${file}: ${(err as Error).message}`,
              'Check free disk space and permissions of the destination.',
              {
                code: (err as { code?: string }).code,
              },
            );
          }
          hash.update(chunk);
          written += chunk.length;
          opts.onWritten?.(written);
          opts.onProgress?.({ bytes: written, total });
        });
        if (total !== undefined && written !== total) {
          throw networkError(`the body ended after ${written} of ${total} bytes`, 'ERR_INCOMPLETE_BODY');
        }
        return undefined;
      });
      await fh.truncate(written);
    } finally {
      await fh.close();
    }
    const final = last as { url: URL; redirected: boolean; contentType?: string; acceptRanges: boolean; etag?: string } | undefined;
    return {
      bytes: written,
      sha256: hash.digest('hex'),
      redirected: final?.redirected ?? false,
      finalUrl: redact(redactUrl(final?.url ?? apiUrl)),
      attempts,
      contentType: final?.contentType,
      acceptRanges: final?.acceptRanges ?? false,
      etag: final?.etag,
    };
  }

  async readRange(path: string, query: Query | undefined, start: number, end?: number): Promise<TailResult | undefined> {
    const apiUrl = this.url(path, query);
    const range = end === undefined ? `bytes=${start}` : `bytes=${start}-${end - 1}`;
    return this.withRetries(`Download ${redactUrl(apiUrl)} (${range})`, apiUrl, async () => {
      const opened = await this.open('GET', apiUrl, { range }, undefined, false);
      if (opened.status === 200) {
        opened.stream.destroy(); // Range ignored: the whole body would follow; the caller falls back.
        return undefined;
      }
      if (opened.status !== 206) return this.failFrom(opened);
      const cr = /^bytes\s+(\d+)-(\d+)\/(\d+)$/i.exec(header(opened.headers, 'content-range')?.trim() ?? '');
      if (!cr) {
        opened.stream.destroy();
        return undefined;
      }
      const buffer = await readBody(opened.stream, this.s.timeoutMs);
      const [first, last, total] = [Number(cr[1]), Number(cr[2]), Number(cr[3])];
      const wanted = end === undefined ? Math.max(0, total + start) : start;
      if (first !== wanted || buffer.length !== last - first + 1 || (end !== undefined && last !== Math.min(end, total) - 1)) {
        throw networkError(`unexpected partial content (Content-Range: ${cr[0]}, ${buffer.length} bytes)`, 'ERR_INCOMPLETE_BODY');
      }
      const etag = header(opened.headers, 'etag');
      return { total, buffer, etag: etag && !/^W\//.test(etag) ? etag : undefined };
    });
  }
}

export function createGitLabClient(s: ClientSettings): GitLabClient {
  return new Client(s);
}
