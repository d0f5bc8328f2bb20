// Adaptive pace for deletions: the number in flight starts at the configured concurrency (also the hard cap),
// halves on a rate limit (HTTP 429), steps down by one when deletions get slow, and climbs back one at a time
// after a run of quick successes. The controller is a pure state machine fed with events, so tests count
// events instead of measuring time.

export interface PaceChange {
  from: number;
  to: number;
  why: 'rate limited' | 'slow' | 'recovered';
}

export interface PaceOptions {
  /** A deletion slower than this (ms) counts as slow. */
  slowMs?: number;
  /** Quick successes in a row before the limit climbs by one. */
  recoverAfter?: number;
  onChange?: (change: PaceChange) => void;
}

export class AdaptivePace {
  limit: number;
  readonly cap: number;
  readonly changes: PaceChange[] = [];
  throttled = 0;
  private readonly slowMs: number;
  private readonly recoverAfter: number;
  private readonly onChange?: (change: PaceChange) => void;
  private streak = 0;
  /** Completions since the last step down: one step per "generation" of in-flight deletions, not one per slow answer. */
  private sinceDown = Number.POSITIVE_INFINITY;

  constructor(cap: number, opts: PaceOptions = {}) {
    this.cap = Math.max(1, Math.floor(cap));
    this.limit = this.cap;
    this.slowMs = opts.slowMs ?? 5000;
    this.recoverAfter = opts.recoverAfter ?? 20;
    this.onChange = opts.onChange;
  }

  private set(to: number, why: PaceChange['why']): void {
    const next = Math.min(this.cap, Math.max(1, to));
    if (next === this.limit) return;
    const change = { from: this.limit, to: next, why };
    this.limit = next;
    this.changes.push(change);
    this.onChange?.(change);
  }

  /** The server answered 429 (the client retries the request itself). */
  rateLimited(): void {
    this.throttled++;
    this.streak = 0;
    if (this.sinceDown < this.limit) return; // the same burst: already halved for it
    this.sinceDown = 0;
    this.set(Math.floor(this.limit / 2), 'rate limited');
  }

  /** A deletion finished (successfully or not) after `ms`. */
  done(ms: number): void {
    this.sinceDown++;
    if (ms > this.slowMs) {
      this.streak = 0;
      if (this.sinceDown >= this.limit) {
        this.sinceDown = 0;
        this.set(this.limit - 1, 'slow');
      }
      return;
    }
    if (++this.streak >= this.recoverAfter) {
      this.streak = 0;
      this.set(this.limit + 1, 'recovered');
    }
  }
}

/**
 * Runs `fn` over `items` with at most `pace.limit` in flight, re-read whenever one finishes. Every item runs
 * (a failure is the callback's to record); results keep the items' order.
 */
export async function runPaced<T>(items: readonly T[], pace: AdaptivePace, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let active = 0;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      if (next >= items.length && active === 0) {
        resolve();
        return;
      }
      while (active < pace.limit && next < items.length) {
        const item = items[next++];
        active++;
        const started = Date.now();
        fn(item).then(
          () => {
            active--;
            pace.done(Date.now() - started);
            pump();
          },
          (err: unknown) => reject(err),
        );
      }
    };
    pump();
  });
}
