// How far a file being downloaded is written: readers wait for a byte offset, the download advances the mark after
// each write has resolved, and a failed or abandoned download rejects every waiter (so no reader hangs).

interface Waiter {
  end: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Watermark {
  private written = 0;
  private failure?: Error;
  private complete = false;
  /** Few at a time (one per extraction worker): a plain list is enough. */
  private waiters: Waiter[] = [];
  /**
   * The same mark for unpacking threads (batch.ts), which wait with Atomics: [bytes written, state], the state 0 while
   * downloading, 1 complete, 2 failed.
   */
  readonly shared = new SharedArrayBuffer(16);
  private readonly view = new BigInt64Array(this.shared);

  private publish(state: 0 | 1 | 2): void {
    Atomics.store(this.view, 0, BigInt(this.written));
    if (state !== 0) Atomics.store(this.view, 1, BigInt(state));
    Atomics.notify(this.view, 0);
  }

  /**
   * Resolves once bytes [0, end) are written, or the download is complete (a reader past the end then gets a short
   * read, which it reports as a damaged archive); rejects if the download fails first.
   */
  wait = (end: number): Promise<void> => {
    if (this.failure) return Promise.reject(this.failure);
    if (end <= this.written || this.complete) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ end, resolve, reject }));
  };

  advance(written: number): void {
    this.written = written;
    this.publish(0);
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) w.end <= written ? w.resolve() : still.push(w);
    this.waiters = still;
  }

  /** The download completed with `total` bytes: every waiter may read now. */
  finish(total: number): void {
    this.complete = true;
    this.advance(total);
    this.publish(1);
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }

  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.publish(2);
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
  }
}

/** Whether the download behind a Watermark's shared mark has completed. */
export const downloadFinished = (shared: SharedArrayBuffer) => Atomics.load(new BigInt64Array(shared), 1) === 1n;
