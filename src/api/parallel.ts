// Parallel ranged download: disjoint byte ranges of one object over several connections (object storage limits
// throughput per connection), each written at its offset in the sink and retried alone when it fails. Every range
// carries the object's validators (If-Range/If-Match), so all the bytes are of one object. The SHA-256 of the
// whole archive is computed in order, reading each part back from the sink once the parts before it are done.
// adaptiveDownload starts on one connection (the hash streamed in order, nothing read back) and widens to ranges
// for the rest only when its caller says the download is bound by the network.
import { createHash, type Hash } from 'node:crypto';
import { RelayError } from '../runtime/errors.ts';
import { redact } from '../runtime/log.ts';
import { networkError, pump } from './body.ts';
import {
  type ByteSink,
  conditionalHeaders,
  Download,
  type DownloadOptions,
  type DownloadResult,
  header,
  parseContentRange,
  sameObject,
  signedUrlExpired,
  type StopAt,
  strongEtag,
  type Transport,
  type Validators,
  validatorsOf,
} from './download.ts';
import { redactUrl } from './urls.ts';

/** A sink the parallel download can read back (to hash the parts in order). */
export interface ReadableSink extends ByteSink {
  /** Bytes [offset, offset + length), read into `into` when given (and long enough). */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
}

export interface ParallelOptions {
  /** The object's size and validators, from an earlier ranged answer (the tail request). */
  total: number;
  validators: Validators;
  /** Connections (ranges in flight) at most. */
  connections: number;
  /** Bytes per range; default: total / (4 × connections), between 1 and 32 MiB. */
  partBytes?: number;
  maxBytes?: number;
  /**
   * Only these bytes [start, end) of the object (a partial fetch: the selected entries of a zip), sorted and
   * disjoint, each range cut at MAX_PART (or partBytes); no sha256 then (it would describe only part of the object),
   * onWritten is not called, and maxBytes caps the bytes fetched.
   */
  ranges?: readonly { start: number; end: number }[];
  /** Called once bytes [0, n) are all written (the parts before n are complete). */
  onWritten?: (n: number) => void;
  onProgress?: (p: { bytes: number; total?: number }) => void;
  /**
   * Bytes [0, at) are already written (a one-connection download stopped there, adaptiveDownload): only [at, total)
   * is fetched, `hash` (of the bytes before) is continued, and the ranges start at `url` while its signature is valid.
   */
  from?: { at: number; hash: Hash; url: URL; redirected: boolean };
}

/** How a download went: over how many connections, and where it widened from one to them. */
export interface Widened {
  /** Connections at most (1: it never widened). */
  connections: number;
  /** The offset the one connection stopped at, the rest fetched as ranges (0: ranges from the start). */
  at?: number;
  /** The ranges turned out unusable: the archive was downloaded again over one connection. */
  restarted?: boolean;
}

/** The object changed or the server stopped honouring Range: the caller downloads sequentially instead. */
export class RangeUnusable extends Error {}

const MIN_PART = 1024 * 1024;
const MAX_PART = 32 * 1024 * 1024;
/** Bytes read back from the sink at a time for the hash (memory stays flat whatever the part size). */
const HASH_SLICE = 1024 * 1024;

/**
 * The ranges [start, end) the bytes [from, total) of one object are fetched in: parts of a quarter of each
 * connection's share (1 to 32 MiB), the last of them smaller and smaller (each a 2 x connections-th of what is left,
 * at least 1 MiB), so that the connections finish together: with equal parts, the last one ran on alone for up to a
 * whole part (0.8 s for 32 MiB at 40 MiB/s). A fixed `partBytes` cuts parts of that size.
 */
export function planParts(total: number, connections: number, partBytes?: number, from = 0): { start: number; end: number }[] {
  const c = Math.max(1, connections);
  const auto = Math.min(MAX_PART, Math.max(MIN_PART, Math.ceil((total - from) / (4 * c))));
  const parts: { start: number; end: number }[] = [];
  for (let start = from; start < total; ) {
    const left = total - start;
    const size =
      partBytes !== undefined
        ? Math.max(1, partBytes)
        : left > c * auto
          ? auto
          : Math.min(auto, Math.max(MIN_PART, Math.ceil(left / (2 * c))));
    parts.push({ start, end: Math.min(total, start + size) });
    start += size;
  }
  return parts;
}

/**
 * Downloads `apiUrl` as parallel ranges into `sink`. Throws RangeUnusable (before or after writing some parts) when
 * the object changed or a range was not answered as asked; other failures are the client's errors.
 */
/** Each range cut into parts of at most `partBytes` (default MAX_PART). */
function splitRanges(ranges: readonly { start: number; end: number }[], partBytes?: number): { start: number; end: number }[] {
  const size = Math.max(1, partBytes ?? MAX_PART);
  const parts: { start: number; end: number }[] = [];
  for (const r of ranges) for (let start = r.start; start < r.end; start += size) parts.push({ start, end: Math.min(r.end, start + size) });
  return parts;
}

export async function parallelDownload(t: Transport, apiUrl: URL, sink: ReadableSink, o: ParallelOptions): Promise<DownloadResult> {
  const partial = o.ranges !== undefined;
  const wanted = partial ? (o.ranges ?? []).reduce((n, r) => n + (r.end - r.start), 0) : o.total;
  if (o.maxBytes !== undefined && wanted > o.maxBytes) {
    throw new RelayError(
      `Download ${redactUrl(apiUrl)}: ${partial ? 'the selected ranges' : 'the archive'} (${wanted} bytes) ${partial ? 'are' : 'is'} larger than max_archive_bytes (${o.maxBytes} bytes).`,
      'Raise max_archive_bytes if archives this large are expected.',
      { status: 0, code: 'ERR_BODY_TOO_LARGE' },
    );
  }
  if (partial && (o.ranges ?? []).some((r) => r.start < 0 || r.end > o.total || r.end <= r.start))
    throw new Error('a range outside the object');
  if (o.from && (partial || o.from.at < 0 || o.from.at > o.total)) throw new Error('a start outside the object');
  const parts = partial ? splitRanges(o.ranges ?? [], o.partBytes) : planParts(o.total, o.connections, o.partBytes, o.from?.at);
  const done = new Array<boolean>(parts.length).fill(false);
  const hash = o.from?.hash ?? createHash('sha256');
  let prefix = 0; // parts [0, prefix) are hashed
  let received = o.from?.at ?? 0;
  let attempts = 1;
  /** Where the parts are fetched from: the storage URL the first answer came from, while its signature is valid. */
  let source: { url: URL; redirected: boolean } | undefined = o.from && { url: o.from.url, redirected: o.from.redirected };
  let failed: unknown;
  let hashing = Promise.resolve();
  // One buffer for reading the parts back: hashing is synchronous, and a fresh slice per MiB would be garbage that
  // waits for a full GC (gigabytes of it for a large archive).
  let hashBuffer: Buffer | undefined;

  const advance = async () => {
    while (prefix < parts.length && done[prefix]) {
      const p = parts[prefix]!;
      for (let at = p.start; at < p.end; at += HASH_SLICE) {
        const want = Math.min(HASH_SLICE, p.end - at);
        hashBuffer ??= Buffer.allocUnsafe(HASH_SLICE);
        const bytes = await sink.read(at, want, hashBuffer);
        if (bytes.length !== want) throw new Error(`the sink returned ${bytes.length} of ${want} bytes at ${at}`);
        hash.update(bytes);
      }
      prefix++;
      o.onWritten?.(p.end);
    }
  };

  const fetchPart = async (index: number) => {
    const part = parts[index]!;
    const range = `bytes=${part.start}-${part.end - 1}`;
    let unusable: RangeUnusable | undefined;
    let partReceived = 0;
    await t.withRetries(`Download ${redactUrl(apiUrl)} (${range})`, apiUrl, async (attempt, rules) => {
      attempts = Math.max(attempts, attempt);
      received -= partReceived; // a retry fetches the part again whole, overwriting its bytes in place
      partReceived = 0;
      const url = source && !signedUrlExpired(source.url) ? source.url : apiUrl;
      const opened = await t.get(url, { range, ...conditionalHeaders(o.validators) });
      if (opened.status === 200 || opened.status === 412) {
        opened.stream.destroy();
        unusable = new RangeUnusable(`${range} answered HTTP ${opened.status}: the object changed or Range is not honoured`);
        return;
      }
      if (opened.status !== 206) return t.fail(opened);
      const cr = parseContentRange(header(opened.headers, 'content-range'));
      if (
        !cr ||
        cr.first !== part.start ||
        cr.last !== part.end - 1 ||
        cr.total !== o.total ||
        !sameObject(o.validators, validatorsOf(opened.headers))
      ) {
        opened.stream.destroy();
        unusable = new RangeUnusable(
          `${range} was answered with ${header(opened.headers, 'content-range') ?? 'no Content-Range'} or another object`,
        );
        return;
      }
      if (!source || source.url.toString() !== opened.url.toString())
        source = { url: opened.url, redirected: opened.redirected || source?.redirected === true };
      let at = part.start;
      await pump(opened.stream, rules, async (chunk) => {
        if (at + chunk.length > part.end) {
          throw new RelayError(
            `Download ${redactUrl(apiUrl)} (${range}): the server sent more bytes than its Content-Range; refusing the rest.`,
            undefined,
            {
              status: 0,
              code: 'ERR_BODY_OVERRUN',
            },
          );
        }
        await sink.write(chunk, at);
        at += chunk.length;
        received += chunk.length;
        partReceived += chunk.length;
        o.onProgress?.({ bytes: received, total: wanted });
      });
      if (at !== part.end)
        throw networkError(`${range} ended after ${at - part.start} of ${part.end - part.start} bytes`, 'ERR_INCOMPLETE_BODY');
    });
    if (unusable) throw unusable;
    done[index] = true;
    if (partial) return;
    // Not awaited: the connection goes on to its next part while the parts done in order are read back and hashed
    // (32 MiB took 30-60 ms, the connection idle). A failed read-back fails the download like a failed part.
    hashing = hashing.then(advance).catch((err: unknown) => {
      failed ??= err;
    });
  };

  let next = 0;
  const worker = async () => {
    while (failed === undefined && next < parts.length) {
      const index = next++;
      try {
        await fetchPart(index);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.connections, parts.length)) }, worker));
  await hashing;
  if (failed !== undefined) throw failed;
  await sink.truncate(o.total);
  return {
    bytes: wanted,
    sha256: partial ? '' : hash.digest('hex'),
    redirected: source?.redirected ?? false,
    finalUrl: redact(redactUrl(source?.url ?? apiUrl)),
    attempts,
    acceptRanges: true,
    etag: strongEtag(o.validators.etag),
  };
}

export interface AdaptiveOptions extends Omit<ParallelOptions, 'ranges' | 'from' | 'total' | 'validators'> {
  /**
   * The object the ranges must be of (an earlier ranged answer); absent, the one connection's own answer is (its
   * validators then make every range provably of that same object).
   */
  total?: number;
  validators?: Validators;
  /**
   * Where to stop the one connection and fetch the rest as ranges over `connections` (StopAt): asked before each
   * chunk of an answer that is the object the validators name, whole; undefined goes on over the one connection.
   */
  widenAt: StopAt;
  /** The one connection's other options (maxBytes, onWritten and onProgress are the ones above). */
  single?: Pick<DownloadOptions, 'onRestart' | 'expectedSize' | 'maxBytesInput'>;
}

/**
 * Downloads `apiUrl` over one connection (download.ts: resumable, the hash streamed in order) until `widenAt` stops
 * it at an offset, then the rest as parallel ranges (parallelDownload from that offset, continuing the hash; the
 * written watermark stays contiguous). Throws RangeUnusable as parallelDownload does, after the switch.
 */
export async function adaptiveDownload(
  t: Transport,
  apiUrl: URL,
  sink: ReadableSink,
  o: AdaptiveOptions,
): Promise<DownloadResult & { widened: Widened }> {
  const action = `Download ${redactUrl(apiUrl)}`;
  const single: DownloadOptions = { ...o.single, maxBytes: o.maxBytes, onWritten: o.onWritten, onProgress: o.onProgress };
  let object: { total: number; validators: Validators } | undefined; // the answer it widened on
  const d = new Download(t, apiUrl, sink, single, action, (written, end, answer) => {
    if (o.connections <= 1) return undefined;
    if (o.total !== undefined && !(answer.total === o.total && sameObject(o.validators ?? {}, answer.validators))) return undefined;
    const at = o.widenAt(written, end, answer);
    if (at !== undefined) object = answer;
    return at;
  });
  await t.withRetries(action, apiUrl, (attempt, rules) => d.attempt(attempt, rules));
  if (!d.stopped || !object) return { ...(await d.finish()), widened: { connections: 1 } };
  const h = d.handover();
  const r = await parallelDownload(t, apiUrl, sink, { ...o, total: object.total, validators: object.validators, from: h });
  return {
    ...r,
    attempts: Math.max(r.attempts, h.attempts),
    contentType: h.contentType,
    widened: {
      connections: Math.min(o.connections, Math.max(1, planParts(object.total, o.connections, o.partBytes, h.at).length)),
      at: h.at,
    },
  };
}
