// A small GitLab world for end-to-end tests: an upstream project with a build job whose archive is made by a
// real archiver, a downstream project whose running job holds a job token, and a CI-like env for the bundle.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { startSimulator, type Job, type ProfileName, type Project, type Simulator } from '../simulator/index.ts';
import { pythonZip, type SpecEntry } from './archives.ts';
import { cleanEnv } from './run.ts';

export const JOB_TOKEN = 'glcbt-64_e2eJobTokenValue0123456789abcdef';
export const PRIVATE_TOKEN = 'glpat-e2ePrivateTokenValue0123456789';
export const OAUTH_TOKEN = 'e2eOauthTokenValue0123456789abcdefabcdef';

export const BUILD_ENTRIES: SpecEntry[] = [
  { name: 'dist/', type: 'dir', mode: 0o755 },
  { name: 'dist/app', data: '#!/bin/sh\necho app\n', mode: 0o755 },
  { name: 'dist/config.json', data: '{"version":"1.0.0"}\n', mode: 0o644 },
  { name: 'dist/private.key', data: 'not really a key\n', mode: 0o600 },
  { name: 'reports/build.log', data: Array.from({ length: 3000 }, (_, i) => `line ${i}: compiled module ${i}\n`).join(''), mode: 0o644 },
  { name: 'current', type: 'symlink', target: 'dist/app' },
];

export interface World {
  sim: Simulator;
  dir: string;
  workspace: string;
  upstream: Project;
  downstream: Project;
  /** The running downstream job that owns JOB_TOKEN. */
  deployJob: Job;
  /** Latest successful build on main. */
  build: Job;
  oldBuild: Job;
  archive: string;
  archiveSha256: string;
  env(extra?: Record<string, string | undefined>): NodeJS.ProcessEnv;
  zip(name: string, entries: SpecEntry[]): string;
  close(): Promise<void>;
}

export async function startWorld(opts: { downloadMode?: 'redirect' | 'proxy' | 'local'; profile?: ProfileName } = {}): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'artifact-relay-e2e-'));
  const workspace = join(dir, 'workspace');
  mkdirSync(workspace);
  const sim = await startSimulator({ downloadMode: opts.downloadMode ?? 'redirect', profile: opts.profile ?? 'newest' });
  const zip = (name: string, entries: SpecEntry[]) => pythonZip(join(dir, name), entries);
  const archive = zip('build.zip', BUILD_ENTRIES);
  const oldArchive = zip('old.zip', [{ name: 'dist/app', data: 'OLD BUILD\n', mode: 0o755 }]);

  const downstream = sim.addProject({ path: 'grp/deploy' });
  const upstream = sim.addProject({ path: 'grp/app', jobTokenAllowlist: [downstream.id] });
  const oldPipeline = sim.addPipeline({ projectId: upstream.id, ref: 'main', status: 'success' });
  const oldBuild = sim.addJob({ pipelineId: oldPipeline.id, name: 'build', status: 'success', archive: oldArchive });
  const pipeline = sim.addPipeline({ projectId: upstream.id, ref: 'main', status: 'success' });
  const build = sim.addJob({ pipelineId: pipeline.id, name: 'build', status: 'success', archive });
  const deployPipeline = sim.addPipeline({ projectId: downstream.id, ref: 'main', status: 'running', source: 'pipeline' });
  const deployJob = sim.addJob({ pipelineId: deployPipeline.id, name: 'deploy', status: 'running' });
  sim.addJobToken(JOB_TOKEN, deployJob.id);
  sim.addAccessToken(PRIVATE_TOKEN, { kind: 'project', role: 'maintainer', scopes: ['api'] });
  sim.addAccessToken(OAUTH_TOKEN, { kind: 'oauth', role: 'developer', scopes: ['api'] });

  return {
    sim,
    dir,
    workspace,
    upstream,
    downstream,
    deployJob,
    build,
    oldBuild,
    archive,
    archiveSha256: createHash('sha256').update(readFileSync(archive)).digest('hex'),
    zip,
    env: (extra = {}) =>
      cleanEnv({
        CI: 'true',
        CI_SERVER_URL: sim.url,
        CI_API_V4_URL: sim.apiUrl,
        CI_JOB_TOKEN: JOB_TOKEN,
        CI_PROJECT_ID: String(downstream.id),
        CI_PROJECT_DIR: workspace,
        ARTIFACT_RELAY_POLL_MS: '100',
        ...extra,
      }),
    close: async () => {
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A world for the enclosing describe(): started before its tests, closed after them. The returned object is filled
 * in by the before hook, so use it only inside tests and later hooks.
 */
export function useWorld(opts: Parameters<typeof startWorld>[0] = {}): World {
  const world = {} as World;
  before(async () => {
    Object.assign(world, await startWorld(opts));
  });
  after(() => world.close());
  return world;
}

/** Every header value any request to `origin` carried for the token headers. */
export function tokenHeadersSeen(sim: Simulator, origin: 'gitlab' | 'storage'): string[] {
  return sim.requests
    .filter((r) => r.origin === origin)
    .flatMap((r) =>
      [r.headers['job-token'], r.headers['private-token'], r.headers.authorization].filter((v) => v !== undefined).map(String),
    );
}
