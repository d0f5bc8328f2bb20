// Before GitLab 18.9 a downstream pipeline is not told which pipeline triggered it, and where pipeline variables
// are forbidden the trigger job cannot pass the ID either. Given the upstream project (a constant, so it travels in
// trigger:inputs), the triggering pipeline can still be found: it is the one with a trigger job (bridge) whose
// downstream pipeline is this one.
import type { GitLabClient } from '../api/client.ts';
import { encodeProject } from '../api/urls.ts';
import { httpStatus, NotFoundError, RelayError } from '../errors.ts';
import { logger } from '../log.ts';
import type { GitLabPipeline } from './types.ts';

interface Bridge {
  id: number;
  name: string;
  downstream_pipeline?: { id: number; project_id?: number } | null;
}

/** How many of the upstream project's newest pipelines are searched. */
const SEARCHED_PIPELINES = 50;

export async function findTriggeringPipeline(
  client: GitLabClient,
  project: string,
  ownPipelineId: number,
): Promise<{ pipelineId: number; bridge: string }> {
  const p = encodeProject(project);
  let searched = 0;
  try {
    for await (const page of client.paginate<GitLabPipeline>(`/projects/${p}/pipelines`, { per_page: 50, order_by: 'id', sort: 'desc' })) {
      for (const pipeline of page) {
        const { body } = await client.getJson<Bridge[]>(`/projects/${p}/pipelines/${pipeline.id}/bridges`, { per_page: 100 });
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
      `The token cannot read the pipelines or trigger jobs of ${project} (HTTP ${status}), so the pipeline that triggered this one cannot be found.`,
      'Put a project or group access token with read_api on the upstream project in `token`, or upgrade to GitLab 18.9+ (CI_UPSTREAM_PIPELINE_ID), or pass the pipeline ID (trigger variables UPSTREAM_PROJECT_ID and UPSTREAM_PIPELINE_ID).',
      { ...(err as RelayError).details },
    );
  }
  throw new NotFoundError(
    `None of the ${searched} newest pipelines of ${project} has a trigger job that started pipeline ${ownPipelineId}.`,
    'Check that project names the upstream project that triggered this pipeline, or pass pipeline explicitly.',
  );
}
