// Fault injection: matching, default bodies, and body delivery that can reset, throttle or stall.
import { STATUS_CODES } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

export type Origin = 'gitlab' | 'storage';

export interface FaultSpec {
  origin?: Origin;
  path?: string | RegExp;
  method?: string;
  /** Only requests with (true) or without (false) a Range header, or whose Range header matches; default: all. */
  range?: boolean | RegExp;
  /**
   * status: an error answer; reset: the connection dies after `afterBytes`; slow: `bytesPerSecond` (1 = one byte a
   * second); stall: silence after `afterBytes`; endless: the body (chunked, no Content-Length) never ends, `fill`
   * repeated after it; oversize-range: a Range request is answered with a Content-Range larger than asked; hold: the
   * body is sent once `until` settles (a test releases it on an event, e.g. a hook on another request).
   */
  kind: 'status' | 'reset' | 'slow' | 'stall' | 'endless' | 'oversize-range' | 'hold';
  /** hold: sends the body once this settles. */
  until?: Promise<unknown>;
  status?: number;
  body?: string;
  headers?: Record<string, string>;
  retryAfter?: number;
  afterBytes?: number;
  bytesPerSecond?: number;
  /** endless: the bytes repeated after the body (default 64 KiB of spaces, so a JSON answer stays parseable). */
  fill?: string;
  /** endless: stop after this many bytes in all, a safety net (default 1 GiB). */
  maxBytes?: number;
  times?: number;
}

interface ArmedFault extends FaultSpec {
  remaining: number;
}

/** A request as hooks see it: origin, method and raw path (no query). */
export interface RequestSeen {
  origin: Origin;
  method: string;
  path: string;
}

/** Which requests a hook counts: fields like a fault's (origin defaults to gitlab), or a predicate. */
export type RequestMatch = Pick<FaultSpec, 'origin' | 'method' | 'path'> | ((r: RequestSeen) => boolean);

function matches(m: RequestMatch, r: RequestSeen): boolean {
  if (typeof m === 'function') return m(r);
  if ((m.origin ?? 'gitlab') !== r.origin) return false;
  if (m.method && m.method.toUpperCase() !== r.method.toUpperCase()) return false;
  if (m.path === undefined) return true;
  return typeof m.path === 'string' ? r.path.startsWith(m.path) : m.path.test(r.path);
}

function rangeMatches(f: FaultSpec, range: string | undefined): boolean {
  if (typeof f.range === 'boolean') return f.range === (range !== undefined);
  return !(f.range instanceof RegExp) || f.range.test(range ?? '');
}

interface Hook {
  match: RequestMatch;
  left: number;
  run: () => void;
}

/**
 * Test hooks on counted requests instead of wall-clock time: `run` fires right after the Nth matching request has been
 * answered (its status and JSON decided), before the server reads another request. So the Nth request sees the old
 * state and the next one the new state, however fast or slow the client is.
 */
export class Hooks {
  private list: Hook[] = [];

  add(match: RequestMatch, n: number, run: () => void): void {
    if (!(Number.isInteger(n) && n >= 1)) throw new Error(`hook count must be a whole number >= 1, got ${n}`);
    this.list.push({ match, left: n, run });
  }

  clear(): void {
    this.list = [];
  }

  answered(r: RequestSeen): void {
    for (const h of [...this.list]) {
      if (!matches(h.match, r) || --h.left > 0) continue;
      this.list = this.list.filter((x) => x !== h);
      h.run();
    }
  }
}

export class Faults {
  private list: ArmedFault[] = [];

  add(f: FaultSpec): void {
    this.list.push({ ...f, remaining: f.times ?? 1 });
  }

  clear(): void {
    this.list = [];
  }

  /** Finds the first matching armed fault and consumes one use of it. */
  take(origin: Origin, method: string, path: string, range?: string): FaultSpec | undefined {
    const f = this.list.find((x) => x.remaining > 0 && matches(x, { origin, method, path }) && rangeMatches(x, range));
    if (!f) return undefined;
    f.remaining -= 1;
    this.list = this.list.filter((x) => x.remaining > 0);
    return f;
  }
}

export function rateLimitHeaders(): Record<string, string> {
  const now = Math.floor(Date.now() / 1000);
  const reset = now - (now % 60) + 60;
  return {
    'RateLimit-Name': 'throttle_authenticated_api',
    'RateLimit-Limit': '2000',
    'RateLimit-Observed': '1',
    'RateLimit-Remaining': '1999',
    'RateLimit-Reset': String(reset),
  };
}

/** Writes a fault of kind `status`, with GitLab-shaped (or S3-shaped) default bodies. */
export function sendStatusFault(res: ServerResponse, origin: Origin, f: FaultSpec, setStatus: (s: number) => void): void {
  const status = f.status ?? 500;
  const headers: Record<string, string> = origin === 'gitlab' ? rateLimitHeaders() : {};
  let body = f.body;
  if (status === 429) {
    const retry = f.retryAfter ?? 60;
    Object.assign(headers, rateLimitHeaders(), {
      'Retry-After': String(retry),
      'RateLimit-Reset': String(Math.floor(Date.now() / 1000) + retry),
      'RateLimit-ResetTime': new Date(Date.now() + retry * 1000).toUTCString(),
      'RateLimit-Remaining': '0',
    });
    if (body === undefined) {
      body = origin === 'storage' ? s3Error('SlowDown', 'Please reduce your request rate.') : 'Retry later\n';
      headers['Content-Type'] = origin === 'storage' ? 'application/xml' : 'text/plain';
    }
  } else if (f.retryAfter !== undefined) {
    headers['Retry-After'] = String(f.retryAfter);
  }
  if (body === undefined) {
    if (origin === 'storage') {
      body = s3Error(status === 503 ? 'SlowDown' : 'InternalError', STATUS_CODES[status] ?? 'Error');
      headers['Content-Type'] = 'application/xml';
    } else if (status === 502) {
      body =
        '<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n<body><h1>502</h1><p>Whoops, GitLab is taking too much time to respond.</p></body>\n</html>\n';
      headers['Content-Type'] = 'text/html; charset=utf-8';
    } else {
      body = JSON.stringify({ message: `${status} ${STATUS_CODES[status] ?? 'Error'}` });
      headers['Content-Type'] = 'application/json';
    }
  }
  Object.assign(headers, f.headers ?? {});
  const buf = Buffer.from(body);
  headers['Content-Length'] = String(buf.length);
  setStatus(status);
  res.writeHead(status, headers);
  res.end(buf);
}

export function s3Error(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>SIM${Date.now()}</RequestId></Error>\n`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Sends a body (buffer or stream) through an optional body fault:
 * reset destroys the socket after `afterBytes`, stall stops sending after `afterBytes` and never ends (both only
 * when the body is longer than that), slow throttles to `bytesPerSecond`.
 */
export async function deliverBody(
  res: ServerResponse,
  body: Buffer | Readable,
  fault: FaultSpec | undefined,
  counter: { bytesSent?: number } = {},
): Promise<void> {
  if (fault?.kind === 'hold') {
    await fault.until?.catch(() => undefined);
    return deliverBody(res, body, undefined, counter);
  }
  const kind = fault?.kind;
  if (kind === 'endless') return deliverEndless(res, body, fault!, counter);
  if (!kind || kind === 'status' || kind === 'oversize-range') {
    if (Buffer.isBuffer(body)) {
      res.end(body);
      return;
    }
    body.on('error', () => res.destroy());
    res.on('close', () => body.destroy());
    body.pipe(res);
    return;
  }
  const limit = fault.afterBytes ?? 0;
  const bps = Math.max(1, fault.bytesPerSecond ?? 16 * 1024);
  // slow: at most `slice` bytes at a time, each sent when the byte clock (bps since the first byte) reaches it, so
  // the rate is bps whatever the size of the body's chunks (a file streams in 64 KiB chunks, a buffer is one).
  const slice = Math.max(1, Math.floor(bps / 20));
  const startedAt = performance.now();
  let sent = 0;
  /** A reset or stall fires only when the body is longer than afterBytes. */
  let cut = false;
  let aborted = false;
  res.on('close', () => {
    aborted = true;
  });
  const chunks: AsyncIterable<Buffer> | Iterable<Buffer> = Buffer.isBuffer(body) ? [body] : (body as AsyncIterable<Buffer>);
  const write = async (b: Buffer) => {
    if (!res.write(b))
      await new Promise<void>((r) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          r();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    sent += b.length;
    counter.bytesSent = (counter.bytesSent ?? 0) + b.length;
  };
  try {
    for await (const chunk of chunks) {
      if (aborted) break;
      if (kind === 'slow') {
        for (let i = 0; i < chunk.length && !aborted; i += slice) {
          await write(chunk.subarray(i, i + slice));
          const ahead = (sent * 1000) / bps - (performance.now() - startedAt);
          if (ahead > 0) await sleep(ahead);
        }
        continue;
      }
      const room = limit - sent;
      if (chunk.length <= room) {
        await write(chunk);
        continue;
      }
      if (room > 0) await write(chunk.subarray(0, room));
      cut = true;
      break;
    }
  } catch {
    res.destroy();
    return;
  }
  if (!Buffer.isBuffer(body)) body.destroy();
  if (aborted) return;
  // A body that fits in afterBytes ends normally: killing the connection after a complete body would hit whatever
  // request the client sends next on that kept-alive socket (a flaky extra attempt, not the fault asked for).
  if (kind === 'slow' || !cut) res.end();
  else if (kind === 'reset') {
    // Let the written bytes reach the client before the connection dies.
    await sleep(20);
    res.socket?.destroy();
    res.destroy();
  }
  // stall: never end; the connection stays open until the client or close() ends it.
}

/** The body, then `fill` again and again (with backpressure) until the client goes away or maxBytes is reached. */
async function deliverEndless(
  res: ServerResponse,
  body: Buffer | Readable,
  fault: FaultSpec,
  counter: { bytesSent?: number },
): Promise<void> {
  let aborted = false;
  res.on('close', () => {
    aborted = true;
  });
  const fill = Buffer.from(fault.fill ?? ' '.repeat(64 * 1024));
  const max = fault.maxBytes ?? 1024 ** 3;
  const write = async (b: Buffer) => {
    counter.bytesSent = (counter.bytesSent ?? 0) + b.length;
    if (!res.write(b))
      await new Promise<void>((r) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          r();
        };
        res.on('drain', done);
        res.on('close', done);
      });
  };
  try {
    const chunks: AsyncIterable<Buffer> | Iterable<Buffer> = Buffer.isBuffer(body) ? [body] : (body as AsyncIterable<Buffer>);
    for await (const chunk of chunks) {
      if (aborted) break;
      await write(chunk);
    }
    while (!aborted && (counter.bytesSent ?? 0) < max) await write(fill);
  } catch {
    res.destroy();
    return;
  }
  if (!aborted) res.end();
}
