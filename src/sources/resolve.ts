// Turns the selector inputs (job_id, or ref + job) into concrete jobs to download.
// The exact job ID is preferred (gitlab-org/gitlab#25071: by-ref downloads race with running pipelines): for ref + job we look the latest successful pipeline
// up ourselves and download by job ID; GitLab's by-ref endpoint is the logged fallback when the token
// cannot list pipelines or the job lives in a child pipeline.
import { encodeArtifactPath, encodeProject, encodeRef } from '../api/urls.ts';
import type { GitLabClient } from '../api/client.ts';
import { hasArchive } from '../api/entities.ts';
import { httpStatus, NotFoundError, RelayError } from '../runtime/errors.ts';
import { logger } from '../runtime/log.ts';
import { sleep } from '../util/concurrency.ts';
import { notUpstreamError, type FetchSettings } from '../inputs/settings.ts';
import { findTriggeringPipeline } from './bridges.ts';
import { childPipelinesHint, findSiblingPipeline, resolveTreeJobs } from './tree.ts';
import { ACTIVE_STATUSES, failStatus, pollSchedule, resolvePipelineJobs, waitForArchive } from './pipeline.ts';
import type { GitLabJob, GitLabPipeline } from '../api/entities.ts';
import type { ResolvedSource } from './types.ts';

function sourceForJob(
  project: string,
  job: { id: number; name?: string | null; pipelineId?: number | null; projectId?: number | null; ref?: string | null },
  selectedBy: ResolvedSource['selectedBy'],
): ResolvedSource {
  const p = encodeProject(project);
  return {
    project,
    projectId: job.projectId ?? (/^\d+$/.test(project) ? Number(project) : null),
    jobId: job.id,
    jobName: job.name ?? null,
    pipelineId: job.pipelineId ?? null,
    ref: job.ref ?? null,
    selectedBy,
    archivePath: `/projects/${p}/jobs/${job.id}/artifacts`,
    filePath: (artifactPath) => ({ path: `/projects/${p}/jobs/${job.id}/artifacts/${encodeArtifactPath(artifactPath)}` }),
    label: `job ${job.id}${job.name ? ` (${job.name})` : ''} in ${project}`,
  };
}

function sourceForRef(project: string, ref: string, jobName: string): ResolvedSource {
  const p = encodeProject(project);
  return {
    project,
    projectId: /^\d+$/.test(project) ? Number(project) : null,
    jobId: null,
    jobName,
    pipelineId: null,
    ref,
    selectedBy: 'ref',
    archivePath: `/projects/${p}/jobs/artifacts/${encodeRef(ref)}/download`,
    archiveQuery: { job: jobName },
    filePath: (artifactPath) => ({
      path: `/projects/${p}/jobs/artifacts/${encodeRef(ref)}/raw/${encodeArtifactPath(artifactPath)}`,
      query: { job: jobName },
    }),
    label: `job "${jobName}" of the latest successful pipeline on ${ref} in ${project}`,
  };
}

const isRefusal = (err: unknown) => [401, 403, 404].includes(httpStatus(err) ?? 0);

/** Job details by ID, when the token may read them (job tokens may not: GitLab answers 401). */
async function describeJob(client: GitLabClient, settings: FetchSettings, jobId: number): Promise<GitLabJob | undefined> {
  if (settings.tokenType === 'job') return undefined;
  try {
    const { body } = await client.getJson<GitLabJob>(`/projects/${encodeProject(settings.project)}/jobs/${jobId}`);
    return body;
  } catch (err) {
    if (isRefusal(err)) return undefined; // the download itself will say what is wrong, with advice
    throw err;
  }
}

async function resolveByRef(client: GitLabClient, settings: FetchSettings, ref: string, jobName: string): Promise<ResolvedSource> {
  const p = encodeProject(settings.project);
  let pipeline: GitLabPipeline | undefined;
  try {
    const { body } = await client.getJson<GitLabPipeline[]>(`/projects/${p}/pipelines`, {
      ref,
      status: 'success',
      order_by: 'id',
      sort: 'desc',
      per_page: 1,
    });
    pipeline = body[0];
  } catch (err) {
    if (!isRefusal(err)) throw err;
    logger.info(`The token cannot list pipelines of ${settings.project}; using GitLab's by-ref download endpoint instead.`);
    return sourceForRef(settings.project, ref, jobName);
  }
  if (!pipeline) return sourceForRef(settings.project, ref, jobName); // GitLab will answer 404 with its own words
  let best: GitLabJob | undefined;
  for await (const page of client.paginate<GitLabJob>(`/projects/${p}/pipelines/${pipeline.id}/jobs`, { per_page: 100 })) {
    for (const job of page) if (job.name === jobName && hasArchive(job) && (!best || job.id > best.id)) best = job;
  }
  if (!best) {
    // GitLab also looks in same-project child pipelines; let it decide.
    logger.info(
      `Pipeline ${pipeline.id} (latest successful on ${ref}) has no job "${jobName}" with artifacts of its own; asking GitLab's by-ref endpoint.`,
    );
    return sourceForRef(settings.project, ref, jobName);
  }
  return sourceForJob(
    settings.project,
    { id: best.id, name: best.name, pipelineId: pipeline.id, projectId: pipeline.project_id, ref: pipeline.ref },
    'ref',
  );
}

/** With wait, a job read by ID is polled until it leaves the active statuses. */
async function waitForJob(client: GitLabClient, settings: FetchSettings, job: GitLabJob): Promise<GitLabJob> {
  const deadline = Date.now() + settings.waitMs;
  const schedule = pollSchedule(settings.pollMs);
  let current = job;
  while (ACTIVE_STATUSES.has(current.status) && Date.now() < deadline) {
    const delay = Math.min(schedule.next(), deadline - Date.now());
    logger.info(`Job ${current.id} (${current.name}) is ${current.status}; next look in ${(delay / 1000).toFixed(1)} s.`);
    await sleep(delay);
    current = (await describeJob(client, settings, job.id)) ?? current;
  }
  if (!settings.acceptStatus.includes(current.status) && !ACTIVE_STATUSES.has(current.status)) throw failStatus(current, settings);
  if (ACTIVE_STATUSES.has(current.status)) {
    throw new RelayError(
      `Gave up after waiting ${settings.waitMs / 1000} s for job ${current.id} (${current.name}), still ${current.status}.`,
      'Raise wait, or check why the upstream job is slow.',
    );
  }
  return current;
}

async function resolveJobIds(client: GitLabClient, settings: FetchSettings): Promise<ResolvedSource[]> {
  const sources: ResolvedSource[] = [];
  for (const id of settings.jobIds) {
    let job = await describeJob(client, settings, id);
    if (job && settings.waitMs > 0) job = await waitForJob(client, settings, job);
    const source = sourceForJob(
      settings.project,
      { id, name: job?.name, pipelineId: job?.pipeline?.id, projectId: job?.pipeline?.project_id, ref: job?.ref ?? job?.pipeline?.ref },
      'job_id',
    );
    if (!job && settings.waitMs > 0 && settings.artifactPaths.length === 0)
      await waitForArchive(client, settings, source.archivePath, source.label);
    sources.push(source);
  }
  return sources;
}

/** child_pipelines and sibling_project: the jobs of a pipeline tree, each with the pipeline it was found in. */
async function resolveInTree(client: GitLabClient, settings: FetchSettings, pipelineId: number): Promise<ResolvedSource[]> {
  const root = settings.siblingProject
    ? await findSiblingPipeline(client, settings, { project: settings.project, pipelineId }, settings.siblingProject)
    : { project: settings.project, pipelineId, via: [], depth: 0 };
  const found = await resolveTreeJobs(client, settings, root);
  return found.map(({ job, node }) => ({
    ...sourceForJob(
      node.project,
      { id: job.id, name: job.name, pipelineId: node.pipelineId, projectId: job.pipeline?.project_id, ref: job.ref ?? job.pipeline?.ref },
      settings.selector,
    ),
    via: node.via,
  }));
}

/**
 * project was given as a path and the upstream variables carry the numeric ID (CI_UPSTREAM_PROJECT_ID always does,
 * lib/gitlab/ci/variables/builder/pipeline.rb), or the other way round: compare identities. GET /projects/:id
 * tells when the token may read it; otherwise the upstream pipeline's jobs through the given project answer only
 * when the pipeline belongs to it (pipelines are looked up in that project: user_project.all_pipelines.find).
 */
async function confirmUpstreamProject(client: GitLabClient, settings: FetchSettings): Promise<void> {
  const upstream = settings.upstream;
  if (!upstream) return;
  const given = encodeProject(settings.project);
  try {
    const { body } = await client.getJson<{ id: number; path_with_namespace: string }>(`/projects/${given}`);
    const same = String(body.id) === upstream.project || body.path_with_namespace.toLowerCase() === upstream.project.toLowerCase();
    if (!same) throw notUpstreamError(settings.project, upstream, ` but project ${body.id} (${body.path_with_namespace})`);
    logger.info(`Project ${settings.project} is project ${body.id}, the upstream project (${upstream.variables}).`);
    return;
  } catch (err) {
    if (!isRefusal(err)) throw err;
  }
  try {
    await client.getJson(`/projects/${given}/pipelines/${settings.pipelineId}/jobs`, { per_page: 1 });
    logger.info(`Pipeline ${settings.pipelineId} belongs to ${settings.project}: it is the upstream project (${upstream.variables}).`);
    return;
  } catch (err) {
    if (!isRefusal(err)) throw err;
    throw notUpstreamError(
      settings.project,
      upstream,
      ` (or the token cannot see it: HTTP ${httpStatus(err)} for pipeline ${settings.pipelineId} there)`,
    );
  }
}

export async function resolveSources(client: GitLabClient, settings: FetchSettings): Promise<ResolvedSource[]> {
  switch (settings.selector) {
    case 'job_id':
      return resolveJobIds(client, settings);
    case 'ref': {
      const ref = settings.ref as string;
      const sources: ResolvedSource[] = [];
      for (const name of settings.jobNames) sources.push(await resolveByRef(client, settings, ref, name));
      return sources;
    }
    case 'pipeline':
    case 'upstream':
    case 'bridge': {
      const pipelineId =
        settings.selector === 'bridge'
          ? (await findTriggeringPipeline(client, settings.project, settings.ownPipelineId as number, settings.tokenType)).pipelineId
          : (settings.pipelineId as number);
      if (settings.selector === 'upstream' && settings.confirmUpstreamProject) await confirmUpstreamProject(client, settings);
      if (settings.selector === 'upstream' && settings.upstream) {
        logger.info(`Upstream pipeline ${pipelineId} of ${settings.project}, from ${settings.upstream.variables}.`);
      }
      if (settings.childPipelines || settings.siblingProject) return resolveInTree(client, settings, pipelineId);
      let jobs: GitLabJob[];
      try {
        jobs = await resolvePipelineJobs(client, settings, settings.project, pipelineId);
      } catch (err) {
        if (!(err instanceof NotFoundError) || !err.message.startsWith('No job matches')) throw err;
        const hint = await childPipelinesHint(client, settings.project, pipelineId);
        if (!hint) throw err;
        throw new NotFoundError(err.message, `${err.advice ?? ''} ${hint}`.trim(), err.details);
      }
      return jobs.map((job) =>
        sourceForJob(
          settings.project,
          { id: job.id, name: job.name, pipelineId, projectId: job.pipeline?.project_id, ref: job.ref ?? job.pipeline?.ref },
          settings.selector,
        ),
      );
    }
  }
}
