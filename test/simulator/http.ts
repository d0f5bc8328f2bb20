// Shared request/response helpers for both origins: request context, JSON replies, Range, pagination.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { deliverBody } from './faults.ts';
import type { FaultSpec, Origin } from './faults.ts';

export type Query = Record<string, string | string[]>;

export interface RequestRecord {
  origin: Origin;
  method: string;
  path: string;
  query: Query;
  headers: Record<string, string | string[] | undefined>;
  status: number;
  /** Body bytes written to the socket (counted for faulted bodies). */
  bytesSent?: number;
}

export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** Raw (still percent-encoded) path, without the query. */
  rawPath: string;
  rawQuery: string;
  query: Query;
  record: RequestRecord;
  fault: FaultSpec | undefined;
  /** Headers added to every response (rate-limit headers on the GitLab origin). */
  baseHeaders: Record<string, string>;
}

/** Parses a query string; `a[]=x&a[]=y` and repeated keys become arrays under `a`. */
function parseQuery(raw: string): Query {
  const out: Query = {};
  for (const [k0, v] of new URLSearchParams(raw)) {
    const arr = k0.endsWith('[]');
    const k = arr ? k0.slice(0, -2) : k0;
    const prev = out[k];
    if (prev === undefined) out[k] = arr ? [v] : v;
    else out[k] = Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

export function q1(query: Query, key: string): string | undefined {
  const v = query[key];
  return Array.isArray(v) ? v[0] : v;
}

export function qList(query: Query, key: string): string[] {
  const v = query[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

export function qBool(query: Query, key: string): boolean {
  const v = q1(query, key);
  return v === 'true' || v === '1' || v === 'yes';
}

export function makeCtx(origin: Origin, req: IncomingMessage, res: ServerResponse): Ctx {
  const url = req.url ?? '/';
  const qi = url.indexOf('?');
  const rawPath = qi >= 0 ? url.slice(0, qi) : url;
  const rawQuery = qi >= 0 ? url.slice(qi + 1) : '';
  const query = parseQuery(rawQuery);
  const method = (req.method ?? 'GET').toUpperCase();
  const record: RequestRecord = { origin, method, path: rawPath, query, headers: { ...req.headers }, status: 0 };
  return { req, res, method, rawPath, rawQuery, query, record, fault: undefined, baseHeaders: {} };
}

/** Writes status + headers (recording the status) and sends the body through the request's fault. */
export function send(ctx: Ctx, status: number, headers: Record<string, string>, body: Buffer | Readable | string | null): void {
  const all: Record<string, string> = { ...ctx.baseHeaders, ...headers };
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  if (Buffer.isBuffer(buf) && all['Content-Length'] === undefined) all['Content-Length'] = String(buf.length);
  if (ctx.fault?.kind === 'endless') delete all['Content-Length']; // chunked: the body has no announced end
  ctx.record.status = status;
  ctx.res.writeHead(status, all);
  if (buf === null || ctx.method === 'HEAD') {
    if (buf !== null && !Buffer.isBuffer(buf)) buf.destroy();
    ctx.res.end();
    return;
  }
  void deliverBody(ctx.res, buf, ctx.fault, ctx.record);
}

export function json(ctx: Ctx, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(ctx, status, { 'Content-Type': 'application/json', ...headers }, JSON.stringify(value));
}

export interface ByteRange {
  start: number;
  end: number;
}

/** Parses `Range: bytes=a-b | a- | -n`. undefined = no (usable) range header; 'unsatisfiable' = 416. */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

export interface Page<T> {
  items: T[];
  headers: Record<string, string>;
}

function pageUrl(base: string, rawQuery: string, set: Record<string, string>, drop: string[] = []): string {
  const sp = new URLSearchParams(rawQuery);
  for (const d of drop) sp.delete(d);
  for (const [k, v] of Object.entries(set)) sp.set(k, v);
  return `${base}?${sp.toString()}`;
}

/** Offset pagination as GitLab: per_page default 20, max 100; `withCount: false` drops totals and rel=last. */
export function paginate<T>(ctx: Ctx, items: T[], baseUrl: string, withCount = true): Page<T> {
  const perPage = Math.min(100, Math.max(1, Number(q1(ctx.query, 'per_page')) || 20));
  const page = Math.max(1, Number(q1(ctx.query, 'page')) || 1);
  const total = items.length;
  const totalPages = Math.max(1, Math.ceil(total / perPage));
  const slice = items.slice((page - 1) * perPage, page * perPage);
  const hasNext = page * perPage < total;
  const base = `${baseUrl}${ctx.rawPath}`;
  const link = (p: number, rel: string) => `<${pageUrl(base, ctx.rawQuery, { page: String(p), per_page: String(perPage) })}>; rel="${rel}"`;
  const links: string[] = [];
  if (page > 1) links.push(link(page - 1, 'prev'));
  if (hasNext) links.push(link(page + 1, 'next'));
  links.push(link(1, 'first'));
  if (withCount) links.push(link(totalPages, 'last'));
  const headers: Record<string, string> = {
    'X-Page': String(page),
    'X-Per-Page': String(perPage),
    'X-Next-Page': hasNext ? String(page + 1) : '',
    'X-Prev-Page': page > 1 ? String(page - 1) : '',
    Link: links.join(', '),
  };
  if (withCount) {
    headers['X-Total'] = String(total);
    headers['X-Total-Pages'] = String(totalPages);
  }
  return { items: slice, headers };
}

/** Keyset pagination over items sorted by id desc; cursor is an opaque token holding the last id. */
export function keyset<T extends { id: number }>(ctx: Ctx, items: T[], baseUrl: string): Page<T> {
  const perPage = Math.min(100, Math.max(1, Number(q1(ctx.query, 'per_page')) || 20));
  const cursor = q1(ctx.query, 'cursor');
  let after = Infinity;
  if (cursor) {
    try {
      const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { id?: unknown };
      if (typeof parsed.id === 'number') after = parsed.id;
    } catch {
      // an unreadable cursor starts from the top, as a missing one does
    }
  }
  const rest = items.filter((i) => i.id < after);
  const slice = rest.slice(0, perPage);
  const headers: Record<string, string> = { 'X-Per-Page': String(perPage) };
  const last = slice[slice.length - 1];
  if (rest.length > perPage && last) {
    const next = Buffer.from(JSON.stringify({ id: last.id, _kd: 'n' })).toString('base64url');
    headers.Link = `<${pageUrl(`${baseUrl}${ctx.rawPath}`, ctx.rawQuery, { cursor: next, per_page: String(perPage) }, ['page'])}>; rel="next"`;
  }
  return { items: slice, headers };
}
