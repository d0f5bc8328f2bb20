// Body chunks die young but keep their bytes outside the JS heap: each 64 KiB socket read, and the HTTP parser's copy
// of the body in it, about 128 KiB per 64 KiB received, are freed only by a young-generation GC. V8 runs one when its
// young generation (1 MB under the image's wrapper) is full, which the few objects made per chunk fill only every
// 7 MB or so received: some 12-16 MB of chunks pile up in malloc's heap between two, and the heap keeps that size for
// the rest of the run (the unpacking threads start on top of it). Where the process has gc (a command takes it at
// run time: src/runtime/v8-flags.ts), a minor GC every COLLECT_EVERY bytes received keeps the pile at a few MiB:
// fetching the 2 GB archive of 83,000 entries, the process held 41-42 MB of anonymous memory while downloading with
// none or one every 4 MiB, 32 MB with one every 2 MiB, 30 MB with 1 MiB. Over 4 connections from storage paced at 100 MiB/s each, its
// peak RSS was 96-104 MB with one every 2 MiB and 97-99 MB with 1 MiB (4 runs each; +0.1 s CPU on 1.9 GiB). A minor
// GC of so young a generation takes about 0.1 ms: on a 2 GiB download some 2,000 of them.
const COLLECT_EVERY = 1024 * 1024;

export type Collect = (options: { type: 'minor' }) => void;

/** Counts body bytes received; asks for a minor GC each COLLECT_EVERY of them, where node has gc (v8-flags.ts). */
export class GcPacer {
  private received = 0;

  bodyReceived(bytes: number, gc: Collect | undefined = (globalThis as { gc?: Collect }).gc): void {
    if (!gc) return;
    this.received += bytes;
    if (this.received < COLLECT_EVERY) return;
    this.received = 0;
    gc({ type: 'minor' });
  }
}

/** The process's pacer: every download's bodies count together (they fill the one young generation). */
export const bodyPacer = new GcPacer();

/**
 * A full GC where node has gc (v8-flags.ts), at a point where much has just died that survived to the old generation:
 * the central directory's raw bytes once it is parsed and planned (some 8 MB on 83,000 entries, with the parse's
 * garbage), which a process making as few objects as this one would keep through the unpacking. About 5 ms.
 */
export function collectOldGarbage(gc: (() => void) | undefined = (globalThis as { gc?: () => void }).gc): void {
  gc?.();
}
