// Byte-exact resumable downloads and ranged reads over a Transport (the client's redirect, credential and
// retry rules). The bytes go to a sink the caller owns: this module knows no file system.
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { RelayError } from '../errors.ts';
import { logger, redact } from '../log.ts';
import { type BodyRules, networkError, pump, readBody } from './body.ts';
import { isRetryableNetworkError } from './retry.ts';
import { redactUrl } from './urls.ts';

export type Headers = Record<string, string | string[] | undefined>;

/** Where downloaded bytes go: written at offsets, cut back when a download starts over. */
export interface ByteSink {
  write(chunk: Buffer, offset: number): Promise<void>;
  truncate(length: number): Promise<void>;
}

/** An answer whose headers have arrived; the body is still to be read from `stream`. */
export interface Opened {
  status: number;
  headers: Headers;
  stream: Readable & { destroy(err?: Error): void };
  url: URL;
  redirected: boolean;
}

/** What the client lends a download: raw GETs with its redirect and credential rules, its errors and retries. */
export interface Transport {
  /** A GET of `url` (raw bytes, no decompression), following redirects safely. */
  get(url: URL, headers: Record<string, string>): Promise<Opened>;
  /** Throws the error for a non-success answer (reading a bounded part of its body). */
  fail(opened: Opened): Promise<never>;
  /** Runs `fn` with the client's retry policy; `rules` are the body rules of this transfer. */
  withRetries<T>(action: string, url: URL, fn: (attempt: number, rules: BodyRules) => Promise<T>): Promise<T>;
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
  /** Called once bytes [0, n) are written to the sink (each write resolved), so readers may use them. */
  onWritten?: (n: number) => void;
  /** Called before the sink is truncated to start over (the bytes given to onWritten are gone). */
  onRestart?: () => void;
}

/** The last bytes of a resource, from a suffix Range request. */
export interface TailResult {
  /** The resource's full size (from Content-Range). */
  total: number;
  buffer: Buffer;
  etag?: string;
}

export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export interface ContentRange {
  first: number;
  last: number;
  /** Undefined for `*` (size unknown). */
  total?: number;
}

/** `bytes first-last/total` (total may be `*`); undefined when malformed. */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { first: Number(m[1]), last: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

/** The ETag when it is strong (a weak one says nothing about the bytes). */
export function strongEtag(etag: string | undefined): string | undefined {
  return etag && !/^W\//.test(etag) ? etag : undefined;
}

/**
 * How a download answered with `headers` may resume after a mid-body failure: the If-Range validator to send
 * (undefined: resume unconditionally), or undefined as a whole when it cannot resume (restart from zero).
 */
export function resumeValidator(headers: Headers): { validator?: string } | undefined {
  const acceptRanges = /\bbytes\b/i.test(header(headers, 'accept-ranges') ?? '');
  const lengthText = header(headers, 'content-length');
  const length = lengthText && /^\d+$/.test(lengthText) ? Number(lengthText) : undefined;
  const etag = strongEtag(header(headers, 'etag'));
  const lastModified = header(headers, 'last-modified');
  if (!acceptRanges || (etag === undefined && length === undefined)) return undefined;
  return { validator: etag ?? (lastModified && length !== undefined ? lastModified : undefined) };
}

/** When a signed storage URL says it has expired (AWS `X-Amz-Date`+`X-Amz-Expires`, GCS/CloudFront `Expires`). */
export function signedUrlExpired(url: URL, now = Date.now()): boolean {
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

interface Source {
  url: URL;
  redirected: boolean;
  contentType?: string;
  acceptRanges: boolean;
  etag?: string;
}

/** One download: the bytes so far, their hash, and how to resume. Each attempt continues or restarts it. */
class Download {
  written = 0;
  total: number | undefined;
  attempts = 0;
  private hash: Hash = createHash('sha256');
  /** How to resume after a mid-body failure (undefined: restart from zero). */
  private resume: { url: URL; validator?: string } | undefined;
  private source: Source | undefined;

  constructor(
    private readonly t: Transport,
    private readonly apiUrl: URL,
    private readonly sink: ByteSink,
    private readonly opts: DownloadOptions,
    private readonly action: string,
  ) {}

  private async restart(): Promise<void> {
    if (this.written > 0) {
      this.opts.onRestart?.();
      await this.sink.truncate(0);
    }
    this.written = 0;
    this.hash = createHash('sha256');
    this.total = undefined;
  }

  /** Opens the next answer: a resume at the storage URL while it is valid, else the API URL. */
  private async openFrom(from: number): Promise<Opened> {
    const headers: Record<string, string> = {};
    const resume = this.resume;
    if (from > 0 && resume) {
      headers.range = `bytes=${from}-`;
      if (resume.validator) headers['if-range'] = resume.validator;
      if (resume.url.toString() !== this.apiUrl.toString() && !signedUrlExpired(resume.url)) {
        try {
          const opened = await this.t.get(resume.url, headers);
          if (opened.status === 200 || opened.status === 206) return opened;
          logger.debug(`Resuming from ${redactUrl(resume.url)} answered HTTP ${opened.status}; asking GitLab again.`);
          opened.stream.destroy();
        } catch (err) {
          if (!isRetryableNetworkError(err)) throw err;
        }
      }
    }
    return this.t.get(this.apiUrl, headers);
  }

  async attempt(attempt: number, rules: BodyRules): Promise<void> {
    this.attempts = attempt;
    if (this.written > 0 && !this.resume) await this.restart();
    const from = this.written;
    const opened = await this.openFrom(from);
    const { status, headers } = opened;
    if (status === 416 && from > 0) {
      opened.stream.destroy();
      this.resume = undefined; // start over on the next attempt
      throw networkError('the server refused to resume (HTTP 416)', 'ERR_INCOMPLETE_BODY');
    }
    if (status !== 200 && status !== 206) return this.t.fail(opened);

    const contentType = header(headers, 'content-type');
    const acceptRanges = /\bbytes\b/i.test(header(headers, 'accept-ranges') ?? '');
    const lengthText = header(headers, 'content-length');
    const length = lengthText && /^\d+$/.test(lengthText) ? Number(lengthText) : undefined;
    const append = status === 206;
    if (append) {
      const cr = parseContentRange(header(headers, 'content-range'));
      if (!cr || cr.first !== from || from === 0) {
        opened.stream.destroy();
        this.resume = undefined;
        throw networkError(
          `unexpected partial content (Content-Range: ${header(headers, 'content-range') ?? 'none'})`,
          'ERR_INCOMPLETE_BODY',
        );
      }
      if (cr.total !== undefined) this.total = cr.total;
    } else {
      if (from > 0) await this.restart();
      this.total = length;
      const how = resumeValidator(headers);
      this.resume = how && { url: opened.url, validator: how.validator };
    }
    const etag = strongEtag(header(headers, 'etag'));
    this.source = {
      url: opened.url,
      redirected: opened.redirected,
      contentType,
      acceptRanges: append ? (this.source?.acceptRanges ?? true) : acceptRanges,
      etag: append ? this.source?.etag : etag,
    };
    await this.readBody(opened, rules, !append);
    if (this.total !== undefined && this.written !== this.total) {
      throw networkError(`the body ended after ${this.written} of ${this.total} bytes`, 'ERR_INCOMPLETE_BODY');
    }
  }

  private async readBody(opened: Opened, rules: BodyRules, fromStart: boolean): Promise<void> {
    let first = fromStart;
    await pump(opened.stream, rules, async (chunk) => {
      if (first) {
        first = false;
        if (/text\/html/i.test(this.source?.contentType ?? '') && /^\s*</.test(chunk.subarray(0, 64).toString('utf8'))) {
          throw new RelayError(
            `${this.action}: an HTML page was served instead of the archive (HTTP ${opened.status} from ${opened.url.host}).`,
            'A proxy, SSO or login page answered instead of GitLab or its object storage: check server_url, the proxy settings and the token.',
            { status: opened.status, url: redact(redactUrl(opened.url)), body: 'an HTML page (proxy or login page?)' },
          );
        }
      }
      await this.sink.write(chunk, this.written);
      this.hash.update(chunk);
      this.written += chunk.length;
      this.opts.onWritten?.(this.written);
      this.opts.onProgress?.({ bytes: this.written, total: this.total });
    });
  }

  async finish(): Promise<DownloadResult> {
    await this.sink.truncate(this.written);
    const s = this.source;
    return {
      bytes: this.written,
      sha256: this.hash.digest('hex'),
      redirected: s?.redirected ?? false,
      finalUrl: redact(redactUrl(s?.url ?? this.apiUrl)),
      attempts: this.attempts,
      contentType: s?.contentType,
      acceptRanges: s?.acceptRanges ?? false,
      etag: s?.etag,
    };
  }
}

/**
 * Downloads `apiUrl` into `sink`, byte-exact across resets: resumes with Range (If-Range) where the server allows,
 * else restarts from zero (truncating the sink). The sink's final length is the body's.
 */
export async function download(t: Transport, apiUrl: URL, sink: ByteSink, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const action = `Download ${redactUrl(apiUrl)}`;
  const d = new Download(t, apiUrl, sink, opts, action);
  await t.withRetries(action, apiUrl, (attempt, rules) => d.attempt(attempt, rules));
  return d.finish();
}

/**
 * Bytes [start, end) of `apiUrl` (end undefined: the last `-start` bytes, a suffix range). Undefined when the server
 * ignores Range (answers 200) or sends no usable Content-Range.
 */
export async function readRange(t: Transport, apiUrl: URL, start: number, end?: number): Promise<TailResult | undefined> {
  const range = end === undefined ? `bytes=${start}` : `bytes=${start}-${end - 1}`;
  return t.withRetries(`Download ${redactUrl(apiUrl)} (${range})`, apiUrl, async (_attempt, rules) => {
    const opened = await t.get(apiUrl, { range });
    if (opened.status === 200) {
      opened.stream.destroy(); // Range ignored: the whole body would follow; the caller falls back.
      return undefined;
    }
    if (opened.status !== 206) return t.fail(opened);
    const cr = parseContentRange(header(opened.headers, 'content-range'));
    if (!cr || cr.total === undefined) {
      opened.stream.destroy();
      return undefined;
    }
    const buffer = await readBody(opened.stream, rules);
    const { first, last, total } = cr;
    const wanted = end === undefined ? Math.max(0, total + start) : start;
    if (first !== wanted || buffer.length !== last - first + 1 || (end !== undefined && last !== Math.min(end, total) - 1)) {
      throw networkError(
        `unexpected partial content (Content-Range: ${header(opened.headers, 'content-range')}, ${buffer.length} bytes)`,
        'ERR_INCOMPLETE_BODY',
      );
    }
    return { total, buffer, etag: strongEtag(header(opened.headers, 'etag')) };
  });
}
