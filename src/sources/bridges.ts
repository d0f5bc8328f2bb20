// Before GitLab 18.9 a downstream pipeline is not told which pipeline triggered it, and where pipeline variables
// are forbidden the trigger job cannot pass the ID either. Given the upstream project (a constant, so it travels in
// trigger:inputs), the triggering pipeline can still be found: it is the one with a trigger job (bridge) whose
// downstream pipeline is this one.
import type { GitLabClient } from '../api/client.ts';
import { encodeProject } from '../api/urls.ts';
import { httpStatus, NotFoundError, RelayError } from '../runtime/errors.ts';
import { logger } from '../runtime/log.ts';
import { listTriggerJobs } from './trigger-jobs.ts';
import type { GitLabPipeline } from '../api/entities.ts';

/** How many of the upstream project's newest pipelines are searched. */
const SEARCHED_PIPELINES = 50;

/** Advice for a refused search, by token type and answer (lib/gitlab/auth/auth_finders.rb find_user_from_job_token). */
function refusalAdvice(err: RelayError, project: string, tokenType: string | undefined): string {
  const status = httpStatus(err);
  const fallback =
    'Put a project or group access token with read_api on the upstream project in `token`, or upgrade to GitLab 18.9+ (CI_UPSTREAM_PIPELINE_ID), or pass the pipeline ID (trigger variables UPSTREAM_PROJECT_ID and UPSTREAM_PIPELINE_ID).';
  if (tokenType !== 'job') return fallback;
  if (status === 403 && /not allowed from/i.test(err.message)) return `${err.advice ?? ''} ${fallback}`.trim();
  if (status === 404 && /project not found/i.test(err.message))
    return `On this GitLab version the pipelines and trigger-job routes do not accept CI_JOB_TOKEN (only the newest releases do), so GitLab treated the request as anonymous and ${project} is private; or ${project} does not allow this project's job token. ${fallback}`;
  return fallback;
}

export async function findTriggeringPipeline(
  client: GitLabClient,
  project: string,
  ownPipelineId: number,
  tokenType?: string,
): Promise<{ pipelineId: number; bridge: string }> {
  const p = encodeProject(project);
  let searched = 0;
  try {
    for await (const page of client.paginate<GitLabPipeline>(`/projects/${p}/pipelines`, { per_page: 50, order_by: 'id', sort: 'desc' })) {
      for (const pipeline of page) {
        const body = await listTriggerJobs(client, project, pipeline.id);
        const bridge = body.find((b) => b.downstream_pipeline?.id === ownPipelineId);
        if (bridge) {
          logger.info(
            `Pipeline ${pipeline.id} of ${project} triggered this one (trigger job ${bridge.id} "${bridge.name}"), found through its bridges.`,
          );
          return { pipelineId: pipeline.id, bridge: bridge.name };
        }
        if (++searched >= SEARCHED_PIPELINES) break;
      }
      if (searched >= SEARCHED_PIPELINES) break;
    }
  } catch (err) {
    const status = httpStatus(err) ?? 0;
    if (![401, 403, 404].includes(status)) throw err;
    throw new RelayError(
      `The token cannot read the pipelines or trigger jobs of ${project} (HTTP ${status}: ${(err as Error).message}), so the pipeline that triggered this one cannot be found.`,
      refusalAdvice(err as RelayError, project, tokenType),
      { ...(err as RelayError).details },
    );
  }
  throw new NotFoundError(
    `None of the ${searched} newest pipelines of ${project} has a trigger job that started pipeline ${ownPipelineId}.`,
    'Check that project names the upstream project that triggered this pipeline, or pass pipeline explicitly.',
  );
}
