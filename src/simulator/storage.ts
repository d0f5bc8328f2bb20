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
export function archiveBody(a: Archive, start: number, end: number): Buffer | Readable {
  if (a.buffer) return a.buffer.subarray(start, end + 1);
  if (end < start) return Readable.from([]);
  return createReadStream(a.path ?? '', { start, end });
}

/**
 * Sends an archive honouring Range (206 + Content-Range, 416 when unsatisfiable).
 * `headers` are added to every answer.
 */
export function sendArchive(ctx: Ctx, a: Archive, headers: Record<string, string>, unsatisfiable: () => void): void {
  const range = parseRange(typeof ctx.req.headers.range === 'string' ? ctx.req.headers.range : undefined, a.size);
  if (range === 'unsatisfiable') {
    unsatisfiable();
    return;
  }
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

export function startStorage(store: Store, faults: Faults, hooks: Hooks, signer: Signer, requests: RequestRecord[]): Server {
  return createServer((req, res) => {
    const ctx = makeCtx('storage', req, res);
    requests.push(ctx.record);
    handle(ctx);
    hooks.answered({ origin: 'storage', method: ctx.method, path: ctx.rawPath });
  });

  function handle(ctx: Ctx) {
    const res = ctx.res;
    ctx.baseHeaders = { Server: 'SimS3', 'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase() };
    const xml = (status: number, code: string, msg: string) =>
      send(ctx, status, { 'Content-Type': 'application/xml' }, ctx.method === 'HEAD' ? '' : s3Error(code, msg));
    const fault = faults.take('storage', ctx.method, ctx.rawPath);
    if (fault?.kind === 'status') {
      sendStatusFault(res, 'storage', fault, (s) => (ctx.record.status = s));
      return;
    }
    ctx.fault = fault;
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
    const headers = {
      'Content-Type': 'application/zip',
      ETag: a.etag,
      'Accept-Ranges': 'bytes',
      'Last-Modified': new Date(Date.parse(job.finishedAt ?? job.createdAt)).toUTCString(),
    };
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
