// Keeping job artifacts: POST /projects/:id/jobs/:job_id/artifacts/keep removes their expiry (gitlabhq
// lib/api/ci/job_artifacts.rb → app/models/ci/build.rb keep_artifacts!: artifacts_expire_at = nil). Shared by the
// keep command and fetch's keep input.
//
// What GitLab answers (the simulator models the same, test/simulator/server.ts):
// - job tokens: the route has no `job_token_allowed`, so a JOB-TOKEN is ignored and the request is anonymous; the
//   API class's `before { authenticate_non_get! }` answers 401 whatever the project's visibility. Refused here
//   before any request (refuseJobToken).
// - 403 below Developer (`authorize_update_builds!`, :update_build) or without the api scope.
// - 404 when `build.artifacts?` is false: expired (even on a locked pipeline) or no archive. The body does not say
//   which, so the job is read to explain it.
// - 200 with the Job entity, artifacts_expire_at null. Keeping twice is harmless. 429/5xx are retried by the client.
import type { GitLabClient } from '../api/client.ts';
import { encodeProject } from '../api/urls.ts';
import { httpStatus, RelayError } from '../runtime/errors.ts';
import { logger } from '../runtime/log.ts';
import type { GitLabJob } from '../api/entities.ts';
import { KEEP_TOKEN_ADVICE } from '../inputs/keep-token.ts';
import type { ResolvedSource } from '../sources/types.ts';

type KeepReason = 'expired' | 'missing' | 'job not found' | 'forbidden' | 'unauthorized' | 'no job ID' | 'error';

export interface KeepResult {
  kept: boolean;
  /** artifacts_expire_at as GitLab answered after the keep (null: never expires). */
  artifactsExpireAt?: string | null;
  reason?: KeepReason;
  status?: number | null;
  message?: string;
  advice?: string;
}

type JobDetails = GitLabJob & { erased_at?: string | null };

const keepPath = (source: ResolvedSource) => `/projects/${encodeProject(source.project)}/jobs/${source.jobId}/artifacts/keep`;

/** Why keep answered 404: the job tells whether its artifacts expired, were erased, or never were. */
async function explainNotFound(client: GitLabClient, source: ResolvedSource): Promise<KeepResult> {
  const what = `Cannot keep the artifacts of ${source.label}`;
  let job: JobDetails;
  try {
    job = (await client.getJson<JobDetails>(`/projects/${encodeProject(source.project)}/jobs/${source.jobId}`)).body;
  } catch (err) {
    if (httpStatus(err) === 404) {
      return {
        kept: false,
        status: 404,
        reason: 'job not found',
        message: `${what}: there is no such job in ${source.project} (HTTP 404).`,
        advice: 'Check job_id and project (a job ID belongs to one project).',
      };
    }
    return {
      kept: false,
      status: 404,
      reason: 'missing',
      message: `${what}: GitLab answered 404 (its artifacts expired or are missing; the job could not be read to say which).`,
    };
  }
  const expiredAt = job.artifacts_expire_at && Date.parse(job.artifacts_expire_at) <= Date.now() ? job.artifacts_expire_at : undefined;
  const hasArchive = Boolean(job.artifacts_file) || (job.artifacts ?? []).some((a) => a.file_type === 'archive');
  if (job.erased_at) {
    return {
      kept: false,
      status: 404,
      reason: 'missing',
      message: `${what}: the job was erased at ${job.erased_at}, with its artifacts (HTTP 404).`,
      advice: 'Erased artifacts are gone; keep them before erasing, or rerun the job.',
    };
  }
  if (expiredAt) {
    return {
      kept: false,
      status: 404,
      reason: 'expired',
      message: `${what}: they expired at ${expiredAt} (HTTP 404). GitLab keeps only artifacts that have not expired yet, even when the files are still there (or the pipeline is locked).`,
      advice:
        'Keep artifacts while they are valid: run keep (or fetch with keep: true) in the pipeline that uses them, or give the job a longer expire_in.',
    };
  }
  if (!hasArchive) {
    return {
      kept: false,
      status: 404,
      reason: 'missing',
      message: `${what}: the job has no artifacts archive (HTTP 404): none was uploaded (no artifacts:paths, reports only) or it was deleted.`,
      advice: 'Check that the job declares artifacts:paths, and that a cleanup did not delete them.',
    };
  }
  return { kept: false, status: 404, reason: 'missing', message: `${what}: GitLab answered 404 although the job lists an archive.` };
}

/** Keeps one job's artifacts; never throws for an HTTP refusal or a network failure (the result says what went wrong). */
async function keepOne(client: GitLabClient, source: ResolvedSource): Promise<KeepResult> {
  if (source.jobId === null) {
    return {
      kept: false,
      reason: 'no job ID',
      message: `Cannot keep the artifacts of ${source.label}: its job ID is unknown (it came through GitLab's by-ref download endpoint).`,
      advice: 'Use a token that can list the pipelines of the project (read_api), or select the job by job_id.',
    };
  }
  try {
    const { body } = await client.post<GitLabJob>(keepPath(source));
    return { kept: true, artifactsExpireAt: body?.artifacts_expire_at ?? null };
  } catch (err) {
    if (!(err instanceof RelayError)) throw err;
    const status = httpStatus(err) ?? null;
    if (status === 404) return explainNotFound(client, source);
    if (status === 403) {
      return {
        kept: false,
        status,
        reason: 'forbidden',
        message: `Cannot keep the artifacts of ${source.label}: ${err.message}.`,
        advice: `Keeping needs at least the Developer role on ${source.project} and a token with the api scope (read_api is not enough). ${KEEP_TOKEN_ADVICE}`,
      };
    }
    return {
      kept: false,
      status,
      reason: status === 401 ? 'unauthorized' : 'error',
      message: `Cannot keep the artifacts of ${source.label}: ${err.message}.`,
      advice: err.advice,
    };
  }
}

/** Keeps each source in turn, logging each outcome. */
export async function keepAll(client: GitLabClient, sources: ResolvedSource[]): Promise<KeepResult[]> {
  const results: KeepResult[] = [];
  for (const source of sources) {
    const result = await keepOne(client, source);
    if (result.kept) logger.info(`Kept the artifacts of ${source.label}: they no longer expire (artifacts_expire_at is now empty).`);
    else logger.warn(`${result.message}${result.advice ? ` ${result.advice}` : ''}`);
    results.push(result);
  }
  return results;
}
