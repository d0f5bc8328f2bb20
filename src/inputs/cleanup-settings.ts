// Turns the raw cleanup inputs into a typed CleanupSettings object. The refusals that protect a scheduled job
// from deleting everything, or from trying with a token that cannot delete, happen here: before any request.
import { resolve } from 'node:path';
import { UsageError } from '../runtime/errors.ts';
import { bool, list, num, parseBytes, str, type RawInputs } from './parse.ts';
import { readConnectionSettings, type ConnectionSettings } from './settings.ts';

export interface CleanupPolicy {
  /** Jobs that finished before this instant are candidates (ISO string in the report). */
  olderThan?: Date;
  olderThanInput: string;
  keepLatest: number;
  keepTags: boolean;
  keepRefs: string[];
  jobs: string[];
  excludeJobs: string[];
  minSize: number;
  /** Also delete artifacts without an expiry date (kept, or expire_in never): src/cleanup/kept.ts. */
  deleteKept: boolean;
}

export interface CleanupSettings extends ConnectionSettings {
  projects: string[];
  group?: string;
  /** Every project of the instance (administrator token). */
  instance: boolean;
  /** This job's share of the projects (parallel jobs); undefined: all. */
  shard?: { index: number; total: number };
  /** Markdown storage report path. */
  storageReport?: string;
  excludeProjects: string[];
  policy: CleanupPolicy;
  expireAll: boolean;
  dryRun: boolean;
  concurrency: number;
  /** A deletion slower than this steps the pace down (ARTIFACT_RELAY_SLOW_MS, default 5000; tests shrink it). */
  slowDeleteMs: number;
  report?: string;
  dotenv?: string;
  baseDir: string;
}

const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `30d`, `12h`, `2w`, `90m` (an age before now) or an ISO date/time. */
function parseOlderThan(text: string, now: Date): Date | undefined {
  const age = /^(\d+)\s*([mhdw])$/.exec(text.trim());
  if (age) return new Date(now.getTime() - Number(age[1]) * UNIT_MS[age[2]]);
  if (/^\d{4}-\d{2}-\d{2}/.test(text.trim())) {
    const date = new Date(text.trim());
    return Number.isNaN(date.getTime()) ? undefined : date;
  }
  return undefined;
}

/** `2/4` (GitLab's CI_NODE_INDEX/CI_NODE_TOTAL); '' or '/' (not a parallel job) is every project. */
export function parseShard(text: string): { index: number; total: number } | undefined {
  if (text === '' || text === '/') return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(text);
  const index = Number(m?.[1]);
  const total = Number(m?.[2]);
  if (!m || total < 1 || total > 200 || index < 1 || index > total) {
    throw new UsageError(
      `Input shard: ${JSON.stringify(text)} is not index/total with 1 <= index <= total <= 200 (such as 2/4, GitLab's CI_NODE_INDEX/CI_NODE_TOTAL).`,
      'shard',
    );
  }
  return total === 1 ? undefined : { index, total };
}

export function readCleanupSettings(raw: RawInputs, env: NodeJS.ProcessEnv, cwd = process.cwd(), now = new Date()): CleanupSettings {
  const baseDir = env.CI_PROJECT_DIR?.trim() || cwd;
  const token = str(raw, 'token');
  if (!token) {
    throw new UsageError(
      'Input token is empty. Cleanup deletes artifacts, which needs a project, group or personal access token with the api scope and the Maintainer role; pass it as a masked CI/CD variable (token: $CLEANUP_TOKEN).',
      'token',
    );
  }
  const connection = readConnectionSettings(raw, env, baseDir);
  if (connection.tokenType === 'job') {
    throw new UsageError(
      'Input token is a CI/CD job token, and GitLab never accepts job tokens for deleting artifacts. Use a project or group access token with the api scope and the Maintainer role (Settings > Access tokens), stored in a masked variable.',
      'token',
    );
  }

  const olderThanInput = str(raw, 'older_than');
  const expireAll = bool(raw, 'expire_all');
  const policyInputs = ['older_than', 'keep_refs', 'job', 'exclude_job', 'min_size', 'keep_latest', 'keep_tags', 'delete_kept'].filter(
    (n) => raw.sources[n] !== 'default',
  );
  if (expireAll && policyInputs.length > 0) {
    throw new UsageError(
      `Input expire_all expires everything unlocked at once and cannot be combined with the policy inputs (${policyInputs.join(', ')}). Use one or the other.`,
      'expire_all',
    );
  }
  if (!expireAll && !olderThanInput) {
    throw new UsageError(
      'Input older_than is empty and expire_all is false: refusing to run a cleanup without an age limit, so that a scheduled job never deletes everything by accident. Set older_than (30d, 12h, 2w or a date such as 2026-01-31), or expire_all: true to expire everything.',
      'older_than',
    );
  }
  const olderThan = olderThanInput ? parseOlderThan(olderThanInput, now) : undefined;
  if (olderThanInput && !olderThan) {
    throw new UsageError(
      `Input older_than: ${JSON.stringify(olderThanInput)} is neither an age (30d, 12h, 2w, 90m) nor an ISO date (2026-01-31).`,
      'older_than',
    );
  }
  const minSize = parseBytes(str(raw, 'min_size') || '0');
  if (minSize === undefined) throw new UsageError('Input min_size must be a size such as 10MB or 0.', 'min_size');
  const concurrency = num(raw, 'concurrency');
  if (!(concurrency >= 1 && concurrency <= 16)) throw new UsageError('Input concurrency must be between 1 and 16.', 'concurrency');

  const group = str(raw, 'group') || undefined;
  let projects = list(raw, 'project');
  const instance = bool(raw, 'instance');
  if (instance && (group || projects.length > 0)) {
    throw new UsageError(
      `Input instance cleans every project of the instance and cannot be combined with ${group ? 'group' : 'project'}. Use one scope: project, group, or instance.`,
      'instance',
    );
  }
  const shard = parseShard(str(raw, 'shard'));
  if (projects.length === 0 && !group && !instance) {
    const own = env.CI_PROJECT_ID?.trim();
    if (!own)
      throw new UsageError(
        'Inputs project and group are empty and $CI_PROJECT_ID is not set. Pass project (IDs or paths) or group.',
        'project',
      );
    projects = [own];
  }
  for (const p of projects) {
    if (/^\/|\/$|\/\/|\s/.test(p))
      throw new UsageError(`Input project: ${JSON.stringify(p)} is neither a numeric ID nor a full path like group/project.`, 'project');
  }
  const reportPath = str(raw, 'report');
  return {
    ...connection,
    projects,
    group,
    instance,
    ...(shard ? { shard } : {}),
    storageReport: str(raw, 'storage_report') ? resolve(baseDir, str(raw, 'storage_report')) : undefined,
    excludeProjects: list(raw, 'exclude_project'),
    policy: {
      olderThan,
      olderThanInput,
      keepLatest: Math.floor(num(raw, 'keep_latest')),
      keepTags: bool(raw, 'keep_tags'),
      keepRefs: list(raw, 'keep_refs'),
      jobs: list(raw, 'job'),
      excludeJobs: list(raw, 'exclude_job'),
      minSize,
      deleteKept: bool(raw, 'delete_kept'),
    },
    expireAll,
    dryRun: bool(raw, 'dry_run'),
    concurrency: Math.floor(concurrency),
    slowDeleteMs: Number(env.ARTIFACT_RELAY_SLOW_MS) || 5000,
    report: reportPath ? resolve(baseDir, reportPath) : undefined,
    dotenv: str(raw, 'dotenv') ? resolve(baseDir, str(raw, 'dotenv')) : undefined,
    baseDir,
  };
}
