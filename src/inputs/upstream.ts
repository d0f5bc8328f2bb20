// Finds the upstream pipeline that triggered this one, from the variables GitLab (18.9+) or the trigger job
// sets. Taking *that* pipeline's jobs, rather than "the latest successful on the ref", is what avoids the
// race of gitlab-org/gitlab#25071 (the triggering pipeline is still running, so it is not "successful" yet).

export interface UpstreamPipeline {
  /** Numeric ID or full path of the upstream project. */
  project: string;
  pipelineId: number;
  /** The variables it came from, for the log and the summary. */
  variables: string;
}

const positiveInt = (v: string | undefined) => (v && /^\d+$/.test(v.trim()) && Number(v) > 0 ? Number(v) : undefined);

/** CI_UPSTREAM_* (set by GitLab 18.9+ for trigger-job pipelines) first, then the conventional UPSTREAM_* trigger variables. */
export function detectUpstream(env: NodeJS.ProcessEnv): UpstreamPipeline | undefined {
  const ciPipeline = positiveInt(env.CI_UPSTREAM_PIPELINE_ID);
  const ciProject = env.CI_UPSTREAM_PROJECT_ID?.trim();
  if (ciPipeline && ciProject)
    return { project: ciProject, pipelineId: ciPipeline, variables: 'CI_UPSTREAM_PROJECT_ID + CI_UPSTREAM_PIPELINE_ID' };
  const pipeline = positiveInt(env.UPSTREAM_PIPELINE_ID);
  const projectId = env.UPSTREAM_PROJECT_ID?.trim();
  const projectPath = env.UPSTREAM_PROJECT_PATH?.trim();
  if (pipeline && (projectId || projectPath)) {
    return {
      project: (projectId || projectPath) as string,
      pipelineId: pipeline,
      variables: `${projectId ? 'UPSTREAM_PROJECT_ID' : 'UPSTREAM_PROJECT_PATH'} + UPSTREAM_PIPELINE_ID`,
    };
  }
  return undefined;
}

/** Why no upstream was found, for the exit-2 message: names half-set variables. */
export function describeMissingUpstream(env: NodeJS.ProcessEnv): string {
  const half: string[] = [];
  if (env.UPSTREAM_PIPELINE_ID && !env.UPSTREAM_PROJECT_ID && !env.UPSTREAM_PROJECT_PATH)
    half.push('UPSTREAM_PIPELINE_ID is set but UPSTREAM_PROJECT_ID (or UPSTREAM_PROJECT_PATH) is not');
  if (!env.UPSTREAM_PIPELINE_ID && (env.UPSTREAM_PROJECT_ID || env.UPSTREAM_PROJECT_PATH))
    half.push('UPSTREAM_PROJECT_ID is set but UPSTREAM_PIPELINE_ID is not');
  if (env.UPSTREAM_PIPELINE_ID && !positiveInt(env.UPSTREAM_PIPELINE_ID))
    half.push(`UPSTREAM_PIPELINE_ID ${JSON.stringify(env.UPSTREAM_PIPELINE_ID)} is not a pipeline ID`);
  const source = env.CI_PIPELINE_SOURCE
    ? `this pipeline's source is ${env.CI_PIPELINE_SOURCE}`
    : 'CI_PIPELINE_SOURCE is not set (not in GitLab CI?)';
  return `${source}; CI_UPSTREAM_PIPELINE_ID is ${env.CI_UPSTREAM_PIPELINE_ID ? 'set' : 'not set'}${half.length ? `; ${half.join('; ')}` : ''}`;
}
