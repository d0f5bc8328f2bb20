// Retry policy: which failures are worth another attempt, and how long to wait before it.
// GitLab's Rack::Attack sends Retry-After (seconds) and RateLimit-Reset (ABSOLUTE unix seconds; lib/gitlab/rack_attack/request_throttle_data.rb).

const MAX_BACKOFF_MS = 60_000;
const MAX_SERVER_WAIT_MS = 5 * 60_000;

export interface RetryHints {
  /** The `Retry-After` header: delta seconds or an HTTP date. */
  retryAfter?: string;
  /** The `RateLimit-Reset` header: absolute unix time in seconds. */
  rateLimitReset?: string;
  /** Current time in ms (Date.now()). */
  now?: number;
}

/** Milliseconds the server asked us to wait, or undefined when it did not say (or said nonsense). */
export function serverWaitMs(hints: RetryHints): number | undefined {
  const now = hints.now ?? Date.now();
  const clamp = (ms: number) => Math.min(Math.max(0, Math.ceil(ms)), MAX_SERVER_WAIT_MS);
  const ra = hints.retryAfter?.trim();
  if (ra) {
    if (/^\d+(\.\d+)?$/.test(ra)) return clamp(Number(ra) * 1000);
    const date = Date.parse(ra);
    if (!Number.isNaN(date)) return clamp(date - now);
  }
  const reset = hints.rateLimitReset?.trim();
  if (reset && /^\d+(\.\d+)?$/.test(reset)) {
    const n = Number(reset);
    // GitLab sends absolute unix seconds; a small number can only be the IETF draft's delta-seconds.
    return clamp(n > 1e9 ? n * 1000 - now : n * 1000);
  }
  return undefined;
}

/**
 * Delay before retry number `attempt` (1 = first retry): the server's Retry-After / RateLimit-Reset when given
 * (capped at 5 min), else exponential backoff with full jitter, capped at 60 s.
 */
export function retryDelay(attempt: number, baseMs: number, hints: RetryHints = {}, random: () => number = Math.random): number {
  const fromServer = serverWaitMs(hints);
  if (fromServer !== undefined) return fromServer;
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
  return Math.floor(random() * ceiling);
}

/**
 * GitLab's application limits (lib/api/helpers/rate_limiter.rb, e.g. jobs_index on job listings) answer 429
 * {"message":{"error":...}} with no Retry-After and no RateLimit-Reset, for the rest of a one-minute window
 * (lib/gitlab/application_rate_limiter). Backoff alone gives up inside that window; a 429 without hints waits a
 * whole window instead (plus up to 5 % jitter), once per allowed retry. ARTIFACT_RELAY_RATE_WINDOW_MS shrinks the
 * window for tests.
 */
export const RATE_LIMIT_WINDOW_MS = 60_000;

export function rateLimitWindowMs(env: NodeJS.ProcessEnv): number {
  const n = Number(env.ARTIFACT_RELAY_RATE_WINDOW_MS);
  return env.ARTIFACT_RELAY_RATE_WINDOW_MS && Number.isFinite(n) && n >= 0 ? Math.min(n, RATE_LIMIT_WINDOW_MS) : RATE_LIMIT_WINDOW_MS;
}

/** Delay before retrying a 429 that named no wait: a whole rate-limit window and a little jitter. */
export function unhintedRateLimitDelay(windowMs: number, random: () => number = Math.random): number {
  return windowMs + Math.floor(random() * windowMs * 0.05);
}

const RETRYABLE_STATUSES = new Set([429, 500, 502, 503, 504]);

/** 429 and 5xx gateway/server failures. Never 400/401/403/404. */
export function isRetryableStatus(status: number): boolean {
  return RETRYABLE_STATUSES.has(status);
}

const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_READING_RESPONSE_STREAM',
  'ERR_INCOMPLETE_BODY',
  'ERR_TOO_SLOW',
  'UND_ERR_SOCKET',
]);

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Transient network failures: resets, refusals, timeouts, premature close, got's TimeoutError/ReadError. */
export function isRetryableNetworkError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { name?: string; message?: string; cause?: unknown };
  if (e.name === 'TimeoutError' || e.name === 'ReadError') return true;
  const code = codeOf(err);
  if (code && RETRYABLE_CODES.has(code)) return true;
  if (typeof e.message === 'string' && /premature close|socket hang up|aborted/i.test(e.message)) return true;
  if (e.cause && e.cause !== err) return isRetryableNetworkError(e.cause);
  return false;
}

export { sleep } from '../util/concurrency.ts';
