// The trigger jobs of a pipeline, the one place they are listed. GET .../trigger_jobs where it exists (newest
// lib/api/ci/pipelines.rb; the bridges route is "Deprecated in GitLab 19.2. Use trigger_jobs endpoint instead."),
// else .../bridges, still served and answering the same entities.
import type { GitLabClient } from '../api/client.ts';
import { encodeProject } from '../api/urls.ts';
import { httpStatus, type RelayError } from '../runtime/errors.ts';
import { logger } from '../runtime/log.ts';

/** The subset of GitLab's Bridge entity (JobBasic + downstream_pipeline) we read. */
export interface TriggerJob {
  id: number;
  name: string;
  status: string;
  pipeline?: { id: number; project_id: number } | null;
  downstream_pipeline?: { id: number; project_id: number; status?: string; source?: string; ref?: string } | null;
}

/** A 404 from Grape's router (`{"error":"404 Not Found"}`): the route does not exist in this GitLab version. */
const routeMissing = (err: unknown) => httpStatus(err) === 404 && (err as RelayError).details?.shape === 'error';

/** Clients whose GitLab answered that it has no trigger_jobs route: asked once, remembered. */
const withoutTriggerJobs = new WeakSet<GitLabClient>();

export async function listTriggerJobs(client: GitLabClient, project: string, pipelineId: number): Promise<TriggerJob[]> {
  const base = `/projects/${encodeProject(project)}/pipelines/${pipelineId}`;
  const collect = async (route: string) => {
    const out: TriggerJob[] = [];
    for await (const page of client.paginate<TriggerJob>(`${base}/${route}`, { per_page: 100 })) out.push(...page);
    return out;
  };
  if (!withoutTriggerJobs.has(client)) {
    try {
      return await collect('trigger_jobs');
    } catch (err) {
      if (!routeMissing(err)) throw err;
      withoutTriggerJobs.add(client);
      logger.info('This GitLab has no trigger_jobs endpoint (it came with the deprecation of bridges in 19.2); using bridges.');
    }
  }
  return collect('bridges');
}
