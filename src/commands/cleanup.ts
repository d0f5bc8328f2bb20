// `artifact-relay cleanup`: list every job of the selected projects (keyset pagination, newest first), apply the
// policy, delete the selected jobs' artifacts a few at a time, and report what was freed.
import { createGitLabClient, type GitLabClient } from '../api/client.ts';
import { encodeProject } from '../api/urls.ts';
import { KEPT_REASON } from '../cleanup/kept.ts';
import { hasArchive } from '../api/entities.ts';
import { applyPolicy } from '../cleanup/policy.ts';
import { httpStatus, RelayError } from '../runtime/errors.ts';
import type { CleanupSettings } from '../inputs/cleanup-settings.ts';
import { version } from '../inputs/spec.ts';
import { formatBytes, logger, section } from '../runtime/log.ts';
import { dotenvValue, writeAtomic } from '../outputs/summary.ts';
import { jobNameMatcher } from '../sources/match.ts';
import type { GitLabJob } from '../api/entities.ts';
import { AdaptivePace, runPaced } from '../cleanup/pace.ts';
import {
  addTally,
  buildStorageReport,
  DELETE_FAILED,
  DELETED,
  type ReasonTally,
  type StorageReport,
  storageMarkdown,
  WOULD_DELETE,
} from '../cleanup/report.ts';
import { inShard } from '../cleanup/shards.ts';

interface Project {
  id: number;
  path_with_namespace: string;
  /** With statistics=true, for Reporter and up. */
  statistics?: { job_artifacts_size?: number };
  archived?: boolean;
}

/** A project the cleanup left alone, and why. */
interface SkippedProject {
  project_id: number;
  path: string;
  reason: string;
}

interface ProjectReport {
  project_id: number;
  path: string;
  jobs_seen: number;
  deleted: number[];
  kept: number;
  bytes_freed: number;
  failed: { job_id: number; status: number | null; message: string }[];
  expire_all?: 'queued' | 'would queue';
  /** job_artifacts_size from the project's statistics, when GitLab gave it. */
  artifact_bytes: number | null;
  /** Not listed: its statistics show no artifacts at all. */
  skipped?: string;
  /** Jobs and bytes per policy reason (deleted, or why kept). */
  by_reason: Record<string, ReasonTally>;
}

export interface CleanupReport {
  dry_run: boolean;
  policy: Record<string, unknown>;
  /** index/total of this parallel job, when sharded. */
  shard: { index: number; total: number } | null;
  projects: ProjectReport[];
  /** Projects listed or named but not cleaned: outside the group, archived, or excluded. */
  skipped: SkippedProject[];
  totals: { jobs: number; bytes: number; failed: number };
  /** Deletion pace: the 429s seen and the limit's changes (the last 100). */
  pace: { cap: number; final: number; rate_limited: number; changes: { from: number; to: number; why: string }[] };
  storage: StorageReport;
}

const statusOf = (err: unknown) => httpStatus(err) ?? null;

/** Instance scope: only an administrator's token lists every project (GET /user says is_admin only to them). */
async function instanceProjects(client: GitLabClient): Promise<Project[]> {
  const { body: user } = await client.getJson<{ username?: string; is_admin?: boolean }>('/user');
  if (user.is_admin !== true) {
    throw new RelayError(
      `Input instance needs an administrator's token, and the token's user ${user.username ?? '(unknown)'} is not an administrator.`,
      'Use a personal access token of an instance administrator with the api scope (project and group access tokens are never administrators), or clean by group.',
    );
  }
  const projects: Project[] = [];
  const collect = async (query: Record<string, string | number | boolean>) => {
    for await (const page of client.paginate<Project>('/projects', { ...query, statistics: true, per_page: 100 })) projects.push(...page);
  };
  try {
    // Keyset pagination: offset pagination of GET /projects stops at GitLab's maximum offset on large instances.
    await collect({ pagination: 'keyset', order_by: 'id', sort: 'desc' });
  } catch (err) {
    if (statusOf(err) !== 400 && statusOf(err) !== 405) throw err;
    projects.length = 0;
    await collect({ order_by: 'id', sort: 'asc' });
  }
  logger.info(`Instance scope: ${projects.length} project(s) listed with an administrator's token.`);
  return projects;
}

/**
 * The projects to clean. A group's listing (lib/api/groups.rb) also holds projects *shared with* the group, which
 * live in other namespaces, unless with_shared=false: we pass it, and keep only projects whose path is under the
 * group's full path as well, so a schedule never deletes another namespace's artifacts. Archived projects are
 * read-only in GitLab and are skipped (named in the report); unarchive one to clean it.
 */
async function resolveProjects(client: GitLabClient, settings: CleanupSettings): Promise<{ chosen: Project[]; skipped: SkippedProject[] }> {
  const projects = new Map<number, Project>();
  const skipped: SkippedProject[] = [];
  const skip = (p: Project, reason: string) => {
    skipped.push({ project_id: p.id, path: p.path_with_namespace, reason });
    logger.info(`Skipping ${p.path_with_namespace}: ${reason}.`);
  };
  for (const p of settings.projects) {
    const { body } = await client.getJson<Project>(`/projects/${encodeProject(p)}`, { statistics: true });
    projects.set(body.id, body);
  }
  if (settings.group) {
    const { body: group } = await client.getJson<{ id: number; full_path: string }>(`/groups/${encodeProject(settings.group)}`);
    const prefix = `${group.full_path.toLowerCase()}/`;
    for await (const page of client.paginate<Project>(`/groups/${group.id}/projects`, {
      include_subgroups: true,
      statistics: true,
      with_shared: false,
      per_page: 100,
      order_by: 'id',
      sort: 'asc',
    })) {
      for (const p of page) {
        if (projects.has(p.id)) continue;
        if (!p.path_with_namespace.toLowerCase().startsWith(prefix)) {
          skip(p, `outside group ${group.full_path} (a project shared with the group); name it in project to clean it`);
          continue;
        }
        projects.set(p.id, p);
      }
    }
  }
  if (settings.instance) for (const p of await instanceProjects(client)) projects.set(p.id, p);
  const excluded = settings.excludeProjects.map(jobNameMatcher);
  const kept: Project[] = [];
  for (const p of projects.values()) {
    if (excluded.some((m) => m(p.path_with_namespace))) skip(p, 'excluded by exclude_project');
    else if (p.archived) skip(p, 'archived (read-only in GitLab; unarchive it to clean it)');
    else kept.push(p);
  }
  const chosen = kept.filter((p) => inShard(p.id, settings.shard)).sort((a, b) => a.id - b.id);
  const shard = settings.shard ? ` (shard ${settings.shard.index}/${settings.shard.total}: ${chosen.length} of ${kept.length})` : '';
  logger.info(`${chosen.length} project(s) to clean${shard}${skipped.length ? `, ${skipped.length} skipped` : ''}.`);
  return { chosen, skipped };
}

/** Every job of the project, newest first: keyset pagination where GitLab offers it (15.9+), else pages. */
async function listJobs(client: GitLabClient, project: Project): Promise<GitLabJob[]> {
  const path = `/projects/${project.id}/jobs`;
  const collect = async (query: Record<string, string | number>) => {
    const jobs: GitLabJob[] = [];
    let pages = 0;
    for await (const page of client.paginate<GitLabJob>(path, query)) {
      jobs.push(...page);
      if (++pages % 20 === 0) logger.info(`  ${project.path_with_namespace}: ${pages} pages, ${jobs.length} jobs listed so far`);
    }
    return jobs;
  };
  try {
    return await collect({ pagination: 'keyset', order_by: 'id', sort: 'desc', per_page: 100 });
  } catch (err) {
    if (statusOf(err) !== 400 && statusOf(err) !== 405) throw err;
    logger.info(`  Keyset pagination refused (HTTP ${statusOf(err)}); listing ${project.path_with_namespace} page by page.`);
    return collect({ per_page: 100 });
  }
}

/**
 * DELETE one job's artifacts. 404 means already gone (done). The client already retries 409 (stats refresh), 429
 * and 5xx with backoff and Retry-After, up to `retries`.
 */
async function deleteArtifacts(client: GitLabClient, project: Project, jobId: number): Promise<void> {
  try {
    await client.delete(`/projects/${project.id}/jobs/${jobId}/artifacts`);
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
}

async function cleanProject(client: GitLabClient, settings: CleanupSettings, project: Project, pace: AdaptivePace): Promise<ProjectReport> {
  const artifactBytes = project.statistics?.job_artifacts_size;
  const report: ProjectReport = {
    project_id: project.id,
    path: project.path_with_namespace,
    jobs_seen: 0,
    deleted: [],
    kept: 0,
    bytes_freed: 0,
    failed: [],
    artifact_bytes: typeof artifactBytes === 'number' ? artifactBytes : null,
    by_reason: {},
  };
  if (settings.expireAll) {
    if (settings.dryRun) {
      report.expire_all = 'would queue';
      logger.info(`Would ask GitLab to expire every unlocked artifact of ${project.path_with_namespace}, kept ones included.`);
    } else {
      await client.delete(`/projects/${project.id}/artifacts`);
      report.expire_all = 'queued';
      logger.info(
        `Expiry of every unlocked artifact of ${project.path_with_namespace} queued (HTTP 202): GitLab deletes them in its own cleanup, later.`,
      );
    }
    return report;
  }
  if (artifactBytes === 0) {
    report.skipped = 'no artifacts (project statistics)';
    logger.info(`${project.path_with_namespace}: skipped, its statistics show no job artifacts (job_artifacts_size 0).`);
    return report;
  }
  const jobs = await listJobs(client, project);
  report.jobs_seen = jobs.length;
  const decisions = applyPolicy(jobs, settings.policy);
  const doomed = decisions.filter((d) => d.delete);
  report.kept = decisions.length - doomed.length;
  const spared = decisions.filter((d) => d.reason === KEPT_REASON).length;
  for (const d of decisions) if (!d.delete) addTally(report.by_reason, d.reason, d.bytes);
  logger.info(
    `${project.path_with_namespace}: ${jobs.length} jobs, ${jobs.filter(hasArchive).length} with artifacts, ${doomed.length} selected (${formatBytes(doomed.reduce((n, d) => n + d.bytes, 0))})${spared ? `; ${spared} left alone because their artifacts never expire (kept, or expire_in never; delete_kept: true deletes them too)` : ''}.`,
  );
  if (settings.dryRun) {
    for (const d of doomed) {
      report.deleted.push(d.job.id);
      report.bytes_freed += d.bytes;
      addTally(report.by_reason, WOULD_DELETE, d.bytes);
    }
    await section(`Would delete in ${project.path_with_namespace}`, async () => {
      for (const d of doomed.slice(0, 500))
        logger.info(`  job ${d.job.id} ${d.job.name} (${d.job.ref}) finished ${d.job.finished_at}: ${formatBytes(d.bytes)}`);
      if (doomed.length > 500) logger.info(`  ... and ${doomed.length - 500} more`);
    });
    return report;
  }
  let done = 0;
  await runPaced(doomed, pace, async (d) => {
    try {
      await deleteArtifacts(client, project, d.job.id);
      report.deleted.push(d.job.id);
      report.bytes_freed += d.bytes;
      addTally(report.by_reason, DELETED, d.bytes);
    } catch (err) {
      const e = err as Error;
      if (statusOf(err) === 429) pace.rateLimited();
      addTally(report.by_reason, DELETE_FAILED, d.bytes);
      report.failed.push({ job_id: d.job.id, status: statusOf(err), message: e.message });
      logger.warn(`Could not delete the artifacts of job ${d.job.id} in ${project.path_with_namespace}: ${e.message}`);
    }
    if (++done % 100 === 0) logger.info(`  ${done}/${doomed.length} deletions done`);
  });
  report.deleted.sort((a, b) => b - a);
  return report;
}

function printTable(reports: ProjectReport[], dryRun: boolean): void {
  const rows = [['project', 'jobs', dryRun ? 'would delete' : 'deleted', 'kept', 'freed', 'failed']];
  for (const r of reports)
    rows.push([
      r.path,
      String(r.jobs_seen),
      r.expire_all ?? String(r.deleted.length),
      String(r.kept),
      formatBytes(r.bytes_freed),
      String(r.failed.length),
    ]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) logger.info(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
}

function logStorage(storage: StorageReport, top = 10): void {
  const verb = storage.dry_run ? 'would free' : 'freed';
  logger.info(`Storage: ${verb} ${formatBytes(storage.totals.deleted_bytes)}; top projects and reasons, largest first:`);
  for (const r of storage.projects.slice(0, top))
    logger.info(
      `  ${r.path}: ${formatBytes(r.deleted_bytes)} ${verb}, ${formatBytes(r.kept_bytes)} kept${r.artifact_bytes === null ? '' : ` (statistics: ${formatBytes(r.artifact_bytes)})`}${r.skipped ? `, ${r.skipped}` : ''}`,
    );
  for (const r of storage.reasons.slice(0, top)) logger.info(`  ${r.reason}: ${r.jobs} job(s), ${formatBytes(r.bytes)}`);
}

export async function runCleanup(settings: CleanupSettings, givenClient?: GitLabClient): Promise<CleanupReport> {
  const pace = new AdaptivePace(settings.concurrency, {
    slowMs: settings.slowDeleteMs,
    onChange: (c) => logger.info(`Pace: ${c.from} -> ${c.to} deletion(s) in flight (${c.why}).`),
  });
  const client =
    givenClient ??
    createGitLabClient({
      ...settings,
      userAgent: `artifact-relay/${version}`,
      onRetry: (r) => {
        if (r.status === 429) pace.rateLimited();
      },
    });
  const p = settings.policy;
  const policy = settings.expireAll
    ? { expire_all: true }
    : {
        older_than: p.olderThanInput,
        finished_before: p.olderThan?.toISOString() ?? null,
        keep_latest: p.keepLatest,
        keep_tags: p.keepTags,
        keep_refs: p.keepRefs,
        job: p.jobs,
        exclude_job: p.excludeJobs,
        min_size: p.minSize,
        delete_kept: p.deleteKept,
      };
  logger.info(
    `artifact-relay ${version}: cleanup${settings.dryRun ? ' (dry run: nothing is deleted)' : ''} on ${settings.apiUrl}, policy ${JSON.stringify(policy)}`,
  );
  const { chosen: projects, skipped } = await resolveProjects(client, settings);
  const reports: ProjectReport[] = [];
  for (const project of projects) reports.push(await cleanProject(client, settings, project, pace));

  const storage = buildStorageReport(reports, settings.dryRun);
  const report: CleanupReport = {
    dry_run: settings.dryRun,
    policy,
    shard: settings.shard ?? null,
    pace: { cap: pace.cap, final: pace.limit, rate_limited: pace.throttled, changes: pace.changes.slice(-100) },
    storage,
    projects: reports,
    skipped,
    totals: {
      jobs: reports.reduce((n, r) => n + r.deleted.length, 0),
      bytes: reports.reduce((n, r) => n + r.bytes_freed, 0),
      failed: reports.reduce((n, r) => n + r.failed.length, 0),
    },
  };
  printTable(reports, settings.dryRun);
  logStorage(storage);
  if (settings.storageReport) await writeAtomic(settings.storageReport, storageMarkdown(storage));
  if (settings.report) await writeAtomic(settings.report, `${JSON.stringify(report, null, 2)}\n`);
  if (settings.dotenv) {
    await writeAtomic(
      settings.dotenv,
      `ARTIFACT_RELAY_DELETED_JOBS=${dotenvValue(report.totals.jobs)}\nARTIFACT_RELAY_BYTES_FREED=${dotenvValue(report.totals.bytes)}\n`,
    );
  }
  const verb = settings.dryRun ? 'Would delete' : 'Deleted';
  if (report.totals.failed > 0) {
    const failed = reports.flatMap((r) => r.failed.map((f) => `${r.path} job ${f.job_id} (${f.status ?? 'network'})`));
    throw new RelayError(
      `${verb} the artifacts of ${report.totals.jobs} job(s) (${formatBytes(report.totals.bytes)}), but ${report.totals.failed} deletion(s) failed: ${failed.slice(0, 10).join(', ')}${failed.length > 10 ? ', ...' : ''}.`,
      'The failed jobs are listed in the log and the report; the next scheduled run retries them.',
    );
  }
  logger.success(
    `${verb} the artifacts of ${report.totals.jobs} job(s) in ${reports.length} project(s), ${formatBytes(report.totals.bytes)}.`,
  );
  return report;
}
