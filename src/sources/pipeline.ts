// Pipeline + job-name resolution: list every job of one pipeline, match names exactly or by glob, take the
// newest attempt of each name, and wait while matched jobs are still running. Downloads then go by job ID.
import type { GitLabClient } from '../api/client.ts';
import { hasArchive } from '../api/entities.ts';
import { encodeProject } from '../api/urls.ts';
import { httpStatus, NotFoundError, RelayError } from '../runtime/errors.ts';
import type { FetchSettings } from '../inputs/settings.ts';
import { logger } from '../runtime/log.ts';
import { sleep } from '../util/concurrency.ts';
import { jobNameMatcher } from './match.ts';
import type { GitLabJob } from '../api/entities.ts';

/**
 * Statuses after which a job will still run by itself. `manual` is not one: it waits for a person.
 * waiting_for_callback is active in GitLab (app/models/concerns/ci/has_status.rb ACTIVE_STATUSES).
 */
export const ACTIVE_STATUSES = new Set([
  'created',
  'pending',
  'preparing',
  'waiting_for_resource',
  'waiting_for_callback',
  'scheduled',
  'running',
  'canceling',
]);

/** How to get job IDs across when the token cannot list jobs: the recipe the README also shows. */
const JOB_ID_RECIPE =
  'Either put a project or group access token with read_api (Reporter role) on the upstream project in `token` ' +
  '(a masked CI/CD variable), or pass job IDs instead of names: in the upstream build job add ' +
  '`echo "BUILD_JOB_ID=$CI_JOB_ID" >> ids.env` with `artifacts: reports: dotenv: ids.env`, let the trigger job ' +
  'forward it (`variables: { BUILD_JOB_ID: $BUILD_JOB_ID }` with `needs: [build]`), and set `job_id: $BUILD_JOB_ID` here.';

/** Every job of the pipeline, newest first (GitLab sorts by ID descending; we sort again to be sure). */
export async function listPipelineJobs(
  client: GitLabClient,
  settings: FetchSettings,
  project: string,
  pipelineId: number,
): Promise<GitLabJob[]> {
  const jobs: GitLabJob[] = [];
  try {
    for await (const page of client.paginate<GitLabJob>(`/projects/${encodeProject(project)}/pipelines/${pipelineId}/jobs`, {
      per_page: 100,
    }))
      jobs.push(...page);
  } catch (err) {
    const code = httpStatus(err) ?? 0;
    if (![401, 403, 404].includes(code)) throw err;
    const base = err as RelayError;
    if (settings.tokenType === 'job') {
      const allowlist = /not allowed from/i.test(base.message);
      throw new RelayError(
        `The job token cannot list the jobs of pipeline ${pipelineId} in ${project} (HTTP ${code}: ${base.message}).`,
        allowlist
          ? `${base.advice ?? ''} ${JOB_ID_RECIPE}`.trim()
          : `This GitLab version or its job token settings do not let job tokens read jobs (the "Jobs: Read" permission), or the job token has no access to ${project}${/project not found/i.test(base.message) ? ' (where a route does not accept job tokens, GitLab treats the request as anonymous: a private project answers 404 Project Not Found)' : ''}. ${JOB_ID_RECIPE}`,
        { ...base.details },
      );
    }
    if (code === 404) {
      throw new NotFoundError(
        `Pipeline ${pipelineId} was not found in project ${project} (HTTP 404).`,
        'Check the pipeline and project inputs (a pipeline ID belongs to one project), and that the token can read that project.',
        { ...base.details },
      );
    }
    throw err;
  }
  return jobs.sort((a, b) => b.id - a.id);
}

interface MatchedJob {
  pattern: string;
  job: GitLabJob;
}

/** The newest attempt of every job name matched by the patterns; each pattern must match at least one name. */
function matchJobs(jobs: GitLabJob[], patterns: string[], where: string): MatchedJob[] {
  const newest = new Map<string, GitLabJob>();
  for (const job of jobs) {
    const seen = newest.get(job.name);
    if (!seen || job.id > seen.id) newest.set(job.name, job);
  }
  const out: MatchedJob[] = [];
  const taken = new Set<number>();
  for (const pattern of patterns) {
    const matches = jobNameMatcher(pattern);
    const hits = [...newest.values()].filter((j) => matches(j.name)).sort((a, b) => a.name.localeCompare(b.name));
    if (hits.length === 0) {
      const names = [...newest.keys()].sort();
      const shown = names
        .slice(0, 20)
        .map((n) => JSON.stringify(n))
        .join(', ');
      throw new NotFoundError(
        `No job matches ${JSON.stringify(pattern)} in ${where}.`,
        names.length
          ? `Its jobs are: ${shown}${names.length > 20 ? `, ... (${names.length} in all)` : ''}. Names match exactly (case-sensitive) unless they contain * ? or [.`
          : 'That pipeline has no jobs the token can see (trigger jobs and child pipelines are not listed). GitLab answers an empty list, not 403, when the token may not read jobs (app/finders/ci/jobs_finder.rb): on a private project it needs the Reporter role or higher.',
      );
    }
    for (const job of hits) {
      if (taken.has(job.id)) continue;
      taken.add(job.id);
      out.push({ pattern, job });
    }
  }
  return out;
}

/** Poll interval: starts at `first` (settings.pollMs) and grows to a cap. */
export function pollSchedule(first: number): { next(): number } {
  const cap = first * 10;
  let current = first;
  return {
    next() {
      const value = current;
      current = Math.min(cap, Math.round(current * 1.5));
      return value;
    },
  };
}

/** The error for a job that will not give artifacts: manual (never runs by itself), or ended outside accept_status. */
export function failStatus(job: GitLabJob, settings: FetchSettings): RelayError {
  const where = job.web_url ? ` (${job.web_url})` : '';
  if (job.status === 'manual') {
    return new RelayError(
      `Job ${job.id} "${job.name}" is a manual job that has not been started${where}; it will not run by itself.`,
      'Start it in the upstream pipeline, or fetch another job.',
      { jobId: job.id, status: job.status },
    );
  }
  return new RelayError(
    `Job ${job.id} "${job.name}" ended with status ${job.status}${where}; accepted statuses: ${settings.acceptStatus.join(', ')}.`,
    job.status === 'failed' ? 'If that job uploads artifacts on failure (artifacts:when: always), add failed to accept_status.' : undefined,
    { jobId: job.id, status: job.status },
  );
}

/**
 * Resolves job names in one pipeline to finished jobs with artifacts, waiting (up to settings.waitMs) while any
 * matched job is still active. A job that ends outside accept_status, or is manual, fails at once.
 */
export async function resolvePipelineJobs(
  client: GitLabClient,
  settings: FetchSettings,
  project: string,
  pipelineId: number,
): Promise<GitLabJob[]> {
  const started = Date.now();
  const deadline = started + settings.waitMs;
  const schedule = pollSchedule(settings.pollMs);
  const where = `pipeline ${pipelineId} of ${project}`;
  let polls = 0;
  let missingArtifactPolls = 0;
  for (;;) {
    const matched = matchJobs(await listPipelineJobs(client, settings, project, pipelineId), settings.jobNames, where);
    polls++;
    const pending: GitLabJob[] = [];
    for (const { job } of matched) {
      if (settings.acceptStatus.includes(job.status)) {
        // artifacts_file is hidden once expired, even when a pipeline lock keeps the archive (lib/api/entities/ci/job.rb)
        if (!hasArchive(job)) pending.push(job);
        continue;
      }
      if (ACTIVE_STATUSES.has(job.status)) pending.push(job);
      else throw failStatus(job, settings);
    }
    const waitingForArtifacts = pending.length > 0 && pending.every((j) => settings.acceptStatus.includes(j.status));
    if (waitingForArtifacts) missingArtifactPolls++;
    if (pending.length === 0) {
      if (polls > 1) logger.info(`All ${matched.length} job(s) finished after ${((Date.now() - started) / 1000).toFixed(0)} s.`);
      return matched.map((m) => m.job);
    }
    const now = Date.now();
    // A finished job without an archive gets two more looks (uploads land just before the status flips), then it is "no artifacts".
    if (waitingForArtifacts && (missingArtifactPolls > 2 || now >= deadline)) {
      const job = pending[0];
      throw new NotFoundError(
        `Job ${job.id} "${job.name}" (${job.status}) in ${where} has no artifacts archive.`,
        'Its artifacts expired or were deleted, or it declares no artifacts:paths (reports alone cannot be downloaded).',
        { jobId: job.id },
      );
    }
    const describe = pending.map((j) => `${j.name} (${j.id}) ${j.status}`).join(', ');
    if (settings.waitMs === 0) {
      throw new RelayError(
        `Waiting is off (wait: 0) and job(s) in ${where} are not finished: ${describe}.`,
        'Set wait to the number of seconds to wait for them, such as wait: 1800.',
      );
    }
    if (now >= deadline) {
      throw new RelayError(
        `Gave up after waiting ${((now - started) / 1000).toFixed(0)} s (wait: ${settings.waitMs / 1000}) for job(s) in ${where}: ${describe}.`,
        'Raise wait, or check why the upstream job is slow.',
      );
    }
    const delay = Math.min(schedule.next(), deadline - now);
    logger.info(`Waiting for ${describe}; next look in ${(delay / 1000).toFixed(1)} s (${((deadline - now) / 1000).toFixed(0)} s left).`);
    await sleep(delay);
  }
}

/**
 * With a token that cannot read jobs, waiting means polling the job-id artifact endpoint until it stops answering
 * 404. A HEAD answer has no body, so the first refusal is asked again with one GET (no redirect followed, no
 * archive read) to tell "not uploaded yet" (404 Not Found) from "never allowed": 404 Project Not Found (no access,
 * or the EE gate for job tokens, ee/lib/ee/api/ci/job_artifacts.rb) and 403 (job token allowlist,
 * lib/api/helpers.rb handle_job_token_failure!) fail at once with their own advice.
 */
export async function waitForArchive(client: GitLabClient, settings: FetchSettings, archivePath: string, label: string): Promise<void> {
  const started = Date.now();
  const deadline = started + settings.waitMs;
  const schedule = pollSchedule(settings.pollMs);
  let asked = false;
  for (;;) {
    try {
      const res = await client.head(archivePath, undefined, { followRedirects: false });
      if (res.status < 400) return;
    } catch (headErr) {
      let err = headErr;
      if (!asked && [401, 403, 404].includes(httpStatus(headErr) ?? 0)) {
        asked = true;
        try {
          await client.probe(archivePath);
          return; // there after all
        } catch (probeErr) {
          err = probeErr;
        }
      }
      if (!(err instanceof NotFoundError) || Date.now() >= deadline) {
        if (err instanceof NotFoundError && settings.waitMs > 0) {
          throw new NotFoundError(
            `${err.message} (still missing after waiting ${((Date.now() - started) / 1000).toFixed(0)} s for ${label})`,
            err.advice,
            err.details,
          );
        }
        throw err;
      }
    }
    const delay = Math.min(schedule.next(), Math.max(0, deadline - Date.now()));
    logger.info(`No archive yet for ${label}; next look in ${(delay / 1000).toFixed(1)} s.`);
    await sleep(delay);
  }
}
