// V8 settings that pay for a fetch, set at run time rather than on node's command line. Node ships a code cache for
// its own modules, made under V8's default flags; a flag that enters V8's flag hash (--expose-gc, --no-turbofan,
// --no-short-builtin-calls; not --max-semi-space-size) makes every entry of it unusable, and each built-in module a
// command loads (http, crypto, stream, zlib ...) is then compiled from source: a fetch of 20,480 small files started
// 20 ms later and used 30 ms more CPU with the three flags on the command line (6 alternating runs: 0.535 -> 0.51 s,
// 0.82 -> 0.795 s CPU).
// So the image's wrapper passes only --max-semi-space-size, and a command sets these once its modules are loaded.
import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (options?: { type: 'minor' | 'major' }) => void;

/**
 * Makes `globalThis.gc` (what --expose-gc gives) where there is none: with the flag set now, a new context yields
 * the function, and the unpacking threads, whose contexts are made later, have their own (batch.ts). The download's
 * GC pacing and the release of a runner's buffers use it (gc-pacing.ts, batch.ts). The flag stays set: unset again,
 * the threads would need the same trick, and several at once would race on the process's flags; set after the
 * command's modules are loaded it costs what leanerCompiles' flags cost already (modules loaded later, and the
 * threads' own start, compile without Node's cache).
 */
export function exposeGc(): void {
  const g = globalThis as { gc?: Gc };
  if (typeof g.gc === 'function') return;
  v8.setFlagsFromString('--expose-gc');
  g.gc = vm.runInNewContext('gc') as Gc;
}

/**
 * Once a command's modules are loaded:
 * - No Turbofan where Maglev is there to be the top tier (V8 12 on, Node 22 on): a run is too short for Turbofan's
 *   compiles to pay for themselves (small: 0.05 s of 0.9 s CPU), and its code in the node binary is 5 MB of peak RSS
 *   once paged in (many83k paced 102 -> 97 MB). The cost: many300k 2.25 -> 2.65 s, still faster than bsdtar's 3.7 s.
 * - No short builtin calls for the isolates made from now on (the unpacking threads): V8 would copy its 2 MB of
 *   builtins next to each one's code, all of it resident.
 */
export function leanerCompiles(): void {
  if (Number(process.versions.v8.split('.')[0]) >= 12) v8.setFlagsFromString('--no-turbofan');
  v8.setFlagsFromString('--no-short-builtin-calls');
}

/** Both, for a command whose modules are loaded. */
export function tuneV8(): void {
  exposeGc();
  leanerCompiles();
}
