// Cleanup that must also run when the job is cancelled: GitLab Runner sends SIGTERM (then SIGKILL),
// and a `finally` block does not run on process.exit. Temporary folders register here.
import { rmSync } from 'node:fs';

const pending = new Set<string>();

/** Removes `path` if the process is interrupted before `release` is called. */
export function removeOnInterrupt(path: string): () => void {
  pending.add(path);
  return () => pending.delete(path);
}

export function installSignalHandlers(onSignal: (signal: NodeJS.Signals) => void): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const path of pending) rmSync(path, { recursive: true, force: true });
      onSignal(signal);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}
