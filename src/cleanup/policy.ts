// The cleanup policy as a pure function: which jobs' artifacts go, which stay, and why. Kept separate from
// listing and deleting so the rules can be read (and tested) in one place.
import type { CleanupPolicy } from '../inputs/cleanup-settings.ts';
import { nameMatcher } from '../util/glob.ts';
import { isKept, KEPT_REASON } from './kept.ts';
import { type GitLabJob, hasArchive } from '../api/entities.ts';

export interface Decision {
  job: GitLabJob;
  delete: boolean;
  /** Why it is kept (or 'policy' when deleted). */
  reason: string;
  /** Bytes a deletion frees: every artifact but the job log, which GitLab keeps. */
  bytes: number;
}

function erasableBytes(job: GitLabJob): number {
  const listed = (job.artifacts ?? []).filter((a) => a.file_type !== 'trace').reduce((n, a) => n + (a.size ?? 0), 0);
  return listed || job.artifacts_file?.size || 0;
}

const archiveSize = (job: GitLabJob) => job.artifacts_file?.size ?? (job.artifacts ?? []).find((a) => a.file_type === 'archive')?.size ?? 0;
const refKey = (job: GitLabJob) => `${job.tag ? 'tag' : 'branch'}:${job.ref ?? job.pipeline?.ref}`;
const anyOf = (patterns: string[]) => {
  const matchers = patterns.map(nameMatcher);
  return (value: string) => matchers.some((m) => m(value));
};

/** The pipeline IDs kept by keep_latest: the newest N successful pipelines of each ref among the jobs seen. */
function latestPipelines(jobs: GitLabJob[], keepLatest: number): Set<number> {
  const byRef = new Map<string, Set<number>>();
  for (const job of jobs) {
    if (job.pipeline?.status !== 'success') continue;
    const key = refKey(job);
    if (!byRef.has(key)) byRef.set(key, new Set());
    byRef.get(key)?.add(job.pipeline.id);
  }
  const kept = new Set<number>();
  for (const ids of byRef.values()) for (const id of [...ids].sort((a, b) => b - a).slice(0, keepLatest)) kept.add(id);
  return kept;
}

/** Decides every job that still has an archive; jobs without one are not candidates and are not returned. */
export function applyPolicy(jobs: GitLabJob[], policy: CleanupPolicy): Decision[] {
  const keptPipelines = latestPipelines(jobs, policy.keepLatest);
  const refKept = anyOf(policy.keepRefs);
  const nameIncluded = policy.jobs.length ? anyOf(policy.jobs) : () => true;
  const nameExcluded = anyOf(policy.excludeJobs);
  const decisions: Decision[] = [];
  for (const job of jobs) {
    if (!hasArchive(job)) continue;
    const keep = (reason: string) => decisions.push({ job, delete: false, reason, bytes: erasableBytes(job) });
    const finished = job.finished_at ? new Date(job.finished_at) : undefined;
    const ref = job.ref ?? job.pipeline?.ref ?? '';
    if (!nameIncluded(job.name)) keep('job name not in job');
    else if (nameExcluded(job.name)) keep('exclude_job');
    else if (!finished) keep('not finished');
    else if (policy.olderThan && finished >= policy.olderThan) keep('newer than older_than');
    else if (policy.keepTags && job.tag) keep('tag (keep_tags)');
    else if (ref && refKept(ref)) keep('keep_refs');
    else if (job.pipeline && keptPipelines.has(job.pipeline.id))
      keep(`latest successful pipeline of its ref (keep_latest ${policy.keepLatest})`);
    else if (archiveSize(job) < policy.minSize) keep('smaller than min_size');
    else if (!policy.deleteKept && isKept(job)) keep(KEPT_REASON);
    else decisions.push({ job, delete: true, reason: 'policy', bytes: erasableBytes(job) });
  }
  return decisions;
}
