// Runs the built bundle (dist/artifact-relay.mjs) as a child process, the way a CI job does.
// Async on purpose: the simulator lives in the test process and must keep serving meanwhile.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BUNDLE = fileURLToPath(new URL('../../dist/artifact-relay.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** What the bundle is built from (scripts/build.mjs): a change to any of these after the build means a stale dist/. */
function bundleInputs(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));
  return [...walk(join(ROOT, 'src')), join(ROOT, 'component.yml'), join(ROOT, 'scripts/build.mjs'), join(ROOT, 'package.json')];
}

let fresh = false;
/** Throws unless dist/artifact-relay.mjs exists and is newer than everything it is built from: never test a stale bundle. */
export function assertBundleFresh(): void {
  if (fresh) return;
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run npm run build first (npm test and npm run test:e2e do).`);
  const built = statSync(BUNDLE).mtimeMs;
  const newer = bundleInputs().filter((f) => statSync(f).mtimeMs > built);
  if (newer.length > 0) {
    throw new Error(
      `${BUNDLE} is older than ${newer.length} of its sources (${newer.slice(0, 3).join(', ')}${newer.length > 3 ? ', ...' : ''}): ` +
        'run npm run build first (npm test and npm run test:e2e do).',
    );
  }
  fresh = true;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout + stderr, in arrival order. */
  output: string;
}

/** A minimal CI-like environment: no INPUT_* or CI_* from the outer process leak in. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('INPUT_') || k.startsWith('CI_') || k.startsWith('GITLAB_') || /_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  env.ARTIFACT_RELAY_RETRY_BASE_MS = '20';
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs the bundle; `prefix` wraps it in another command (e.g. GNU time), which gets `node BUNDLE ...args`. */
export function runBundle(
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { cwd?: string; timeoutMs?: number; prefix?: string[] } = {},
): Promise<RunResult> {
  assertBundleFresh();
  const [command, ...argv] = [...(opts.prefix ?? []), process.execPath, BUNDLE, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(command!, argv, { env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let output = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      output += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      output += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, output });
    });
  });
}
