// The object-storage origin: serves archives at signed, expiring URLs (S3-like), never needs a token.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { makeCtx, parseRange, q1, send } from './http.ts';
import type { Ctx, RequestRecord } from './http.ts';
import { s3Error, sendStatusFault } from './faults.ts';
import type { Faults, Hooks } from './faults.ts';
import type { Archive, Store } from './model.ts';

export class Signer {
  private secret = randomBytes(32);

  private mac(key: string, date: string, expires: string): string {
    return createHmac('sha256', this.secret).update(`${key}\n${date}\n${expires}`).digest('hex');
  }

  /** A presigned GET URL for `key` valid for `expiresSeconds`. */
  sign(storageUrl: string, key: string, expiresSeconds: number): string {
    const date = new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const expires = String(expiresSeconds);
    const sp = new URLSearchParams({
      'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
      'X-Amz-Credential': `SIMACCESSKEY/${date.slice(0, 8)}/us-east-1/s3/aws4_request`,
      'X-Amz-Date': date,
      'X-Amz-Expires': expires,
      'X-Amz-SignedHeaders': 'host',
      'X-Amz-Signature': this.mac(key, date, expires),
    });
    return `${storageUrl}${key}?${sp.toString()}`;
  }

  /** 'ok', 'bad' (signature) or 'expired'. */
  verify(key: string, date: string | undefined, expires: string | undefined, sig: string | undefined): 'ok' | 'bad' | 'expired' {
    if (!date || !expires || !sig) return 'bad';
    const want = Buffer.from(this.mac(key, date, expires));
    const got = Buffer.from(sig);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return 'bad';
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date);
    if (!m) return 'bad';
    const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
    return Date.now() > t + Number(expires) * 1000 ? 'expired' : 'ok';
  }
}

/** Opens the bytes [start, end] of an archive as a stream (or a buffer slice when in memory). */
function archiveBody(a: Archive, start: number, end: number): Buffer | Readable {
  if (a.buffer) return a.buffer.subarray(start, end + 1);
  if (end < start) return Readable.from([]);
  return createReadStream(a.path ?? '', { start, end });
}

/** What the storage origin does beyond serving bytes (tests change it through the Simulator). */
export interface StorageSettings {
  /** Which validators the storage sends: both (default, as S3), etag, last-modified, or none (as some CDNs). */
  validators: 'both' | 'etag' | 'last-modified' | 'none';
  /** Object replacements armed by swapArchive: after `after` more GETs of the key, the job's archive becomes `next`. */
  swaps: Map<string, { after: number; next: Archive }>;
  /** Throughput limit of each connection (bytes/s), as object storage has; undefined: none. */
  connectionBytesPerSecond?: number;
  /** Requests being answered now, and the most at once (parallel downloads). */
  inFlight: number;
  maxInFlight: number;
}

/** True when the request's If-Range (an ETag or a date) names the object as it is now. */
function ifRangeHolds(value: string, etag: string | undefined, lastModified: string | undefined): boolean {
  if (value.startsWith('"') || value.startsWith('W/')) return etag !== undefined && value === etag;
  return lastModified !== undefined && value === lastModified;
}

/**
 * Sends an archive honouring Range (206 + Content-Range, 416 when unsatisfiable) and the conditionals a storage
 * honours with it: If-Match and If-Unmodified-Since (412 on a mismatch), If-Range (the whole object, 200, on a
 * mismatch). `headers` are added to every answer. The fault `oversize-range` answers with more than was asked.
 */
export function sendArchive(ctx: Ctx, a: Archive, headers: Record<string, string>, unsatisfiable: () => void): void {
  const h = (name: string) => (typeof ctx.req.headers[name] === 'string' ? (ctx.req.headers[name] as string) : undefined);
  const etag = headers.ETag;
  const lastModified = headers['Last-Modified'];
  const ifMatch = h('if-match');
  const ifUnmodified = h('if-unmodified-since');
  if (
    (ifMatch && ifMatch !== '*' && ifMatch !== etag) ||
    (ifUnmodified && lastModified && Date.parse(lastModified) > Date.parse(ifUnmodified))
  ) {
    send(
      ctx,
      412,
      { 'Content-Type': 'application/xml' },
      ctx.method === 'HEAD' ? '' : s3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'),
    );
    return;
  }
  const ifRange = h('if-range');
  const rangeHeader = ifRange && !ifRangeHolds(ifRange, etag, lastModified) ? undefined : h('range');
  let range = parseRange(rangeHeader, a.size);
  if (range === 'unsatisfiable') {
    unsatisfiable();
    return;
  }
  if (range && ctx.fault?.kind === 'oversize-range') range = { start: 0, end: a.size - 1 };
  if (!range) {
    send(ctx, 200, { ...headers, 'Content-Length': String(a.size) }, archiveBody(a, 0, a.size - 1));
    return;
  }
  send(
    ctx,
    206,
    { ...headers, 'Content-Length': String(range.end - range.start + 1), 'Content-Range': `bytes ${range.start}-${range.end}/${a.size}` },
    archiveBody(a, range.start, range.end),
  );
}

export function startStorage(
  store: Store,
  faults: Faults,
  hooks: Hooks,
  signer: Signer,
  requests: RequestRecord[],
  settings: StorageSettings,
): Server {
  return createServer((req, res) => {
    const ctx = makeCtx('storage', req, res);
    settings.inFlight += 1;
    settings.maxInFlight = Math.max(settings.maxInFlight, settings.inFlight);
    res.on('close', () => {
      settings.inFlight -= 1;
    });
    requests.push(ctx.record);
    handle(ctx);
    hooks.answered({ origin: 'storage', method: ctx.method, path: ctx.rawPath });
  });

  function handle(ctx: Ctx) {
    const res = ctx.res;
    ctx.baseHeaders = { Server: 'SimS3', 'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase() };
    const xml = (status: number, code: string, msg: string) =>
      send(ctx, status, { 'Content-Type': 'application/xml' }, ctx.method === 'HEAD' ? '' : s3Error(code, msg));
    const fault = faults.take('storage', ctx.method, ctx.rawPath, ctx.req.headers.range);
    if (fault?.kind === 'status') {
      sendStatusFault(res, 'storage', fault, (s) => (ctx.record.status = s));
      return;
    }
    ctx.fault =
      fault ?? (settings.connectionBytesPerSecond ? { kind: 'slow', bytesPerSecond: settings.connectionBytesPerSecond } : undefined);
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD')
      return xml(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    const key = decodeURIComponent(ctx.rawPath);
    const check = signer.verify(key, q1(ctx.query, 'X-Amz-Date'), q1(ctx.query, 'X-Amz-Expires'), q1(ctx.query, 'X-Amz-Signature'));
    if (check === 'bad')
      return xml(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
    if (check === 'expired') return xml(403, 'AccessDenied', 'Request has expired');
    const job = store.findJobByKey(key);
    const a = job?.archive;
    if (!a) return xml(404, 'NoSuchKey', 'The specified key does not exist.');
    const headers: Record<string, string> = { 'Content-Type': 'application/zip', 'Accept-Ranges': 'bytes' };
    const v = settings.validators;
    if (v === 'both' || v === 'etag') headers.ETag = a.etag;
    if (v === 'both' || v === 'last-modified')
      headers['Last-Modified'] = a.lastModified ?? new Date(Date.parse(job.finishedAt ?? job.createdAt)).toUTCString();
    const swap = ctx.method === 'GET' ? settings.swaps.get(key) : undefined;
    if (swap && --swap.after <= 0) {
      // This answer still serves the old object; every later one the new (same key, same URL).
      settings.swaps.delete(key);
      job.archive = { ...swap.next, key };
    }
    sendArchive(ctx, a, headers, () =>
      send(
        ctx,
        416,
        { 'Content-Type': 'application/xml', 'Content-Range': `bytes */${a.size}` },
        ctx.method === 'HEAD' ? '' : s3Error('InvalidRange', 'The requested range is not satisfiable'),
      ),
    );
  }
}
