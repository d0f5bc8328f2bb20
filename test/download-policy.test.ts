// When a download widens to ranges: bound by the network means the main thread idle AND the file's writes not in
// flight most of the time (a disk that holds the download back leaves the main thread idle too). Fake timers, a fake
// clock and fake scheduling times: no test here depends on how fast anything runs.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { networkBound, type Probe, whenToUnpack } from '../src/commands/download-policy.ts';
import { WriteMeter } from '../src/workspace/file-sink.ts';

describe('WriteMeter', () => {
  test('counts the time at least one write is in flight, overlapping writes once', () => {
    let t = 0;
    const m = new WriteMeter(() => t);
    m.begin(); // 0
    t = 10;
    m.begin(); // a second write overlapping the first
    t = 15;
    m.end();
    assert.equal(m.busyMs(), 15, 'still in flight: counted up to now');
    t = 20;
    m.end(); // 0..20 in flight
    t = 50;
    assert.equal(m.busyMs(), 20);
    m.begin();
    t = 55;
    m.end();
    assert.equal(m.busyMs(), 25);
  });
});

describe('networkBound', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setInterval'] }));
  afterEach(() => mock.timers.reset());

  /** A probe whose clock and main-thread run time the test advances, window by window. */
  function fakeProbe() {
    const state = { now: 0, run: 0 };
    const probe: Probe = { now: () => state.now, sched: () => ({ run: state.run, wait: 0 }) };
    return { state, probe };
  }
  const never = new Promise<void>(() => {});

  test('an idle main thread with the file mostly writing is not bound by the network; once writes are idle it is', async () => {
    const { state, probe } = fakeProbe();
    let t = 0;
    const writes = new WriteMeter(() => t);
    let verdict: boolean | undefined;
    void networkBound(never, { label: 'test', windowMs: 250, countWait: false, writes, probe }).then((b) => {
      verdict = b;
    });
    /** One 250 ms window in which the main thread ran `runMs` and a write was in flight `writeMs`. */
    const window = async (runMs: number, writeMs: number) => {
      writes.begin();
      t += writeMs;
      writes.end();
      t += 250 - writeMs;
      state.now += 250;
      state.run += runMs;
      mock.timers.tick(250);
      await Promise.resolve();
    };
    await window(20, 200); // the main thread idle, the file writing most of the time: held back by the disk
    assert.equal(verdict, undefined);
    await window(20, 30); // idle, and hardly writing: waiting for the network
    assert.equal(verdict, true);
  });

  test('a busy main thread is not bound by the network; the end of the download says false', async () => {
    const { state, probe } = fakeProbe();
    let finish = () => {};
    const until = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let verdict: boolean | undefined;
    void networkBound(until, { label: 'test', windowMs: 250, countWait: false, writes: new WriteMeter(() => 0), probe }).then((b) => {
      verdict = b;
    });
    state.now = 250;
    state.run = 200;
    mock.timers.tick(250);
    await Promise.resolve();
    assert.equal(verdict, undefined);
    finish();
    await until;
    await Promise.resolve();
    assert.equal(verdict, false);
  });
});

describe('whenToUnpack', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setInterval', 'setTimeout'] }));
  afterEach(() => mock.timers.reset());
  /** Whether `p` has settled after a few turns of the event loop (no timer fires: they are fake). */
  const settledSoon = async (p: Promise<void>) => {
    let settled = false;
    void p.then(() => {
      settled = true;
    });
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    return settled;
  };
  const never = new Promise<void>(() => undefined);

  test('on more than one core unpacking starts at once: the main thread keeps its core for the download', async () => {
    assert.equal(await settledSoon(whenToUnpack(never, 'auto', 2)), true);
  });

  test('on one core it waits for the probe (no window has passed: not yet), or for the download to end', async () => {
    let finish!: () => void;
    const downloading = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const unpacking = whenToUnpack(downloading, 'auto', 1);
    assert.equal(await settledSoon(unpacking), false);
    finish();
    assert.equal(await settledSoon(unpacking), true);
  });

  test('ARTIFACT_RELAY_OVERLAP=1 (always) starts at once on one core too', async () => {
    assert.equal(await settledSoon(whenToUnpack(never, 'always', 1)), true);
  });
});
