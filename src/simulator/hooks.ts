// Request-count hooks: a test says "on the Nth request matching this, change the world" (a child pipeline
// appears, a trigger job gets its downstream pipeline). Keyed on request counts, never on timers, so a test
// that waits for something to appear after a few polls is deterministic.
export interface RequestHook {
  method?: string;
  /** Prefix of the raw path, or a pattern. */
  path: string | RegExp;
  /** Runs when the Nth matching request arrives (1 = the first), before the request is answered. */
  onCount: number;
  run: () => void;
}

interface ArmedHook extends RequestHook {
  seen: number;
  done: boolean;
}

export class Hooks {
  private list: ArmedHook[] = [];

  add(h: RequestHook): void {
    this.list.push({ ...h, seen: 0, done: false });
  }

  clear(): void {
    this.list = [];
  }

  /** Counts the request against every armed hook and runs the ones whose count it reaches. */
  observe(method: string, path: string): void {
    for (const h of this.list) {
      if (h.done || (h.method && h.method.toUpperCase() !== method.toUpperCase())) continue;
      if (!(typeof h.path === 'string' ? path.startsWith(h.path) : h.path.test(path))) continue;
      h.seen += 1;
      if (h.seen >= h.onCount) {
        h.done = true;
        h.run();
      }
    }
  }
}
