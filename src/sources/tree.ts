// Artifacts across the pipeline tree. GitLab's pipeline jobs listing holds the pipeline's own jobs only: the jobs
// of child pipelines are reached through the pipeline's trigger jobs (bridges) and their downstream pipelines,
// and a sibling (another downstream pipeline of the same upstream) through the upstream's trigger jobs.
//
// Depth: GitLab refuses to create a child pipeline when the parent already has MAX_NESTED_CHILDREN (2) same-project
// ancestors (app/services/ci/create_downstream_pipeline_service.rb, failure reason
// reached_max_descendant_pipelines_depth), so a tree is at most the pipeline, its children and grandchildren.
import type { GitLabClient } from '../api/client.ts';
import { encodeProject } from '../api/urls.ts';
import { httpStatus, NotFoundError, RelayError } from '../runtime/errors.ts';
import type { FetchSettings } from '../inputs/settings.ts';
import { logger } from '../runtime/log.ts';
import { sleep } from '../util/concurrency.ts';
import { jobNameMatcher } from './match.ts';
import { ACTIVE_STATUSES, failStatus, listPipelineJobs, pollSchedule } from './pipeline.ts';
import { listTriggerJobs, type TriggerJob } from './trigger-jobs.ts';
import type { GitLabJob } from '../api/entities.ts';

/** Child levels below the selected pipeline that GitLab can create (MAX_NESTED_CHILDREN). */
const MAX_CHILD_DEPTH = 2;

/** One pipeline of the tree: the selected one (via []) or a descendant (via = trigger job names from the top). */
export interface PipelineNode {
  project: string;
  pipelineId: number;
  via: string[];
  depth: number;
}

export interface TreeJob {
  job: GitLabJob;
  node: PipelineNode;
}

const isRefusal = (err: unknown) => [401, 403, 404].includes(httpStatus(err) ?? 0);

/** The trigger jobs of a pipeline of the tree; a refusal says what token the tree needs. */
async function triggerJobsOf(client: GitLabClient, project: string, pipelineId: number): Promise<TriggerJob[]> {
  try {
    return await listTriggerJobs(client, project, pipelineId);
  } catch (err) {
    if (isRefusal(err)) throw refusedTriggerJobs(err, project, pipelineId);
    throw err;
  }
}

function refusedTriggerJobs(err: unknown, project: string, pipelineId: number): RelayError {
  const status = httpStatus(err) ?? 0;
  return new RelayError(
    `The token cannot list the trigger jobs of pipeline ${pipelineId} in ${project} (HTTP ${status}), so its child and sibling pipelines cannot be found.`,
    'Put a project or group access token with read_api (Reporter) on that project in `token` (a masked CI/CD variable); job tokens may not read trigger jobs on many GitLab versions.',
    { ...(err as RelayError).details },
  );
}

const isChild = (b: TriggerJob) => {
  const d = b.downstream_pipeline;
  if (!d) return false;
  if (d.source) return d.source === 'parent_pipeline';
  return b.pipeline ? d.project_id === b.pipeline.project_id : false;
};

/** A trigger job that has not made its downstream pipeline yet, but will by itself. */
const stillCreating = (b: TriggerJob) => !b.downstream_pipeline && ACTIVE_STATUSES.has(b.status);

function describeNode(node: PipelineNode): string {
  if (node.depth === 0 && node.via.length === 0) return `pipeline ${node.pipelineId} of ${node.project}`;
  if (node.depth === 0) return `pipeline ${node.pipelineId} of ${node.project} (from trigger job "${node.via.join(' > ')}")`;
  return `child pipeline ${node.pipelineId} (trigger job "${node.via.join(' > ')}")`;
}

/** Every pipeline of the tree below `root` (root first), and the trigger jobs still creating theirs. */
async function scanTree(client: GitLabClient, root: PipelineNode): Promise<{ nodes: PipelineNode[]; creating: TriggerJob[] }> {
  const nodes = [root];
  const creating: TriggerJob[] = [];
  const seen = new Set([root.pipelineId]);
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i];
    if (node.depth >= MAX_CHILD_DEPTH) continue;
    const triggers = await triggerJobsOf(client, node.project, node.pipelineId);
    for (const b of triggers.sort((x, y) => x.id - y.id)) {
      if (stillCreating(b)) creating.push(b);
      const d = b.downstream_pipeline;
      if (!d || !isChild(b) || seen.has(d.id)) continue;
      seen.add(d.id);
      nodes.push({ project: node.project, pipelineId: d.id, via: [...node.via, b.name], depth: node.depth + 1 });
    }
  }
  return { nodes, creating };
}

interface Listed {
  node: PipelineNode;
  /** Newest attempt of each job name. */
  newest: Map<string, GitLabJob>;
}

/** Splits `qualifier:name` when the qualifier names a trigger job of the tree or one of its pipeline IDs. */
function splitQualifier(pattern: string, qualifiers: Set<string>): { qualifier?: string; name: string } {
  for (let i = pattern.indexOf(':'); i > 0; i = pattern.indexOf(':', i + 1)) {
    const q = pattern.slice(0, i);
    if (qualifiers.has(q)) return { qualifier: q, name: pattern.slice(i + 1) };
  }
  return { name: pattern };
}

const nodeHas = (node: PipelineNode, qualifier: string) =>
  String(node.pipelineId) === qualifier || (node.via.length > 0 && node.via[node.via.length - 1] === qualifier);

/** Matches the patterns across the tree. A name found in two pipelines is an error with advice, never a choice. */
export function matchTree(listed: Listed[], patterns: string[], qualifiers: Set<string>): { matched: TreeJob[]; unmatched: string[] } {
  const matched: TreeJob[] = [];
  const unmatched: string[] = [];
  const taken = new Set<number>();
  for (const pattern of patterns) {
    const { qualifier, name } = splitQualifier(pattern, qualifiers);
    const matches = jobNameMatcher(name);
    const byName = new Map<string, TreeJob[]>();
    for (const { node, newest } of listed) {
      if (qualifier !== undefined && !nodeHas(node, qualifier)) continue;
      for (const job of newest.values()) {
        if (!matches(job.name)) continue;
        byName.set(job.name, [...(byName.get(job.name) ?? []), { job, node }]);
      }
    }
    if (byName.size === 0) {
      unmatched.push(pattern);
      continue;
    }
    for (const [jobName, hits] of [...byName.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      if (hits.length > 1) {
        const where = hits.map((h) => `job ${h.job.id} in ${describeNode(h.node)}`).join('; ');
        const child = hits.find((h) => h.node.via.length > 0 && h.node.depth > 0);
        const example = child ? `"${child.node.via[child.node.via.length - 1]}:${jobName}"` : `"${hits[0].node.pipelineId}:${jobName}"`;
        throw new RelayError(
          `Job name ${JSON.stringify(jobName)} (from ${JSON.stringify(pattern)}) is in more than one pipeline of the tree: ${where}.`,
          `Say which one: qualify the name with the trigger job that started the child pipeline, such as job: [${example}], or with a pipeline ID ("${hits[0].node.pipelineId}:${jobName}", e.g. "$CI_PIPELINE_ID:${jobName}" for the parent's own job).`,
          { jobName, pipelines: hits.map((h) => h.node.pipelineId) },
        );
      }
      const hit = hits[0];
      if (taken.has(hit.job.id)) continue;
      taken.add(hit.job.id);
      matched.push(hit);
    }
  }
  return { matched, unmatched };
}

function notFoundInTree(listed: Listed[], unmatched: string[], creating: TriggerJob[]): NotFoundError {
  const names = [...new Set(listed.flatMap((l) => [...l.newest.keys()]))].sort();
  const shown = names
    .slice(0, 20)
    .map((n) => JSON.stringify(n))
    .join(', ');
  const where = listed.map((l) => describeNode(l.node)).join(', ');
  const pendingNote = creating.length
    ? ` Trigger job(s) ${creating.map((b) => `"${b.name}" (${b.status})`).join(', ')} have not created their pipelines yet; set wait to wait for them.`
    : '';
  return new NotFoundError(
    `No job matches ${unmatched.map((p) => JSON.stringify(p)).join(', ')} in ${where}.`,
    `${names.length ? `Their jobs are: ${shown}${names.length > 20 ? `, ... (${names.length} in all)` : ''}.` : 'Those pipelines have no jobs the token can see.'} Qualify a name with its trigger job (child-name:job) to look in one child pipeline only.${pendingNote}`,
  );
}

/**
 * Resolves job names in `root` (and, with child_pipelines, its child pipelines to GitLab's depth limit) to
 * finished jobs with artifacts. Waits (up to settings.waitMs) while matched jobs run, and while a name is still
 * missing and a trigger job has not created its pipeline yet.
 */
export async function resolveTreeJobs(client: GitLabClient, settings: FetchSettings, root: PipelineNode): Promise<TreeJob[]> {
  const started = Date.now();
  const deadline = started + settings.waitMs;
  const schedule = pollSchedule(settings.pollMs);
  let missingArtifactPolls = 0;
  for (let polls = 1; ; polls++) {
    const scan = settings.childPipelines ? await scanTree(client, root) : { nodes: [root], creating: [] };
    const listed: Listed[] = [];
    for (const node of scan.nodes) {
      const newest = new Map<string, GitLabJob>();
      for (const job of await listPipelineJobs(client, settings, node.project, node.pipelineId)) {
        const seen = newest.get(job.name);
        if (!seen || job.id > seen.id) newest.set(job.name, job);
      }
      listed.push({ node, newest });
    }
    const qualifiers = new Set<string>();
    for (const node of scan.nodes) {
      qualifiers.add(String(node.pipelineId));
      if (node.depth > 0) qualifiers.add(node.via[node.via.length - 1]);
    }
    for (const b of scan.creating) qualifiers.add(b.name);
    const { matched, unmatched } = matchTree(listed, settings.jobNames, qualifiers);
    const now = Date.now();
    let waitingFor: string | undefined;
    if (unmatched.length > 0) {
      if (scan.creating.length === 0 || settings.waitMs === 0 || now >= deadline) throw notFoundInTree(listed, unmatched, scan.creating);
      waitingFor = `trigger job(s) ${scan.creating.map((b) => `"${b.name}"`).join(', ')} to create their pipelines (${unmatched.join(', ')} not found yet)`;
    } else {
      const pending: GitLabJob[] = [];
      for (const { job } of matched) {
        if (settings.acceptStatus.includes(job.status)) {
          if (!job.artifacts_file) pending.push(job);
          continue;
        }
        if (ACTIVE_STATUSES.has(job.status)) pending.push(job);
        else throw failStatus(job, settings);
      }
      if (pending.length === 0) {
        if (polls > 1) logger.info(`All ${matched.length} job(s) finished after ${((now - started) / 1000).toFixed(0)} s.`);
        for (const { job, node } of matched) logger.info(`Job ${job.id} "${job.name}" is in ${describeNode(node)}.`);
        return matched;
      }
      const waitingForArtifacts = pending.every((j) => settings.acceptStatus.includes(j.status));
      if (waitingForArtifacts) missingArtifactPolls++;
      if (waitingForArtifacts && (missingArtifactPolls > 2 || now >= deadline)) {
        const job = pending[0];
        throw new NotFoundError(
          `Job ${job.id} "${job.name}" (${job.status}) has no artifacts archive.`,
          'Its artifacts expired or were deleted, or it declares no artifacts:paths (reports alone cannot be downloaded).',
          { jobId: job.id },
        );
      }
      waitingFor = pending.map((j) => `${j.name} (${j.id}) ${j.status}`).join(', ');
      if (settings.waitMs === 0) {
        throw new RelayError(
          `Waiting is off (wait: 0) and job(s) are not finished: ${waitingFor}.`,
          'Set wait to the number of seconds to wait for them, such as wait: 1800.',
        );
      }
      if (now >= deadline) {
        throw new RelayError(
          `Gave up after waiting ${((now - started) / 1000).toFixed(0)} s (wait: ${settings.waitMs / 1000}) for job(s): ${waitingFor}.`,
          'Raise wait, or check why the upstream job is slow.',
        );
      }
    }
    const delay = Math.min(schedule.next(), deadline - now);
    logger.info(`Waiting for ${waitingFor}; next look in ${(delay / 1000).toFixed(1)} s (${((deadline - now) / 1000).toFixed(0)} s left).`);
    await sleep(delay);
  }
}

/** The advice to add to "no job matches" when the pipeline has child pipelines and child_pipelines is off. */
export async function childPipelinesHint(client: GitLabClient, project: string, pipelineId: number): Promise<string | undefined> {
  let triggers: TriggerJob[];
  try {
    triggers = await listTriggerJobs(client, project, pipelineId);
  } catch {
    return undefined; // the hint is a courtesy: the original error stands
  }
  const children = triggers.filter((b) => isChild(b) || stillCreating(b));
  if (children.length === 0) return undefined;
  return `Pipeline ${pipelineId} has child pipelines (trigger job(s) ${children.map((b) => `"${b.name}"`).join(', ')}), whose jobs are not listed with its own: set child_pipelines: true to look in them too.`;
}

/** Resolves a project path to its numeric ID (trigger jobs name downstream projects by ID only). */
async function projectId(client: GitLabClient, project: string): Promise<number> {
  if (/^\d+$/.test(project)) return Number(project);
  try {
    const { body } = await client.getJson<{ id: number }>(`/projects/${encodeProject(project)}`);
    return body.id;
  } catch (err) {
    if (!isRefusal(err)) throw err;
    throw new RelayError(
      `The token cannot read project ${project} (HTTP ${httpStatus(err)}), so its pipeline among the upstream's downstream pipelines cannot be recognised.`,
      'Pass sibling_project as a numeric project ID, or use a token that can read that project.',
      { ...(err as RelayError).details },
    );
  }
}

/**
 * The upstream pipeline's other downstream pipeline in `siblingProject` (A triggers B and C; C takes B's
 * artifacts). Waits while it is not created yet; two candidates are an error with advice, never a choice.
 */
export async function findSiblingPipeline(
  client: GitLabClient,
  settings: FetchSettings,
  upstream: { project: string; pipelineId: number },
  siblingProject: string,
): Promise<PipelineNode> {
  const wanted = await projectId(client, siblingProject);
  const started = Date.now();
  const deadline = started + settings.waitMs;
  const schedule = pollSchedule(settings.pollMs);
  for (;;) {
    const triggers = await triggerJobsOf(client, upstream.project, upstream.pipelineId);
    const candidates = triggers.filter(
      (b) => b.downstream_pipeline && b.downstream_pipeline.project_id === wanted && b.downstream_pipeline.id !== settings.ownPipelineId,
    );
    if (candidates.length > 1) {
      throw new RelayError(
        `Pipeline ${upstream.pipelineId} of ${upstream.project} triggered more than one pipeline in ${siblingProject}: ${candidates
          .map((b) => `pipeline ${b.downstream_pipeline?.id} (trigger job "${b.name}")`)
          .join(', ')}.`,
        `Pass the one to use as pipeline (with project: ${siblingProject}) instead of sibling_project, e.g. through a dotenv variable of the trigger job.`,
      );
    }
    if (candidates.length === 1) {
      const b = candidates[0];
      const id = b.downstream_pipeline?.id as number;
      logger.info(
        `Sibling pipeline ${id} of ${siblingProject}, triggered by "${b.name}" in pipeline ${upstream.pipelineId} of ${upstream.project}.`,
      );
      return { project: siblingProject, pipelineId: id, via: [b.name], depth: 0 };
    }
    const creating = triggers.filter(stillCreating);
    const now = Date.now();
    if (creating.length === 0 || settings.waitMs === 0 || now >= deadline) {
      const seen = triggers.filter((b) => b.downstream_pipeline).map((b) => `"${b.name}" (project ${b.downstream_pipeline?.project_id})`);
      throw new NotFoundError(
        `Pipeline ${upstream.pipelineId} of ${upstream.project} triggered no pipeline in ${siblingProject} (project ${wanted}) other than this one.`,
        `${seen.length ? `Its trigger jobs started: ${seen.join(', ')}.` : 'It has no trigger jobs with downstream pipelines.'}${creating.length ? ` ${creating.length} trigger job(s) have not created theirs yet; set wait to wait for them.` : ''}`,
      );
    }
    const delay = Math.min(schedule.next(), deadline - now);
    logger.info(
      `Waiting for trigger job(s) ${creating.map((b) => `"${b.name}"`).join(', ')} to create their pipelines; next look in ${(delay / 1000).toFixed(1)} s.`,
    );
    await sleep(delay);
  }
}
