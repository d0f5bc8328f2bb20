// What bench/run.ts and bench/ranged.ts share: running commands under GNU time, the cached archives of
// bench/gen-zip.py, tree checks, the machine line, medians and formatting, and writing a marked README section.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = fileURLToPath(new URL('..', import.meta.url));
export const TOKEN = 'glpat-bench-token-0123456789';
export const cacheDir = join(os.tmpdir(), 'artifact-relay-bench');
export const BUNDLE = join(repo, 'dist/artifact-relay.mjs');
/**
 * Node as the image's artifact-relay wrapper runs it (Dockerfile), its environment (glibc's mmap threshold fixed; env
 * execs node, so the measured process is node's) and flags: measure what users run.
 */
export const NODE = ['env', 'MALLOC_MMAP_THRESHOLD_=131072', 'node', '--max-semi-space-size=1'];
/** The environment without CI and input variables, so each contender sees only what the bench passes. */
export const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => !k.startsWith('CI_') && !k.startsWith('INPUT_') && !k.startsWith('GITLAB_') && !k.startsWith('ARTIFACT_RELAY_'),
  ),
);

export interface Sample {
  wall: number;
  cpu: number;
  rssMB: number;
}

export function run(cmd: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; output: string }> {
  return new Promise((res, rej) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const add = (d: Buffer) => {
      output += d.toString();
      if (output.length > 1_000_000) output = output.slice(-100_000);
    };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    child.on('error', rej);
    child.on('close', (code) => res({ code: code ?? 1, output }));
  });
}

export async function must(cmd: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} exited ${r.code}:\n${r.output.slice(-5000)}`);
  return r.output;
}

let timedRuns = 0;
/**
 * Runs `cmd` under GNU time: wall, user+sys of it and its waited-for children, peak RSS of the largest process, and
 * the command's output.
 */
export async function timed(cmd: string[], cwd: string, runEnv: NodeJS.ProcessEnv): Promise<Sample & { output: string }> {
  const timeFile = join(cwd, '..', `${process.pid}-${++timedRuns}.time`);
  const r = await run(['/usr/bin/time', '-f', '%e %U %S %M', '-o', timeFile, ...cmd], { cwd, env: runEnv });
  if (r.code !== 0) throw new Error(`${cmd.join(' ')} exited ${r.code}:\n${r.output.slice(-5000)}`);
  const [wall, user, sys, rss] = (await readFile(timeFile, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number) as number[];
  await rm(timeFile, { force: true });
  return { wall: wall!, cpu: user! + sys!, rssMB: rss! / 1024, output: r.output };
}

export interface ArchiveInfo {
  bytes: number;
  entries: number;
  files: number;
  inflated: number;
  composition: Record<string, { files: number; bytes: number }>;
}

/** The archive of a shape (bench/gen-zip.py), generated once and cached in cacheDir. */
export async function ensureArchive(shape: string): Promise<{ zip: string; info: ArchiveInfo }> {
  await mkdir(cacheDir, { recursive: true });
  const zip = join(cacheDir, `shape-${shape}.zip`);
  if (!existsSync(zip) || !existsSync(`${zip}.json`)) {
    const t = performance.now();
    console.log(`generating the ${shape} archive in ${zip} ...`);
    const info = JSON.parse(await must(['python3', join(repo, 'bench/gen-zip.py'), shape, `${zip}.tmp`])) as ArchiveInfo;
    await writeFile(`${zip}.json`, JSON.stringify(info));
    await rename(`${zip}.tmp`, zip);
    console.log(`generated in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
  const info = JSON.parse(await readFile(`${zip}.json`, 'utf8')) as ArchiveInfo;
  info.bytes = (await stat(zip)).size;
  return { zip, info };
}

export async function treeStats(dir: string): Promise<{ files: number; bytes: number }> {
  const sizes = (await must(['find', dir, '-type', 'f', '-printf', '%s\\n'])).split('\n').filter(Boolean);
  return { files: sizes.length, bytes: sizes.reduce((a, s) => a + Number(s), 0) };
}

/** A comma-separated option as a list (the default when unset). */
export const list = (s: string | undefined, dflt: string) =>
  (s ?? dflt)
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
export const mib = (n: number) => (n / 1024 / 1024).toFixed(0);
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
export const fmt = (n: number | null | undefined, d = 2) => (n == null || Number.isNaN(n) ? '-' : n.toFixed(d));

export function machine(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GB RAM, Linux ${os.release()}, Node ${process.version}`;
}

/** Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->` in README.md with `md`. */
export async function writeReadmeSection(name: string, md: string): Promise<void> {
  const readmePath = join(repo, 'README.md');
  const text = await readFile(readmePath, 'utf8');
  const re = new RegExp(`(<!-- BEGIN ${name} -->\\n)[\\s\\S]*?(<!-- END ${name} -->)`);
  if (!re.test(text)) throw new Error(`${readmePath} has no <!-- BEGIN ${name} --> ... <!-- END ${name} --> section`);
  await writeFile(
    readmePath,
    text.replace(re, (_m, a: string, b: string) => `${a}${md}\n${b}`),
  );
  console.log(`updated the ${name} section of ${readmePath}`);
}
