// When a whole-archive download widens from one connection to parallel ranges, and when unpacking starts alongside
// it: both pay only where the download is bound by the network, which the main thread's scheduling times tell
// (Linux: /proc/thread-self/schedstat).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { StopAt } from '../api/download.ts';
import type { FetchSettings } from '../inputs/settings.ts';
import { formatBytes, logger } from '../runtime/log.ts';
import type { WriteMeter } from '../workspace/file-sink.ts';

/**
 * Under ARTIFACT_RELAY_WIDEN auto, a download widens only while at least this much is left: below it, new
 * connections and reading the rest back for the hash cost more than the ranges gain.
 */
const WIDEN_MIN_REST = 8 * 1024 * 1024;
/**
 * Nor unless the rest would take at least this long over the one connection at its rate so far: new connections and
 * the read-back cost about the same whatever is left, and a fast download (a server nearby on a busy machine) gains
 * too little from them.
 */
const WIDEN_MIN_MS = 1000;
/** How often a download is checked for whether it leaves the CPU idle enough for unpacking alongside it. */
const OVERLAP_PROBE_MS = 500;
/**
 * How often a download over one connection is checked for whether it is bound by the network (widening to parallel
 * ranges pays): shorter than OVERLAP_PROBE_MS, as every window over one connection costs three quarters of what four
 * connections would fetch in it.
 */
const WIDEN_PROBE_MS = 250;

/**
 * The main thread's time on a CPU and its time waiting for one, in ms (Linux: /proc/thread-self/schedstat), else the
 * process's CPU time (wait 0).
 */
function schedMs(): { run: number; wait: number } {
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    if (Number.isFinite(run) && Number.isFinite(wait)) return { run: (run as number) / 1e6, wait: (wait as number) / 1e6 };
  } catch {
    // not Linux
  }
  const used = process.cpuUsage();
  return { run: (used.user + used.system) / 1000, wait: 0 };
}

/**
 * Resolves when unpacking should start. On more than one core, at once: the unpacking runs on one thread per core but
 * one (extract.ts), the main thread keeps its core for the download. Measured on loopback, 3 alternating runs (tmpfs,
 * disk), at once / the probe below / download then unpack: small 0.59/0.64/0.62 s (tmpfs), mixed 1.49/1.46/1.37 and
 * 2.43/2.57/2.27 s, big 4.53/5.08/5.08 and 4.53/5.33/5.08 s; from a server paced per connection the download leaves
 * the cores idle anyway. On one core, unpacking alongside pays only while the download leaves the CPU idle (bound by
 * the network): every OVERLAP_PROBE_MS the main thread's time on a CPU plus its time waiting for one (schedMs) is
 * compared with the time passed; below half of it, unpacking starts; a download that keeps the CPU busy (a fast
 * server nearby, or a busy machine: a starved download waits for the CPU, that is not idle time either) is left
 * alone and the archive is unpacked once complete. ARTIFACT_RELAY_OVERLAP=1 starts at once on any machine.
 */
export function whenToUnpack(
  downloading: Promise<unknown>,
  overlap: FetchSettings['overlap'],
  cores: number = availableParallelism(),
): Promise<void> {
  if (overlap === 'always' || cores > 1) return Promise.resolve();
  return networkBound(downloading, { label: 'overlap probe', windowMs: OVERLAP_PROBE_MS, countWait: true }).then(() => undefined);
}

/** What networkBound reads: the main thread's scheduling times and the clock (tests give their own). */
export interface Probe {
  sched: () => { run: number; wait: number };
  now: () => number;
}
const REAL_PROBE: Probe = { sched: schedMs, now: () => performance.now() };

/**
 * True at the end of the first `windowMs` window in which the main thread's time on a CPU (plus, with countWait,
 * its time waiting for one) was below half of the time passed, and so was the time the download's file had a write
 * in flight (`writes`: a download held back by its disk leaves the main thread idle too, and more connections would
 * only add to its writes); false when `until` settles first. Each window is logged at debug level.
 */
export function networkBound(
  until: Promise<unknown>,
  o: { label: string; windowMs: number; countWait: boolean; writes?: WriteMeter; probe?: Probe },
): Promise<boolean> {
  const probe = o.probe ?? REAL_PROBE;
  return new Promise((resolve) => {
    let last = probe.sched();
    let at = probe.now();
    let lastWrites = o.writes?.busyMs() ?? 0;
    const timer = setInterval(() => {
      const now = probe.sched();
      const t = probe.now();
      const run = now.run - last.run;
      const wait = now.wait - last.wait;
      const wall = t - at;
      const nowWrites = o.writes?.busyMs() ?? 0;
      const writing = nowWrites - lastWrites;
      logger.debug(
        `${o.label}: ${wall.toFixed(0)} ms: main thread ran ${run.toFixed(0)} ms, waited for a CPU ${wait.toFixed(0)} ms; a write in flight ${writing.toFixed(0)} ms`,
      );
      if (run + (o.countWait ? wait : 0) < 0.5 * wall && writing < 0.5 * wall) done(true);
      last = now;
      at = t;
      lastWrites = nowWrites;
    }, o.windowMs);
    const done = (bound: boolean) => {
      clearInterval(timer);
      resolve(bound);
    };
    until.then(
      () => done(false),
      () => done(false),
    );
  });
}

/**
 * Where a whole-archive download over one connection widens to parallel ranges (settings.widen). auto: once the
 * download proves bound by the network (networkBound: in a WIDEN_PROBE_MS window the main thread ran less than half
 * of the time, and the file had a write in flight less than half of it: a disk that holds the download back is not
 * helped by more connections), while at least WIDEN_MIN_REST is left and would take WIDEN_MIN_MS or more at the rate so far, at the
 * end of the chunk in hand. Unlike the overlap probe, time waiting for a CPU does not count as busy: on a shared
 * machine a download limited per connection still waits for one, and widening adds little CPU (the read-back of
 * the rest for its hash), where staying on one connection behind a per-connection limit costs three quarters of the
 * rate. never: one connection throughout. A number: at exactly that offset. No widenAt: ranges from the start.
 * `stayed` says why a download that did not widen stayed on one connection.
 */
export function widening(
  setting: FetchSettings['widen'],
  until: Promise<unknown>,
  writes?: WriteMeter,
): { widenAt?: StopAt; stayed: () => string | undefined } {
  if (setting === 0) return { stayed: () => undefined };
  if (setting === 'never') return { widenAt: () => undefined, stayed: () => 'ARTIFACT_RELAY_WIDEN=never' };
  if (typeof setting === 'number') {
    return {
      widenAt: (written, end, { total }) => (end >= setting && setting < total ? Math.max(written, setting) : undefined),
      stayed: () => `ARTIFACT_RELAY_WIDEN=${setting / 1024}`,
    };
  }
  let bound = false;
  void networkBound(until, { label: 'widen probe', windowMs: WIDEN_PROBE_MS, countWait: false, writes }).then((b) => {
    bound = b;
  });
  let first: { at: number; bytes: number } | undefined; // the first chunk: the rate is measured from it
  let why = 'not found bound by the network';
  return {
    widenAt: (written, end, { total }) => {
      const now = performance.now();
      first ??= { at: now, bytes: written };
      if (!bound) return undefined;
      const rest = total - end;
      const restMs = end > first.bytes ? (rest * (now - first.at)) / (end - first.bytes) : 0;
      if (rest >= WIDEN_MIN_REST && restMs >= WIDEN_MIN_MS) return end;
      why =
        rest < WIDEN_MIN_REST
          ? `bound by the network with under ${formatBytes(WIDEN_MIN_REST)} left`
          : `bound by the network, the rest under ${WIDEN_MIN_MS / 1000} s away`;
      return undefined;
    },
    stayed: () => why,
  };
}

/** How a whole-archive download is planned to go, for the log. */
export function plannedConnections(connections: number, widen: FetchSettings['widen']): string {
  if (widen === 0) return `${connections} connections`;
  if (widen === 'never') return '1 connection (ARTIFACT_RELAY_WIDEN=never)';
  if (widen === 'auto') return `1 connection, ${connections} if the download is bound by the network`;
  return `1 connection, ${connections} after ${formatBytes(widen)}`;
}
