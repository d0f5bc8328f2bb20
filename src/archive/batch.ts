// Runs of small entries (extract.ts: neighbours in the archive, at most 1 MiB of it), read, inflated, verified and
// written with synchronous calls, on a worker thread (batch-pool.ts) or on the main thread: the same code either way.
// Per file: one open (O_EXCL|O_NOFOLLOW, with the entry's mode where the umask leaves it whole), one write, a futimes
// and a close, and one zlib context reused for every entry (zlib.inflateRawSync builds and tears down a stream and a
// native context per call: on 20,480 entries of 1-8 KiB that cost as much as the inflating).
//
// `batchRunner` must not reference anything outside its own body: a worker runs it from its source text (its only
// inputs are the modules it is handed). Failures come back as BatchFailure values, turned into errors by the caller.
import type * as Fs from 'node:fs';
import type * as Zlib from 'node:zlib';

/** Numbers per entry in Batch.nums: local header offset, compressed size, declared size, CRC-32, method, mode, mtime (s, or -1). */
export const BATCH_FIELDS = 7;

export interface Batch {
  /** The span of the archive [from, end) holding the entries (read at once). */
  from: number;
  end: number;
  nums: Float64Array;
  /** The entries' paths relative to the root, joined with NUL. */
  paths: string;
  /** One large entry, read and inflated in pieces from its local header on (`from`; `end` unused). */
  stream?: boolean;
  /**
   * No large entry is left to stream: the runner lets its piece buffers go (up to 2 MiB) and, where it has gc (a
   * thread started after src/runtime/v8-flags.ts set --expose-gc has), collects them at once. Kept across entries,
   * they would stay resident through the small entries after.
   */
  release?: boolean;
}

export type BatchFailure =
  | { kind: 'archive'; message: string; path: string; damaged: boolean }
  | { kind: 'system'; message: string; code?: string; errno?: number; syscall?: string; path?: string }
  /** Entry `index` (and the ones after it) are not wholly inside the span: the caller reads them another way. */
  | { kind: 'beyond'; index: number };

export interface BatchRunner {
  /** Writes the batch's entries in order; undefined when all were written. */
  run(batch: Batch): BatchFailure | undefined;
  /** Writes a batch's one large entry (`stream` set), piece by piece; undefined when written. */
  stream(batch: Batch): Promise<BatchFailure | undefined>;
  close(): void;
}

export interface RunnerConfig {
  zipFile: string;
  /** Absolute staging root; entry paths are validated and relative to it. */
  root: string;
  umask: number;
  /**
   * Set while the archive is still being downloaded (watermark.ts, SharedMark): a streamed entry reads each piece once
   * the download has written it, and stops when the download fails. Batches of small entries never wait: the main
   * thread posts them once their bytes are there.
   */
  mark?: SharedArrayBuffer;
}

export function batchRunner(fs: typeof Fs, zlib: typeof Zlib, config: RunnerConfig): BatchRunner {
  const LOCAL_HEADER_SIG = 0x04034b50;
  const FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
  const fd = fs.openSync(config.zipFile, 'r');
  let span = Buffer.allocUnsafe(1024 * 1024 + 64 * 1024);
  let out = Buffer.allocUnsafe(256 * 1024);
  // One raw-inflate context reused (reset between entries) through the handle zlib's own synchronous path drives
  // (processChunkSync: handle.writeSync, _writeState, reset); without it (another Node), zlib.inflateRawSync.
  type Handle = {
    writeSync(f: number, i: Uint8Array, io: number, il: number, o: Uint8Array, oo: number, ol: number): void;
    reset(): void;
    onerror?: (message: string, errno: number) => void;
  };
  type Internals = { _handle?: Handle; _writeState?: Uint32Array; destroyed: boolean };
  let stream: (Zlib.InflateRaw & Internals) | undefined;
  let reusable = true;
  /** zlib's message for the last failed call (the handle reports it before the stream destroys itself). */
  let zlibError = '';
  /**
   * A streamed entry's pieces, and its writes in flight at once: inflating goes on while the pool writes. The buffers
   * (the input and one per write, 2 MiB in all) are kept for the next entry: made anew, each entry's would stay
   * resident until this thread's next GC, which its few allocations rarely bring. On the 2 GiB entry of the bench,
   * 512 KiB x 2 unpacked as fast as 1 MiB x 4.
   */
  const CHUNK = 512 * 1024;
  const WRITES_IN_FLIGHT = 2;
  let input: Buffer | undefined;
  const spare: Buffer[] = [];
  const mark = config.mark ? new BigInt64Array(config.mark) : undefined;

  /** A raw-inflate context whose errors land in zlibError; undefined when this Node's zlib has no usable handle. */
  const newContext = (): (Zlib.InflateRaw & Internals) | undefined => {
    const s = zlib.createInflateRaw() as Zlib.InflateRaw & Internals;
    s.on('error', () => undefined); // reported through zlibError or thrown by the public call
    const h = s._handle;
    if (!h || !s._writeState || typeof h.reset !== 'function' || typeof h.onerror !== 'function') {
      s.close();
      return undefined;
    }
    const report = h.onerror;
    h.onerror = function (this: Handle, message: string, errno: number) {
      zlibError = message;
      report.call(this, message, errno);
    };
    return s;
  };

  /** The reused context of the small entries, created on first use. */
  const context = (): (Zlib.InflateRaw & Internals) | undefined => {
    if (reusable && !stream) {
      stream = newContext();
      if (!stream) reusable = false;
    }
    return reusable ? stream : undefined;
  };

  /**
   * Resolves once bytes [0, end) of the archive are written, or the download is complete (a read past the end is then
   * short, and reported as damage); false when the download failed (its own error is the one reported).
   */
  const written = async (end: number): Promise<boolean> => {
    if (!mark) return true;
    for (;;) {
      const state = Atomics.load(mark, 1);
      if (state === 2n) return false;
      const now = Atomics.load(mark, 0);
      if (state === 1n || BigInt(end) <= now) return true;
      const w = Atomics.waitAsync(mark, 0, now, 1000);
      if (w.async) await w.value;
    }
  };

  const inflate = (raw: Buffer, size: number): Buffer => {
    const want = Math.max(1, size + 1);
    context();
    if (!reusable || !stream?._handle || !stream._writeState) return zlib.inflateRawSync(raw, { maxOutputLength: want });
    if (out.length < want) out = Buffer.allocUnsafe(Math.max(want, out.length * 2));
    stream._handle.writeSync(zlib.constants.Z_FINISH, raw, 0, raw.length, out, 0, want);
    if (stream.destroyed) {
      // zlib reported an error and the stream closed itself: the public call throws that error, with zlib's message.
      stream = undefined;
      return zlib.inflateRawSync(raw, { maxOutputLength: want });
    }
    const produced = want - (stream._writeState[0] as number);
    stream._handle.reset();
    return out.subarray(0, produced);
  };

  const damaged = (message: string, path: string): BatchFailure => ({ kind: 'archive', message, path, damaged: true });

  const system = (err: unknown): BatchFailure => {
    const e = err as NodeJS.ErrnoException;
    return { kind: 'system', message: String(e?.message ?? err), code: e?.code, errno: e?.errno, syscall: e?.syscall, path: e?.path };
  };

  /**
   * One large entry in pieces: CHUNK bytes read (once downloaded), inflated here, counted and CRC'd, and written by the
   * pool at their offsets, WRITES_IN_FLIGHT at a time, while the next piece inflates (an awaited write per piece
   * would leave the inflating idle for each write).
   */
  const runStream = async (batch: Batch): Promise<BatchFailure | undefined> => {
    const [offset, csize, size, crc, method, mode, mtime] = Array.from(batch.nums.subarray(0, 7));
    const path = batch.paths;
    if (
      offset === undefined ||
      csize === undefined ||
      size === undefined ||
      crc === undefined ||
      mode === undefined ||
      mtime === undefined
    ) {
      return { kind: 'system', message: 'malformed batch' };
    }
    const stopped: BatchFailure = { kind: 'system', message: 'the download failed' };
    let inflater: (Zlib.InflateRaw & Internals) | undefined;
    let file: number | undefined;
    let inFlight = 0;
    let writeFailure: unknown;
    let wake: (() => void) | undefined;
    const settled = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    /** Resolves once at most `n` writes are in flight. */
    const drain = (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (inFlight <= n) resolve();
          else wake = check;
        };
        check();
      });
    const write = (buf: Buffer, from: number, length: number, at: number) => {
      inFlight++;
      fs.write(file as number, buf, from, length, at, (err, n) => {
        if (!err && n > 0 && n < length) {
          inFlight--;
          write(buf, from + n, length - n, at + n); // short write: the rest, same buffer
          return;
        }
        inFlight--;
        if (err) writeFailure ??= err;
        else if (n === 0 && length > 0) writeFailure ??= Object.assign(new Error('EIO: nothing written, write'), { code: 'EIO' });
        spare.push(buf);
        settled();
      });
    };
    try {
      const header = Buffer.allocUnsafe(30);
      if (!(await written(offset + 30))) return stopped;
      if (fs.readSync(fd, header, 0, 30, offset) < 30 || header.readUInt32LE(0) !== LOCAL_HEADER_SIG) {
        return damaged('damaged zip archive (bad local file header)', path);
      }
      const start = offset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
      const end = start + csize;
      if (method !== 0) {
        inflater = newContext();
        if (!inflater) return { kind: 'beyond', index: 0 }; // the main thread streams it
      }
      file = fs.openSync(`${config.root}/${path}`, FLAGS, mode);
      let produced = 0;
      let sum = 0;
      /** Counts, CRCs and writes `length` bytes of `buf` (a spare buffer, handed to the write). */
      const take = (buf: Buffer, length: number): BatchFailure | undefined => {
        if (produced + length > size) return damaged('size mismatch (entry inflates to more than its declared size)', path);
        sum = zlib.crc32(buf.subarray(0, length), sum);
        if (length > 0) write(buf, 0, length, produced);
        else spare.push(buf);
        produced += length;
        return undefined;
      };
      const nextBuffer = async (): Promise<Buffer> => {
        await drain(WRITES_IN_FLIGHT - 1);
        return spare.pop() ?? Buffer.allocUnsafe(CHUNK);
      };
      for (let pos = start; pos < end; ) {
        const want = Math.min(CHUNK, end - pos);
        if (!(await written(pos + want))) return stopped;
        if (writeFailure) break;
        if (!inflater) {
          // Stored: the piece is copied out, as the read buffer is reused while the write is in flight.
          const out = await nextBuffer();
          const got = fs.readSync(fd, out, 0, want, pos);
          if (got === 0) return damaged('damaged zip archive (entry data truncated)', path);
          pos += got;
          const f = take(out, got);
          if (f) return f;
          continue;
        }
        // Made for the first deflated entry: a stored one is read straight into the write buffers.
        input ??= Buffer.allocUnsafe(CHUNK);
        const piece = input;
        const got = fs.readSync(fd, piece, 0, want, pos);
        if (got === 0) return damaged('damaged zip archive (entry data truncated)', path);
        pos += got;
        const h = inflater._handle as Handle;
        const state = inflater._writeState as Uint32Array;
        const flush = pos >= end ? zlib.constants.Z_FINISH : zlib.constants.Z_NO_FLUSH;
        let inOff = 0;
        let inLen = got;
        for (;;) {
          const out = await nextBuffer();
          h.writeSync(flush, piece, inOff, inLen, out, 0, out.length);
          if (inflater.destroyed) {
            spare.push(out);
            return damaged(`corrupt compressed data (${zlibError || 'zlib error'})`, path);
          }
          const availOut = state[0] as number;
          const availIn = state[1] as number;
          const f = take(out, out.length - availOut);
          if (f) return f;
          inOff += inLen - availIn;
          inLen = availIn;
          if (availOut !== 0) break;
        }
      }
      await drain(0);
      if (writeFailure) return system(writeFailure);
      if (produced !== size) return damaged(`size mismatch (declared ${size} bytes, got ${produced})`, path);
      if (sum >>> 0 !== crc >>> 0) return damaged('CRC mismatch', path);
      if ((mode & ~config.umask) !== mode) fs.fchmodSync(file, mode);
      if (mtime >= 0) fs.futimesSync(file, mtime, mtime);
      return undefined;
    } catch (err) {
      return system(err);
    } finally {
      await drain(0); // no write may outlive its file (or land in a closed, reused descriptor)
      if (file !== undefined) fs.closeSync(file);
      inflater?.close();
    }
  };

  const run = (batch: Batch): BatchFailure | undefined => {
    if (batch.release && (spare.length > 0 || input)) {
      spare.length = 0;
      input = undefined;
      // Tenured by now (they outlived many young GCs): only a full GC frees them. Once per runner.
      (globalThis as { gc?: () => void }).gc?.();
    }
    const length = batch.end - batch.from;
    if (span.length < length) span = Buffer.allocUnsafe(length);
    let got: number;
    try {
      got = fs.readSync(fd, span, 0, length, batch.from);
    } catch (err) {
      return system(err);
    }
    const paths = batch.paths.split('\0');
    const n = paths.length;
    const nums = batch.nums;
    for (let i = 0; i < n; i++) {
      const k = i * 7;
      const offset = nums[k] as number;
      const csize = nums[k + 1] as number;
      const size = nums[k + 2] as number;
      const crc = nums[k + 3] as number;
      const method = nums[k + 4] as number;
      const mode = nums[k + 5] as number;
      const mtime = nums[k + 6] as number;
      const path = paths[i] as string;
      const at = offset - batch.from;
      if (at + 30 > got) return { kind: 'beyond', index: i };
      if (span.readUInt32LE(at) !== LOCAL_HEADER_SIG) return damaged('damaged zip archive (bad local file header)', path);
      const start = at + 30 + span.readUInt16LE(at + 26) + span.readUInt16LE(at + 28);
      if (start + csize > got) return { kind: 'beyond', index: i };
      const raw = span.subarray(start, start + csize);
      let data: Buffer;
      try {
        data = method === 0 || csize === 0 ? raw : inflate(raw, size);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e?.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
          return damaged('size mismatch (entry inflates to more than its declared size)', path);
        }
        return damaged(`corrupt compressed data (${e?.message})`, path);
      }
      if (data.length > size) return damaged('size mismatch (entry inflates to more than its declared size)', path);
      if (data.length !== size) return damaged(`size mismatch (declared ${size} bytes, got ${data.length})`, path);
      if (zlib.crc32(data) >>> 0 !== crc >>> 0) return damaged('CRC mismatch', path);
      try {
        const file = fs.openSync(`${config.root}/${path}`, FLAGS, mode);
        try {
          if (data.length > 0) fs.writeSync(file, data, 0, data.length, 0);
          if ((mode & ~config.umask) !== mode) fs.fchmodSync(file, mode);
          if (mtime >= 0) fs.futimesSync(file, mtime, mtime);
        } finally {
          fs.closeSync(file);
        }
      } catch (err) {
        return system(err);
      }
    }
    return undefined;
  };

  return {
    run,
    stream: runStream,
    close: () => {
      stream?.close();
      stream = undefined;
      fs.closeSync(fd);
    },
  };
}
