// Cleanup that must also run when the job is cancelled: GitLab Runner sends SIGTERM (then SIGKILL), a terminal
// SIGINT or SIGHUP, and a `finally` block does not run on process.exit. Temporary folders register here.
//
// While the commit moves files into the destination (a critical section), a signal does not exit at once: the commit
// sees it after the step in flight, rolls back, and the process exits when the section ends. The message printed
// then says what is true about the destination.
import { rmSync } from 'node:fs';

const HANDLED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type HandledSignal = (typeof HANDLED_SIGNALS)[number];
const EXIT_CODES: Record<HandledSignal, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

/** What an interruption leaves: the destination as it was, fully updated, or (a failed rollback) partly updated. */
export type DestinationState = { state: 'unchanged' } | { state: 'updated' } | { state: 'damaged'; detail: string };

const pending = new Set<string>();
let critical = 0;
let received: HandledSignal | undefined;
let destination: DestinationState = { state: 'unchanged' };
let waiters: ((s: HandledSignal) => void)[] = [];
let report: ((signal: HandledSignal, destination: DestinationState) => void) | undefined;

/** Removes `path` if the process is interrupted before `release` is called. */
export function removeOnInterrupt(path: string): () => void {
  pending.add(path);
  return () => pending.delete(path);
}

/** Stops removing `path` on interruption (a failed rollback keeps its journal there for recovery). */
export function keepOnInterrupt(path: string): void {
  pending.delete(path);
}

/** The signal received so far, if any. */
export function interruptedBy(): HandledSignal | undefined {
  return received;
}

/** Resolves when a handled signal arrives (test hooks pause on it; see staging.ts). */
export function waitForSignal(): Promise<HandledSignal> {
  if (received) return Promise.resolve(received);
  // A pending promise alone does not keep the process alive: a timer does, until the signal comes.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  return new Promise((resolve) =>
    waiters.push((s) => {
      clearInterval(keepAlive);
      resolve(s);
    }),
  );
}

/** Records what an interruption would leave in the destination (the commit keeps it true at every step). */
export function noteDestination(state: DestinationState): void {
  destination = state;
}

function exitNow(signal: HandledSignal): never {
  for (const path of pending) {
    try {
      rmSync(path, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // The next run removes what is left (staging.ts recoverInterrupted).
    }
  }
  report?.(signal, destination);
  process.exit(EXIT_CODES[signal]);
}

/**
 * Enters a section in which signals are only recorded (interruptedBy); the returned function leaves it, and exits
 * with the signal's code when one arrived meanwhile.
 */
export function enterCritical(): () => void {
  critical += 1;
  let left = false;
  return () => {
    if (left) return;
    left = true;
    critical -= 1;
    if (critical === 0 && received && report) exitNow(received);
  };
}

export function installSignalHandlers(onSignal: (signal: HandledSignal, destination: DestinationState) => void): void {
  report = onSignal;
  for (const signal of HANDLED_SIGNALS) {
    process.on(signal, () => {
      if (received) return; // a second signal while rolling back: the first one is being handled
      received = signal;
      const w = waiters;
      waiters = [];
      for (const resolve of w) resolve(signal);
      if (critical === 0) exitNow(signal);
    });
  }
}

/** The log line for an interruption, true to what the destination holds. */
export function describeInterruption(signal: HandledSignal, d: DestinationState): string {
  if (d.state === 'updated') return `Interrupted by ${signal} after the destination was updated; temporary files removed.`;
  if (d.state === 'damaged') return `Interrupted by ${signal}, and the rollback of the commit failed: ${d.detail}`;
  return `Interrupted by ${signal}: temporary files removed, the destination is unchanged.`;
}
