// Worker threads that write batches of small entries (batch.ts), so that inflating and writing thousands of small
// files uses every core while the main thread downloads, plans and streams the large entries. Each worker runs
// batchRunner from its source text (no second copy of the bundle is loaded: a worker starts in a few milliseconds).
// A worker that fails (an exception, an exit) fails every batch it holds: the archive is then rejected as a whole.
import { Worker } from 'node:worker_threads';
import { type Batch, type BatchFailure, batchRunner, type RunnerConfig } from './batch.ts';

// `__name`: the helper a keepNames transform (tsx, in the tests) inserts into function bodies.
const SOURCE = `'use strict';
var __name = (f) => f;
const { parentPort, workerData } = require('node:worker_threads');
const runner = (${batchRunner.toString()})(require('node:fs'), require('node:zlib'), workerData);
// One batch at a time, in the order posted: a streamed entry awaits its writes and the download between pieces.
let queue = Promise.resolve();
parentPort.on('message', (m) => {
  queue = queue.then(async () => {
    if (m === null) {
      runner.close();
      process.exit(0);
    }
    let failure;
    try {
      failure = m.batch.stream ? await runner.stream(m.batch) : runner.run(m.batch);
    } catch (err) {
      failure = { kind: 'system', message: String(err && err.message || err), code: err && err.code };
    }
    parentPort.postMessage({ id: m.id, failure });
  });
});
`;

interface Pending {
  resolve: (f: BatchFailure | undefined) => void;
  reject: (err: Error) => void;
}

class Thread {
  readonly pending = new Map<number, Pending>();
  broken: Error | undefined;
  readonly exited: Promise<void>;
  constructor(readonly worker: Worker) {
    worker.on('message', (m: { id: number; failure?: BatchFailure }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.resolve(m.failure ?? undefined);
    });
    const fail = (err: Error) => {
      this.broken ??= err;
      for (const p of this.pending.values()) p.reject(this.broken);
      this.pending.clear();
    };
    worker.on('error', (err) => fail(err));
    this.exited = new Promise((resolve) => {
      worker.on('exit', (code) => {
        fail(new Error(`an unpacking thread stopped (exit code ${code})`));
        resolve();
      });
    });
  }
}

export class BatchPool {
  private readonly threads: Thread[];
  private nextId = 0;

  constructor(size: number, config: RunnerConfig) {
    this.threads = Array.from({ length: size }, () => new Thread(new Worker(SOURCE, { eval: true, workerData: config })));
  }

  /** Batches held by the least busy thread. */
  leastHeld(): number {
    return Math.min(...this.threads.map((t) => t.pending.size));
  }

  /** Writes a batch on the least busy thread; resolves with its failure (undefined: written). */
  run(batch: Batch): Promise<BatchFailure | undefined> {
    let t = this.threads[0]!;
    for (const x of this.threads) if (x.pending.size < t.pending.size) t = x;
    if (t.broken) return Promise.reject(t.broken);
    const id = this.nextId++;
    // Only the Batch fields cross: a caller's extras (a streamed batch's) would be cloned into the thread's heap.
    const { from, end, nums, paths, stream, release } = batch;
    return new Promise((resolve, reject) => {
      t.pending.set(id, { resolve, reject });
      t.worker.postMessage({ id, batch: { from, end, nums, paths, stream, release } });
    });
  }

  /** Lets every thread finish what it holds, close its files and exit. */
  async close(): Promise<void> {
    for (const t of this.threads) {
      if (!t.broken) t.worker.postMessage(null);
      else await t.worker.terminate();
    }
    await Promise.all(this.threads.map((t) => t.exited));
  }
}
