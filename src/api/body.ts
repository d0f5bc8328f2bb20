// Reading response bodies under rules: an idle timeout, a minimum speed (as curl's --speed-limit/--speed-time),
// a deadline, and byte caps. A broken rule destroys the stream with an error the retry policy understands.
import type { Readable } from 'node:stream';
import { RelayError } from '../runtime/errors.ts';
import { bodyPacer } from '../runtime/gc-pacing.ts';

export interface BodyRules {
  /** Longest gap between two chunks. */
  idleMs: number;
  /** Fail (retryably) when fewer than bytesPerSecond arrive on average over any window of windowMs. */
  minSpeed?: { bytesPerSecond: number; windowMs: number };
  /** Absolute time (Date.now()) after which the transfer fails for good. */
  deadlineAt?: number;
  /** What the deadline error says (which input to raise). */
  deadlineAdvice?: string;
}

/** An error that means "the body stopped arriving": retried like a reset. */
export function networkError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The error for a transfer past its deadline: not retried. */
export function deadlineError(rules: BodyRules): RelayError {
  return new RelayError(
    'The transfer did not finish before its deadline.',
    rules.deadlineAdvice ?? 'Raise `deadline` for very large archives on slow links.',
    { status: 0, code: 'ERR_DEADLINE' },
  );
}

/** Feeds each chunk of `stream` to `onChunk` (awaited, so a slow sink slows the reading) under `rules`. */
export async function pump(stream: Readable, rules: BodyRules, onChunk: (chunk: Buffer) => Promise<void> | void): Promise<void> {
  /** The broken rule, thrown as is (the stream may wrap the error it is destroyed with). */
  let broken: Error | undefined;
  const stop = (err: Error) => {
    broken ??= err;
    stream.destroy(err);
  };
  let idle: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => stop(networkError(`no data received for ${rules.idleMs} ms`, 'ETIMEDOUT')), rules.idleMs);
  };
  let windowBytes = 0;
  let speed: NodeJS.Timeout | undefined;
  const min = rules.minSpeed;
  if (min && min.bytesPerSecond > 0 && min.windowMs > 0) {
    const need = (min.bytesPerSecond * min.windowMs) / 1000;
    speed = setInterval(() => {
      if (windowBytes < need) {
        stop(
          networkError(
            `the body arrived slower than ${min.bytesPerSecond} B/s for ${min.windowMs / 1000} s (${windowBytes} B in the last window)`,
            'ERR_TOO_SLOW',
          ),
        );
      }
      windowBytes = 0;
    }, min.windowMs);
  }
  let deadline: NodeJS.Timeout | undefined;
  if (rules.deadlineAt !== undefined) {
    const left = rules.deadlineAt - Date.now();
    if (left <= 0) {
      stream.destroy();
      throw deadlineError(rules);
    }
    deadline = setTimeout(() => stop(deadlineError(rules)), left);
  }
  arm();
  try {
    for await (const chunk of stream) {
      clearTimeout(idle);
      windowBytes += (chunk as Buffer).length;
      await onChunk(chunk as Buffer);
      bodyPacer.bodyReceived((chunk as Buffer).length);
      arm();
    }
  } catch (err) {
    throw broken ?? err;
  } finally {
    clearTimeout(idle);
    clearInterval(speed);
    clearTimeout(deadline);
  }
  if (broken) throw broken;
}

/**
 * Reads a whole body into memory. Beyond `limit` bytes: 'truncate' keeps the first `limit` and drops the rest
 * (error bodies), 'fail' stops reading and throws `fail()` (and the body is read into one buffer of `limit` bytes).
 */
export async function readBody(
  stream: Readable,
  rules: BodyRules,
  limit = Number.POSITIVE_INFINITY,
  overflow: 'truncate' | { fail: () => Error } = 'truncate',
): Promise<Buffer> {
  if (overflow !== 'truncate' && Number.isSafeInteger(limit)) {
    // The length is known (a ranged answer): one buffer of it, filled as the chunks come (no second copy).
    const out = Buffer.allocUnsafe(limit);
    let filled = 0;
    await pump(stream, rules, (chunk) => {
      if (filled + chunk.length > limit) {
        const err = overflow.fail();
        stream.destroy(err);
        throw err;
      }
      chunk.copy(out, filled);
      filled += chunk.length;
    });
    return out.subarray(0, filled);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  await pump(stream, rules, (chunk) => {
    if (size + chunk.length > limit && overflow !== 'truncate') {
      const err = overflow.fail();
      stream.destroy(err);
      throw err;
    }
    if (size < limit) chunks.push(size + chunk.length > limit ? chunk.subarray(0, limit - size) : chunk);
    size += chunk.length;
  });
  return Buffer.concat(chunks);
}
