// Logging through consola, with GitLab collapsible sections and secret masking.
// Every line the tool prints goes through `redact`, so a token never reaches the job log in any form.
import { createConsola, type ConsolaReporter, type LogObject } from 'consola';
import { formatWithOptions } from 'node:util';

const secrets = new Set<string>();

/** Registers a secret: it and its URL-encoded and base64 forms are masked in all later output. */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < 4) return;
  for (const form of [value, encodeURIComponent(value), Buffer.from(value).toString('base64')]) secrets.add(form);
}

export function redact(text: string): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join('[MASKED]');
  return out;
}

const PREFIX: Record<string, string> = {
  fatal: 'ERROR: ',
  error: 'ERROR: ',
  warn: 'WARNING: ',
  success: '',
  info: '',
  log: '',
  start: '',
  ready: '',
  box: '',
  debug: '[debug] ',
  trace: '[trace] ',
  verbose: '[debug] ',
};

const reporter: ConsolaReporter = {
  log(logObj: LogObject) {
    const text = formatWithOptions({ colors: false }, ...logObj.args);
    const line = redact(`${PREFIX[logObj.type] ?? ''}${text}`);
    const stream = logObj.level <= 1 ? process.stderr : process.stdout;
    stream.write(`${line}\n`);
  },
};

/** Level 3 (info); main.ts raises it to 4 (debug) under ARTIFACT_RELAY_DEBUG. */
export const logger = createConsola({
  reporters: [reporter],
  level: 3,
});

const ESC = '\u001b[0K';
let sectionCounter = 0;

/** Runs `fn` inside a GitLab collapsible log section (markers are plain text outside GitLab). */
export async function section<T>(title: string, fn: () => Promise<T>, collapsed = true): Promise<T> {
  const name = `artifact_relay_${++sectionCounter}_${title
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '_')
    .slice(0, 40)}`;
  const now = () => Math.floor(Date.now() / 1000);
  process.stdout.write(`${ESC}section_start:${now()}:${name}${collapsed ? '[collapsed=true]' : ''}\r${ESC}${redact(title)}\n`);
  try {
    return await fn();
  } finally {
    process.stdout.write(`${ESC}section_end:${now()}:${name}\r${ESC}\n`);
  }
}

/** Formats a byte count for humans: 1.5 MiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
