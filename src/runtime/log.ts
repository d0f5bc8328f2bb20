// Logging through consola, with GitLab collapsible sections and secret masking.
// Every line the tool prints goes through `redact`, so a token never reaches the job log in any form.
import { createConsola, type ConsolaReporter, type LogObject } from 'consola/core';
import { readFileSync } from 'node:fs';
import { formatWithOptions } from 'node:util';

const secrets = new Set<string>();

/**
 * The base64 text of `value` as it appears inside a longer base64 string, at each of the three alignments
 * (0, 1 or 2 bytes before it, as in `user:token` Basic credentials), without the characters that depend on the
 * neighbouring bytes or on padding. Each is a substring of any base64 encoding that holds the value.
 */
function base64Cores(value: Buffer, alphabet: 'base64' | 'base64url'): string[] {
  const cores: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const text = Buffer.concat([Buffer.alloc(shift), value])
      .toString(alphabet)
      .replace(/=+$/, '');
    // Characters fully determined by the value: from the first sextet after the shift bytes, to the last whole one.
    const first = Math.ceil((shift * 8) / 6);
    const last = Math.floor(((shift + value.length) * 8) / 6);
    const core = text.slice(first, last);
    if (core.length >= 8) cores.push(core);
  }
  return cores;
}

/**
 * Every form of a secret that a server or proxy could plausibly echo back: raw, URL-encoded (upper- and
 * lower-case hex, form encoding), JSON-escaped (also with `\/`), hex (lower and upper), and base64 and base64url
 * with or without padding at any alignment, which covers base64 of `user:token` (HTTP Basic credentials).
 */
function secretForms(value: string): string[] {
  const bytes = Buffer.from(value);
  const url = encodeURIComponent(value);
  const json = JSON.stringify(value).slice(1, -1);
  const forms = [
    value,
    url,
    url.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    url.replace(/%20/g, '+'),
    json,
    json.replace(/\//g, '\\/'),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    ...base64Cores(bytes, 'base64'),
    ...base64Cores(bytes, 'base64url'),
  ];
  return [...new Set(forms)].filter((f) => f.length >= 4);
}

/** Registers a secret: it and every form secretForms lists are masked in all later output. */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < 4) return;
  for (const form of secretForms(value)) secrets.add(form);
}

export function redact(text: string): string {
  let out = text;
  // Longest first, so a form that contains another is masked whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (out.includes(s)) out = out.split(s).join('[MASKED]');
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

const MB = (n: number) => (n / 1024 / 1024).toFixed(1);

/** Under ARTIFACT_RELAY_DEBUG: the process's memory at a phase boundary (peak RSS so far, heap, buffers). */
export function memoryMark(phase: string): void {
  if (logger.level < 4) return;
  const m = process.memoryUsage();
  let kinds = '';
  try {
    // Linux: what the RSS is made of (anonymous memory, mapped files, shared memory).
    const status = readFileSync('/proc/self/status', 'utf8');
    kinds = ` = ${['RssAnon', 'RssFile', 'RssShmem'].map((k) => `${k.slice(3).toLowerCase()} ${MB(Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024)}`).join(' + ')}`;
  } catch {
    // not Linux
  }
  // The time since the process started and the CPU it has used: where a run's time goes, phase by phase.
  const cpu = process.cpuUsage();
  const at = `${(performance.now() / 1000).toFixed(3)} s, CPU ${((cpu.user + cpu.system) / 1e6).toFixed(3)} s`;
  logger.debug(
    `memory ${phase} (${at}): rss ${MB(m.rss)} MB${kinds} (peak ${MB(process.resourceUsage().maxRSS * 1024)}), heap ${MB(m.heapUsed)}/${MB(m.heapTotal)} MB, external ${MB(m.external)} MB (array buffers ${MB(m.arrayBuffers)})`,
  );
}
