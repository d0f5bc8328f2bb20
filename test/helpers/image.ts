// Builds and runs the artifact-relay container image with podman (no Docker engine, no registry pulls: the
// base is made locally by scripts/image/make-base.sh). scripts/image/setup-podman.sh says why the flags.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const IMAGE = process.env.ARTIFACT_RELAY_IMAGE || 'localhost/artifact-relay:test';
/** Flags every `podman run` needs in this sandbox (hybrid cgroups, no CAP_SYS_RESOURCE). */
const RUN_FLAGS = ['--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1000:1000'];

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

let built: Promise<{ image: string; sizeBytes: number; seconds: number }> | undefined;

/**
 * Builds the image once per test process with scripts/image/build.sh (which installs podman when missing,
 * makes or reuses the cached base and lets podman's layer cache skip unchanged steps). Throws with the
 * build log when anything fails: the image test must never pass or skip silently without an image.
 */
export function buildImage(): Promise<{ image: string; sizeBytes: number; seconds: number }> {
  built ??= (async () => {
    const start = Date.now();
    const r = await run('bash', ['scripts/image/build.sh', IMAGE]);
    if (r.status !== 0) throw new Error(`scripts/image/build.sh failed (exit ${r.status}):\n${r.stderr.slice(-6000)}\n${r.stdout}`);
    const m = /image-size-bytes (\d+)/.exec(r.stdout);
    if (!m) throw new Error(`no image size in build output:\n${r.stdout}`);
    return { image: IMAGE, sizeBytes: Number(m[1]), seconds: (Date.now() - start) / 1000 };
  })();
  return built;
}

/** podman run --rm with the sandbox flags; `args` go after them (options, image, command). */
export function podmanRun(args: string[], timeoutMs = 120_000): Promise<Result> {
  return run('podman', ['run', '--rm', ...RUN_FLAGS, ...args], { timeoutMs });
}

/** Fails with a clear message when podman cannot start a container at all. */
export async function assertPodmanWorks(image: string): Promise<void> {
  const r = await podmanRun([image, '/bin/sh', '-c', 'true']);
  if (r.status !== 0) {
    throw new Error(
      `podman cannot start a container from ${image} (exit ${r.status}). The image test needs a working podman ` +
        `(runc runtime, see scripts/image/setup-podman.sh). stderr:\n${r.stderr}`,
    );
  }
}
