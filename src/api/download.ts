// Byte-exact resumable downloads and ranged reads over a Transport (the client's redirect, credential and
// retry rules). The bytes go to a sink the caller owns: this module knows no file system.
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { RelayError } from '../runtime/errors.ts';
import { logger, redact } from '../runtime/log.ts';
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
  /** A cap on the body's size: a bigger announced size or body fails at once, naming `maxBytesInput`. */
  maxBytes?: number;
  /** The input to name when maxBytes is passed (default max_archive_bytes). */
  maxBytesInput?: string;
  /**
   * The size the body must have when its answer announces none (chunked): the size a tail request saw (a function:
   * asked per chunk, for a tail request still on its way).
   */
  expectedSize?: number | (() => number | undefined);
  onProgress?: (p: { bytes: number; total?: number }) => void;
  /** Called once bytes [0, n) are written to the sink (each write resolved), so readers may use them. */
  onWritten?: (n: number) => void;
  /** Called before the sink is truncated to start over (the bytes given to onWritten are gone). */
  onRestart?: () => void;
}

/**
 * Where to stop a download early (parallel.ts widens it): called before each chunk is written with the bytes
 * written so far and where the chunk would end; an offset in [written, end] stops the download there (the chunk cut
 * at it), undefined goes on. Asked only of an answer that may be continued by ranges: the whole object (`total`
 * bytes, as announced) with a strong ETag or a Last-Modified, from a server that accepts ranges.
 */
export type StopAt = (written: number, end: number, answer: { total: number; validators: Validators }) => number | undefined;

/** A download stopped early (StopAt): bytes [0, at) are written and hashed, the rest is the caller's to fetch. */
export interface Stopped {
  at: number;
  /** The hash of bytes [0, at), to be continued. */
  hash: Hash;
  /** The URL the bytes came from (the storage URL after GitLab's redirect), to fetch the rest from. */
  url: URL;
  redirected: boolean;
  attempts: number;
  contentType?: string;
}

/** Thrown through pump to end a body early, at a StopAt offset; caught in Download.attempt. */
const STOP = Symbol('stop');

/** The last bytes of a resource, from a suffix Range request. */
export interface TailResult {
  /** The resource's full size (from Content-Range). */
  total: number;
  buffer: Buffer;
  /** Strong ETag, if any. */
  etag?: string;
  lastModified?: string;
}

/** What identifies one version of an object: its strong ETag and its Last-Modified, as the server sent them. */
export interface Validators {
  etag?: string;
  lastModified?: string;
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

export function validatorsOf(headers: Headers): Validators {
  return { etag: strongEtag(header(headers, 'etag')), lastModified: header(headers, 'last-modified') };
}

/**
 * The conditional headers of a ranged request for the object `v` names: If-Range (a server that honours it
 * answers 200 with the whole new object when it changed), and If-Match / If-Unmodified-Since (412 when it
 * changed, from servers such as S3 that honour those but not If-Range). Empty when there is no validator.
 */
export function conditionalHeaders(v: Validators | undefined): Record<string, string> {
  if (v?.etag) return { 'if-range': v.etag, 'if-match': v.etag };
  if (v?.lastModified) return { 'if-range': v.lastModified, 'if-unmodified-since': v.lastModified };
  return {};
}

/** False when two answers are provably of different objects (a validator both carry differs). */
export function sameObject(a: Validators, b: Validators): boolean {
  if (a.etag && b.etag) return a.etag === b.etag;
  if (a.lastModified && b.lastModified) return a.lastModified === b.lastModified;
  return true;
}

/**
 * How a download answered with `headers` may resume after a mid-body failure: the validators the resume must
 * carry, or undefined when it cannot resume and must restart from zero. Without a validator (strong ETag, or
 * Last-Modified with a Content-Length) a resume could splice two objects, so there is none.
 */
function resumeValidator(headers: Headers): Validators | undefined {
  const acceptRanges = /\bbytes\b/i.test(header(headers, 'accept-ranges') ?? '');
  const lengthText = header(headers, 'content-length');
  const length = lengthText && /^\d+$/.test(lengthText) ? Number(lengthText) : undefined;
  const { etag, lastModified } = validatorsOf(headers);
  if (!acceptRanges) return undefined;
  if (etag) return { etag };
  if (lastModified && length !== undefined) return { lastModified };
  return undefined;
}

function tooLarge(what: string, max: number, input: string): RelayError {
  return new RelayError(
    `${what} is larger than ${input} (${max} bytes).`,
    `Raise ${input} if archives this large are expected; otherwise the server is sending more than it should.`,
    { status: 0, code: 'ERR_BODY_TOO_LARGE' },
  );
}

function overrun(what: string, announced: number): RelayError {
  return new RelayError(
    `${what}: the server sent more than the ${announced} bytes it announced; refusing the rest.`,
    'A proxy or storage in between is sending a broken or hostile answer: check server_url and the proxy settings.',
    { status: 0, code: 'ERR_BODY_OVERRUN' },
  );
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
export class Download {
  written = 0;
  total: number | undefined;
  attempts = 0;
  /** Set when StopAt stopped the download (bytes [0, written) are written). */
  stopped = false;
  private hash: Hash = createHash('sha256');
  /** How to resume after a mid-body failure (undefined: restart from zero). */
  private resume: { url: URL; validators: Validators } | undefined;
  private source: Source | undefined;

  constructor(
    private readonly t: Transport,
    private readonly apiUrl: URL,
    private readonly sink: ByteSink,
    private readonly opts: DownloadOptions,
    private readonly action: string,
    private readonly stopAt?: StopAt,
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
      Object.assign(headers, conditionalHeaders(resume.validators));
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
    if ((status === 416 || status === 412) && from > 0) {
      opened.stream.destroy();
      this.resume = undefined; // start over on the next attempt
      const why = status === 412 ? 'the object changed since the first answer (HTTP 412)' : 'the server refused to resume (HTTP 416)';
      throw networkError(why, 'ERR_INCOMPLETE_BODY');
    }
    if (status !== 200 && status !== 206) return this.t.fail(opened);

    const contentType = header(headers, 'content-type');
    const acceptRanges = /\bbytes\b/i.test(header(headers, 'accept-ranges') ?? '');
    const lengthText = header(headers, 'content-length');
    const length = lengthText && /^\d+$/.test(lengthText) ? Number(lengthText) : undefined;
    const append = status === 206;
    /** Where this body must end: its announced size, else the size a tail request saw. */
    let end: DownloadOptions['expectedSize'];
    if (append) {
      const cr = parseContentRange(header(headers, 'content-range'));
      const changed =
        (cr?.total !== undefined && this.total !== undefined && cr.total !== this.total) ||
        !sameObject(this.resume?.validators ?? {}, validatorsOf(headers));
      if (!cr || cr.first !== from || from === 0 || cr.last < cr.first || changed) {
        opened.stream.destroy();
        this.resume = undefined;
        throw networkError(
          changed
            ? 'the object changed since the first answer (a different ETag, Last-Modified or size); starting over'
            : `unexpected partial content (Content-Range: ${header(headers, 'content-range') ?? 'none'})`,
          'ERR_INCOMPLETE_BODY',
        );
      }
      if (cr.total !== undefined) this.total = cr.total;
      end = cr.last + 1;
    } else {
      if (from > 0) await this.restart();
      this.total = length;
      end = length ?? this.opts.expectedSize;
      const validators = resumeValidator(headers);
      this.resume = validators && { url: opened.url, validators };
    }
    const max = this.opts.maxBytes;
    if (max !== undefined && this.total !== undefined && this.total > max) {
      opened.stream.destroy();
      throw tooLarge(`${this.action}: the archive (${this.total} bytes)`, max, this.opts.maxBytesInput ?? 'max_archive_bytes');
    }
    const etag = strongEtag(header(headers, 'etag'));
    this.source = {
      url: opened.url,
      redirected: opened.redirected,
      contentType,
      acceptRanges: append ? (this.source?.acceptRanges ?? true) : acceptRanges,
      etag: append ? this.source?.etag : etag,
    };
    try {
      await this.readBody(opened, rules, !append, end);
    } catch (err) {
      if (err !== STOP) throw err;
      this.stopped = true;
      return;
    }
    if (this.total !== undefined && this.written !== this.total) {
      throw networkError(`the body ended after ${this.written} of ${this.total} bytes`, 'ERR_INCOMPLETE_BODY');
    }
  }

  private async readBody(opened: Opened, rules: BodyRules, fromStart: boolean, bound: DownloadOptions['expectedSize']): Promise<void> {
    let first = fromStart;
    const max = this.opts.maxBytes;
    await pump(opened.stream, rules, async (chunk) => {
      const after = this.written + chunk.length;
      const end = typeof bound === 'function' ? bound() : bound;
      if (end !== undefined && after > end) throw overrun(this.action, end);
      if (max !== undefined && after > max) throw tooLarge(`${this.action}: the body`, max, this.opts.maxBytesInput ?? 'max_archive_bytes');
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
      // Asked only where a StopAt was given: other downloads build no object per chunk.
      const cut =
        this.stopAt && this.resume && this.total !== undefined
          ? this.stopAt(this.written, after, { total: this.total, validators: this.resume.validators })
          : undefined;
      if (cut !== undefined) {
        const part = chunk.subarray(0, Math.min(chunk.length, Math.max(0, cut - this.written)));
        if (part.length > 0) await this.take(part);
        throw STOP; // pump destroys the stream
      }
      await this.take(chunk);
    });
  }

  private async take(chunk: Buffer): Promise<void> {
    await this.sink.write(chunk, this.written);
    this.hash.update(chunk);
    this.written += chunk.length;
    this.opts.onWritten?.(this.written);
    this.opts.onProgress?.({ bytes: this.written, total: this.total });
  }

  /** What a stopped download hands over to fetch the rest by ranges. */
  handover(): Stopped {
    const s = this.source;
    const r = this.resume;
    if (!this.stopped || !s || !r) throw new Error('the download was not stopped');
    return {
      at: this.written,
      hash: this.hash,
      url: r.url,
      redirected: s.redirected,
      attempts: this.attempts,
      contentType: s.contentType,
    };
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
 * ignores Range (answers 200), sends no usable Content-Range or a larger range than asked, or, with `validators`
 * (of an earlier answer), when the object changed since. A body longer than its Content-Range is refused.
 */
export async function readRange(
  t: Transport,
  apiUrl: URL,
  start: number,
  end?: number,
  validators?: Validators,
): Promise<TailResult | undefined> {
  const range = end === undefined ? `bytes=${start}` : `bytes=${start}-${end - 1}`;
  const action = `Download ${redactUrl(apiUrl)} (${range})`;
  const asked = end === undefined ? -start : end - start;
  return t.withRetries(action, apiUrl, async (_attempt, rules) => {
    const opened = await t.get(apiUrl, { range, ...conditionalHeaders(validators) });
    if (opened.status === 200 || (opened.status === 412 && validators)) {
      opened.stream.destroy(); // Range ignored (the whole body would follow) or the object changed: the caller falls back.
      return undefined;
    }
    if (opened.status !== 206) return t.fail(opened);
    const cr = parseContentRange(header(opened.headers, 'content-range'));
    const answer = validatorsOf(opened.headers);
    const length = cr ? cr.last - cr.first + 1 : 0;
    if (!cr || cr.total === undefined || length <= 0 || length > asked || (validators && !sameObject(validators, answer))) {
      if (cr && length > asked)
        logger.debug(`${action}: answered ${cr.first}-${cr.last}, more than the ${asked} bytes asked; not using Range.`);
      opened.stream.destroy();
      return undefined;
    }
    const buffer = await readBody(opened.stream, rules, length, {
      fail: () =>
        new RelayError(
          `${action}: the server sent more bytes than its Content-Range (${length}); refusing the rest.`,
          'A proxy or storage in between is sending a broken or hostile answer: check server_url and the proxy settings.',
          { status: 0, code: 'ERR_BODY_OVERRUN' },
        ),
    });
    const { first, last, total } = cr;
    const wanted = end === undefined ? Math.max(0, total + start) : start;
    if (first !== wanted || buffer.length !== length || (end !== undefined && last !== Math.min(end, total) - 1)) {
      throw networkError(
        `unexpected partial content (Content-Range: ${header(opened.headers, 'content-range')}, ${buffer.length} bytes)`,
        'ERR_INCOMPLETE_BODY',
      );
    }
    return { total, buffer, ...answer };
  });
}
